// Package straitctl is the straitctl command tree: one sub-package per
// command, each with a NewCommand, over reusable libraries elsewhere in pkg/.
package straitctl

import (
	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/cmd/straitctl/deploybroker"
	"strait.dev/strait/pkg/cmd/straitctl/join"
	"strait.dev/strait/pkg/cmd/straitctl/leave"
	"strait.dev/strait/pkg/cmd/straitctl/show"
	"strait.dev/strait/pkg/cmd/straitctl/version"
)

// NewCommand returns the root command.
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "straitctl",
		Short: "Deploy, join and inspect a Strait cross-cluster network",
		Long: `straitctl deploys the Strait broker, joins clusters to it and removes them,
exports services, and shows, diagnoses and verifies the fabric.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(deploybroker.NewCommand(), join.NewCommand(), leave.NewCommand(), show.NewCommand(), version.NewCommand())
	return root
}
