// Package version is "straitctl version".
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/version"
)

// NewCommand returns the version command.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print straitctl's version",
		Example: `  straitctl version`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), version.String("straitctl"))
			return err
		},
	}
}
