package cmdutil

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"
)

// Output formats of -o.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// Output is the -o flag.
type Output struct {
	Format string
}

// AddFlag adds -o/--output.
func (o *Output) AddFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.Format, "output", "o", OutputTable, "output format: table, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{OutputTable, OutputJSON, OutputYAML}, cobra.ShellCompDirectiveNoFileComp))
}

// Validate refuses a format other than table, json or yaml.
func (o *Output) Validate() error {
	switch o.Format {
	case OutputTable, OutputJSON, OutputYAML:
		return nil
	}
	return fmt.Errorf("-o %q: want table, json or yaml", o.Format)
}

// Table is what a command prints: one kind of record (a noun) from one or
// more clusters.
type Table struct {
	// Noun names the records ("exports"); it is the key of the records in
	// JSON and YAML and the heading of the table when several are printed.
	Noun string
	// Headers are the table's column names, without CONTEXT.
	Headers []string
	// Rows are the records, in order.
	Rows []Row
	// Errors are the clusters the records could not be read from, by
	// context, printed after the table (and under "errors" in JSON/YAML).
	Errors []ContextError
}

// Row is one record: its cells for the table and its value for JSON/YAML.
type Row struct {
	// Context is the kubeconfig context the record was read from.
	Context string
	// Cells match the Table's Headers.
	Cells []string
	// Object is the record as JSON/YAML print it (a struct with json tags
	// that marshals to an object); "context" is added to it.
	Object any
}

// ContextError is a cluster whose records could not be read.
type ContextError struct {
	Context string `json:"context"`
	Error   string `json:"error"`
}

// Print writes tables to w in the format of o. With several contexts the
// table gets a CONTEXT column; JSON and YAML print one object whose keys
// are the nouns, each a list of records carrying their "context".
func (o *Output) Print(w io.Writer, tables []Table, multiContext bool) error {
	switch o.Format {
	case OutputJSON, OutputYAML:
		doc := map[string]any{}
		var errs []ContextError
		for _, t := range tables {
			items := make([]map[string]any, 0, len(t.Rows))
			for _, r := range t.Rows {
				m, err := toMap(r.Object)
				if err != nil {
					return fmt.Errorf("%s: %w", t.Noun, err)
				}
				if r.Context != "" {
					m["context"] = r.Context
				}
				items = append(items, m)
			}
			doc[t.Noun] = items
			errs = append(errs, t.Errors...)
		}
		if len(errs) > 0 {
			doc["errors"] = errs
		}
		var data []byte
		var err error
		if o.Format == OutputJSON {
			data, err = json.MarshalIndent(doc, "", "  ")
			data = append(data, '\n')
		} else {
			data, err = yaml.Marshal(doc)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	default:
		for i, t := range tables {
			if len(tables) > 1 {
				if i > 0 {
					fmt.Fprintln(w)
				}
				fmt.Fprintf(w, "%s:\n", strings.ToUpper(t.Noun))
			}
			if err := writeTable(w, t, multiContext); err != nil {
				return err
			}
		}
		return nil
	}
}

func writeTable(w io.Writer, t Table, multiContext bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := t.Headers
	if multiContext {
		head = append([]string{"CONTEXT"}, head...)
	}
	if len(t.Rows) == 0 && len(t.Errors) == 0 {
		fmt.Fprintf(tw, "no %s\n", t.Noun)
		return tw.Flush()
	}
	if len(t.Rows) > 0 {
		fmt.Fprintln(tw, strings.Join(head, "\t"))
	}
	for _, r := range t.Rows {
		cells := append([]string(nil), r.Cells...)
		if multiContext {
			cells = append([]string{r.Context}, cells...)
		}
		for i, c := range cells {
			cells[i] = Dash(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, e := range t.Errors {
		fmt.Fprintf(tw, "error: context %s: %s\n", Dash(e.Context), e.Error)
	}
	return tw.Flush()
}

// toMap turns v into a JSON object.
func toMap(v any) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("record is not an object: %w", err)
	}
	return m, nil
}

// Dash is s, or "-" when s is empty: a table cell never vanishes.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ProgressDelay is how long an operation runs before Progress says what
// it is waiting for: shorter ones stay silent.
const ProgressDelay = time.Second

// Progress tells a person what a long operation is doing: a line when the
// operation has taken ProgressDelay, and how long it took when it ends.
// Lines go to stderr so that stdout stays for -o json/yaml.
type Progress struct {
	w io.Writer
}

// NewProgress writes progress lines to w (the command's stderr).
func NewProgress(w io.Writer) *Progress { return &Progress{w: w} }

// Start begins an operation described by what ("waiting for the
// ServiceExport's conditions"). The returned function ends it: it prints
// the duration if the start line was printed.
func (p *Progress) Start(what string) (done func()) {
	start := time.Now()
	var mu sync.Mutex
	printed, ended := false, false
	timer := time.AfterFunc(ProgressDelay, func() {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			fmt.Fprintf(p.w, "%s ...\n", what)
			printed = true
		}
	})
	return func() {
		timer.Stop()
		mu.Lock()
		defer mu.Unlock()
		ended = true
		if printed {
			fmt.Fprintf(p.w, "%s: done in %s\n", what, time.Since(start).Round(100*time.Millisecond))
		}
	}
}

// Printf prints one progress line now.
func (p *Progress) Printf(format string, a ...any) {
	fmt.Fprintf(p.w, format+"\n", a...)
}

// PrintValue writes v as JSON or YAML in the format of o, or calls table for
// the table format: for a command whose result is one value (a verify or
// diagnose report) rather than records of clusters.
func (o *Output) PrintValue(w io.Writer, v any, table func(io.Writer) error) error {
	switch o.Format {
	case OutputJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case OutputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return table(w)
}

// Logf returns a printf-style logger to the command's stderr, for progress
// lines that must not mix with the output scripts read.
func Logf(cmd *cobra.Command) func(string, ...any) {
	return func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
}

// QuietClientLogs stops client-go's own log lines (klog) from reaching
// stderr: the end of every exec stream makes it complain about closed
// connections, which would bury what the command says.
func QuietClientLogs() {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
}

// Report is the single result of verify, diagnose or benchmark.
type Report interface {
	PrintTable(io.Writer) error
	// Err is the verdict: nil when every check passed.
	Err() error
}

// PrintReport ends such a command: it prints rep in the format of o when
// the run produced one (have), then returns the run's error, explained, or
// else the report's verdict.
func (o *Output) PrintReport(cmd *cobra.Command, rep Report, have bool, err error) error {
	if have {
		if perr := o.PrintValue(cmd.OutOrStdout(), rep, rep.PrintTable); perr != nil {
			return perr
		}
	}
	if err != nil {
		return Explain(err)
	}
	return rep.Err()
}
