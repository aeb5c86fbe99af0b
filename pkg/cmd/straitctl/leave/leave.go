// Package leave is "straitctl leave".
package leave

import (
	"fmt"

	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/member"
)

// NewCommand returns the leave command.
func NewCommand() *cobra.Command {
	var kube cmdutil.Kube
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Remove a cluster from its broker and uninstall Strait from it",
		Long: `leave stops the gateways (which remove their node state as they go) and
Lighthouse, removes the ServiceImports, Services and EndpointSlices Lighthouse
made in application namespaces (ServiceExports stay), removes the cluster's
records and credential at the broker, and removes everything join made in the
cluster. The CRDs stay when the cluster also hosts the broker.`,
		Example: `  straitctl leave --kubeconfig c2.kubeconfig`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kube.Config()
			if err != nil {
				return err
			}
			log := func(format string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...) }
			return cmdutil.Explain(member.Leave(cmd.Context(), cfg, member.LeaveOptions{Log: log}))
		},
	}
	kube.AddFlags(cmd)
	return cmd
}
