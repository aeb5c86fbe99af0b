// Package verify is "straitctl verify": end-to-end checks of the fabric
// with short-lived test pods, over pkg/verify.
package verify

import (
	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/probe"
	"strait.dev/strait/pkg/verify"
	"strait.dev/strait/pkg/version"
)

// NewCommand returns the verify command.
func NewCommand() *cobra.Command {
	var clusters cmdutil.Clusters
	var out cmdutil.Output
	o := verify.Options{}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check pod, Service and DNS connectivity between joined clusters with test pods",
		Long: `verify runs the Strait test workload in a temporary namespace of every cluster
(strait-verify-<random>, deleted at the end), on the active gateway node and
on a non-gateway node, and checks between every two clusters, both ways:

  active-gateway    each cluster has an active gateway
  pod-to-pod/tcp    TCP echo from a pod to the other cluster's pod on the
  pod-to-pod/udp    same kind of node (gateway, non-gateway); UDP likewise
  service-import    each cluster's exported test Service is imported with an IP
  service           HTTP to the other cluster's Service through the import's IP,
                    answered by that cluster's pods
  clusterset-dns    <svc>.<ns>.svc.clusterset.local resolves to the import's IP
  gateway-failover  (--disruptive) the active gateway's pod is deleted while
                    a UDP probe runs every 10 ms; the gap must stay under --max-gap

Clusters are given as several kubeconfigs, or one kubeconfig with several
contexts. The exit code is 1 when any check fails, and the error names them.`,
		Example: `  # two clusters, one kubeconfig each
  straitctl verify --kubeconfig c1.kubeconfig --kubeconfig c2.kubeconfig

  # three contexts of one kubeconfig, with a gateway failover, as JSON
  straitctl verify --context east,west,north --disruptive -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			sources, configs, err := clusters.Configs()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cs, err := probe.Connect(ctx, sources, configs)
			if err != nil {
				return cmdutil.Explain(err)
			}
			o.Log = cmdutil.Logf(cmd)
			cmdutil.QuietClientLogs()
			rep, err := verify.Run(ctx, cs, o)
			return out.PrintReport(cmd, rep, rep != nil, err)
		},
	}
	clusters.AddFlags(cmd)
	out.AddFlag(cmd)
	cmd.Flags().StringVar(&o.Image, "image", probe.DefaultImage(version.Version), "image of the Strait test workload (strait-testpod)")
	cmd.Flags().BoolVar(&o.Disruptive, "disruptive", false, "also fail over each cluster's active gateway (deletes its pod) and measure the traffic gap")
	cmd.Flags().DurationVar(&o.MaxGap, "max-gap", verify.DefaultMaxGap, "longest failover gap that passes")
	cmd.Flags().DurationVar(&o.ProbeTimeout, "timeout", verify.DefaultProbeTimeout, "bound on each probe")
	cmd.Flags().DurationVar(&o.ImportTimeout, "import-timeout", verify.DefaultImportTimeout, "bound on the wait for each ServiceImport")
	return cmd
}
