// Package diagnose is "straitctl diagnose", over pkg/diagnose.
package diagnose

import (
	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/diagnose"
	"strait.dev/strait/pkg/probe"
	"strait.dev/strait/pkg/version"
)

// NewCommand returns the diagnose command.
func NewCommand() *cobra.Command {
	var clusters cmdutil.Clusters
	var out cmdutil.Output
	o := diagnose.Options{Version: version.Version}
	cmd := &cobra.Command{
		Use:   "diagnose",
		Short: "Look for what commonly breaks a clusterset; say ok, warn or fail and what to do",
		Long: `diagnose prints one line per check, ok, warn or fail, with what to do:

  kube-proxy-mode  kube-proxy's /proxyMode on the gateway and a non-gateway node
  cidrs            the cluster's pod and service CIDRs against those it joined with
  cidr-overlap     pod and service CIDRs of every two clusters
  gateway-nodes    labelled gateway nodes, a standby, an active gateway
  public-ip        the addresses the cluster's Endpoint offers other clusters
  cables           each cable as the active gateway's health check sees it
  nat-discovery    a NAT discovery request from a host-network test pod on one
                   active gateway node to the other cluster's gateway, answered
  dns-forward      the clusterset.local forward in kube-system/coredns
  clock-skew       the apiservers' clocks against each other
  versions         the components' image tags across clusters and straitctl's
  leftovers        Strait's labels, namespace, CRDs and DNS block in clusters
                   given that have not joined

Test pods run in a temporary namespace (strait-diagnose-<random>, deleted at
the end). The exit code is 1 when a check fails; warnings do not fail.`,
		Example: `  straitctl diagnose --kubeconfig c1.kubeconfig,c2.kubeconfig
  straitctl diagnose --context east,west -o yaml`,
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
			cs, err := probe.ConnectAny(ctx, sources, configs)
			if err != nil {
				return cmdutil.Explain(err)
			}
			o.Log = cmdutil.Logf(cmd)
			cmdutil.QuietClientLogs()
			rep, err := diagnose.Run(ctx, cs, o)
			return out.PrintReport(cmd, rep, rep != nil, err)
		},
	}
	clusters.AddFlags(cmd)
	out.AddFlag(cmd)
	cmd.Flags().StringVar(&o.Image, "image", probe.DefaultImage(version.Version), "image of the Strait test workload (strait-testpod)")
	return cmd
}
