package cmdutil

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// Output is the -o/--output flag of a command that prints a table, JSON or
// YAML.
type Output struct{ Format string }

// AddFlags adds -o/--output.
func (o *Output) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.Format, "output", "o", "table", "output format: table, json or yaml")
}

// Validate refuses a format other than table, json and yaml.
func (o *Output) Validate() error {
	switch o.Format {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("--output %q: want table, json or yaml", o.Format)
}

// Print writes v as JSON or YAML, or calls table for the table format.
func (o *Output) Print(w io.Writer, v any, table func(io.Writer) error) error {
	switch o.Format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return table(w)
}

// Progress returns a printf-style logger to the command's stderr, for
// progress lines that must not mix with the output scripts read.
func Progress(cmd *cobra.Command) func(string, ...any) {
	return func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
}

// QuietClientLogs stops client-go's own log lines (klog) from reaching
// stderr: the end of every exec stream makes it complain about closed
// connections, which would bury what the command says.
func QuietClientLogs() {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
}
