// Package leave is "straitctl leave".
package leave

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/member"
)

// NewCommand returns the leave command.
func NewCommand() *cobra.Command {
	var (
		kube cmdutil.Kube
		opts member.LeaveOptions
	)
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Remove a cluster from its broker and uninstall Strait from it",
		Long: `leave stops the gateways (which remove their node state as they go) and
Lighthouse, removes the ServiceImports, Services and EndpointSlices Lighthouse
made in application namespaces (ServiceExports stay), removes the cluster's
records and credential at the broker, and removes everything join made in the
cluster.

The CRDs stay when the cluster also hosts a broker. The multicluster.x-k8s.io
CRDs (ServiceExport, ServiceImport) and about.k8s.io's ClusterProperty CRD
always stay, with the users' objects in them, unless --purge; leave says what
it kept.

A broker that is frozen, unreachable, or refuses the cluster's credential does
not stop leave: after at most --broker-timeout it goes on, removes everything
in the cluster, and exits 1 naming the records left at the broker and the
"straitctl cleanup-broker" command that removes them. Unless the broker refused
the credential, leave keeps it, alone, in Secret strait-system/strait-broker:
running leave again retries, then removes it.`,
		Example: `  straitctl leave --kubeconfig c2.kubeconfig
  straitctl leave --kubeconfig c2.kubeconfig --purge`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kube.Config()
			if err != nil {
				return err
			}
			log := func(format string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...) }
			opts.Log = log
			err = member.Leave(cmd.Context(), cfg, opts)
			if be := (*member.BrokerRecordsError)(nil); errors.As(err, &be) {
				// Its message says what to do already; "cannot reach the
				// API server" would point at the wrong cluster.
				return err
			}
			return cmdutil.Explain(err)
		},
	}
	kube.AddFlags(cmd)
	cmd.Flags().BoolVar(&opts.Purge, "purge", false, "also remove the multicluster.x-k8s.io and about.k8s.io CRDs, with every ServiceExport, ServiceImport and ClusterProperty in the cluster")
	cmd.Flags().DurationVar(&opts.BrokerTimeout, "broker-timeout", member.DefaultBrokerTimeout, "how long leave tries to remove the cluster's records at the broker")
	return cmd
}
