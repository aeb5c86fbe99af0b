// Package benchmark is "straitctl benchmark throughput|latency", over
// pkg/benchmark.
package benchmark

import (
	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/benchmark"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/probe"
	"strait.dev/strait/pkg/version"
)

// NewCommand returns the benchmark command.
func NewCommand() *cobra.Command {
	var clusters cmdutil.Clusters
	var out cmdutil.Output
	o := benchmark.Options{}
	cmd := &cobra.Command{
		Use:   "benchmark throughput|latency",
		Short: "Measure throughput (Gbit/s) or round-trip times between clusters with test pods",
		Long: `benchmark runs the Strait test workload in a temporary namespace of every cluster
(strait-benchmark-<random>, deleted at the end) on the active gateway node and
on a non-gateway node, and measures between every two clusters, one pair and
one placement at a time:

  throughput  one TCP connection for --duration; Gbit/s as the receiving pod
              counted the bytes
  latency     a UDP probe every 5 ms for --duration; RTT p50, p99 and max in
              milliseconds, and the probes lost

Gateway to gateway is pods on the two active gateway nodes (the cable alone);
non-gateway is pods on other nodes (the route agents' overlay, the cable, and
the overlay again).`,
		Example: `  straitctl benchmark throughput --kubeconfig c1.kubeconfig,c2.kubeconfig
  straitctl benchmark latency --context east,west --duration 10s -o json`,
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{benchmark.Throughput, benchmark.Latency},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.Validate(); err != nil {
				return err
			}
			o.Kind = args[0]
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
			rep, err := benchmark.Run(ctx, cs, o)
			return out.PrintReport(cmd, rep, rep != nil, err)
		},
	}
	clusters.AddFlags(cmd)
	out.AddFlag(cmd)
	cmd.Flags().StringVar(&o.Image, "image", probe.DefaultImage(version.Version), "image of the Strait test workload (strait-testpod)")
	cmd.Flags().DurationVar(&o.Duration, "duration", benchmark.DefaultDuration, "how long each measurement runs")
	return cmd
}
