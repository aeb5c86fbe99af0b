// Package straitctl is the straitctl command tree: one sub-package per
// command, each with a NewCommand, over reusable libraries elsewhere in pkg/.
package straitctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"strait.dev/strait/pkg/cmd/straitctl/benchmark"
	"strait.dev/strait/pkg/cmd/straitctl/cleanupbroker"
	"strait.dev/strait/pkg/cmd/straitctl/completion"
	"strait.dev/strait/pkg/cmd/straitctl/deploybroker"
	"strait.dev/strait/pkg/cmd/straitctl/diagnose"
	"strait.dev/strait/pkg/cmd/straitctl/export"
	"strait.dev/strait/pkg/cmd/straitctl/gather"
	"strait.dev/strait/pkg/cmd/straitctl/join"
	"strait.dev/strait/pkg/cmd/straitctl/leave"
	"strait.dev/strait/pkg/cmd/straitctl/show"
	"strait.dev/strait/pkg/cmd/straitctl/verify"
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
	// cobra's own completion command would have no example; ours does.
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(deploybroker.NewCommand(), join.NewCommand(), leave.NewCommand(), cleanupbroker.NewCommand(), show.NewCommand(), version.NewCommand(),
		export.NewCommand(), export.NewUnexportCommand(), gather.NewCommand(), completion.NewCommand(),
		verify.NewCommand(), benchmark.NewCommand(), diagnose.NewCommand())
	return root
}

// Exit codes scripts can rely on.
const (
	ExitOK    = 0
	ExitError = 1 // the command ran and failed
	ExitUsage = 2 // the command line was wrong
)

// usageError marks an error in the command line itself.
type usageError struct{ error }

// Main runs straitctl with args and returns its exit code. Errors are one
// line on stderr, never a stack trace.
func Main(args []string, stdout, stderr io.Writer) int {
	// controller-runtime's client logs nothing a person needs here, and
	// without a logger it warns about that after half a minute.
	ctrllog.SetLogger(logr.Discard())
	root := NewCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "straitctl:", err)
	var ue usageError
	if errors.As(err, &ue) || isArgsError(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return ExitError
}
