// Package show is "straitctl show": tables of the fabric's records.
package show

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/scheme"
)

// NewCommand returns the show command.
func NewCommand() *cobra.Command {
	var kube cmdutil.Kube
	cmd := &cobra.Command{
		Use:   "show clusters|endpoints|gateways|connections",
		Short: "Show the clusters, gateway endpoints, gateways or connections a member knows",
		Long: `show prints what the member cluster holds in strait-system: its own records and
the ones it imported from the broker (clusters, endpoints), or its gateways'
roles (gateways), or the health of each gateway's cables with round-trip
times (connections).`,
		Example: `  straitctl show clusters --kubeconfig c1.kubeconfig
  straitctl show gateways --kubeconfig c2.kubeconfig
  straitctl show connections --kubeconfig c1.kubeconfig`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"clusters", "endpoints", "gateways", "connections"},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := kube.Config()
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
			if err != nil {
				return err
			}
			return cmdutil.Explain(Print(cmd, c, args[0], cmd.OutOrStdout()))
		},
	}
	kube.AddFlags(cmd)
	return cmd
}

// Print writes the table of one kind of record.
func Print(cmd *cobra.Command, c client.Client, what string, out io.Writer) error {
	ctx := cmd.Context()
	in := client.InNamespace(v1.ComponentNamespace)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch what {
	case "clusters":
		var list v1.ClusterList
		if err := c.List(ctx, &list, in); err != nil {
			return err
		}
		fmt.Fprintln(tw, "CLUSTER\tPOD CIDRS\tSERVICE CIDRS\tGLOBAL CIDRS\tREGION\tAGE")
		for _, x := range list.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Spec.ClusterID, cidrs(x.Spec.PodCIDRs), cidrs(x.Spec.ServiceCIDRs),
				dash(cidrs(x.Spec.GlobalCIDRs)), dash(x.Spec.Topology.Region), age(x.CreationTimestamp.Time))
		}
	case "endpoints":
		var list v1.EndpointList
		if err := c.List(ctx, &list, in); err != nil {
			return err
		}
		fmt.Fprintln(tw, "CLUSTER\tENDPOINT\tHOST\tDRIVER\tPRIVATE IP\tPUBLIC IP\tSUBNETS")
		for _, x := range list.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Spec.ClusterID, x.Name, x.Spec.Hostname, x.Spec.CableDriver,
				ips(x.Spec.PrivateIPs), dash(ips(x.Spec.PublicIPs)), cidrs(x.Spec.Subnets))
		}
	case "gateways":
		var list v1.GatewayList
		if err := c.List(ctx, &list, in); err != nil {
			return err
		}
		fmt.Fprintln(tw, "NODE\tHA\tENDPOINT\tCONNECTIONS")
		for _, x := range list.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", x.Name, dash(string(x.Status.HAStatus)), dash(x.Status.LocalEndpoint), len(x.Status.Connections))
		}
	case "connections":
		var list v1.GatewayList
		if err := c.List(ctx, &list, in); err != nil {
			return err
		}
		fmt.Fprintln(tw, "GATEWAY\tCLUSTER\tENDPOINT\tSTATUS\tUSING IP\tNAT\tRTT LAST\tRTT MIN\tRTT AVG\tRTT MAX\tMESSAGE")
		for _, g := range list.Items {
			for _, x := range g.Status.Connections {
				last, lo, avg, hi := "-", "-", "-", "-"
				if r := x.LatencyRTT; r != nil {
					last, lo, avg, hi = rtt(r.Last.Duration), rtt(r.Min.Duration), rtt(r.Average.Duration), rtt(r.Max.Duration)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n", g.Name, x.ClusterID, x.Endpoint, x.Status,
					dash(string(x.UsingIP)), x.UsingNAT, last, lo, avg, hi, dash(x.StatusMessage))
			}
		}
	default:
		return fmt.Errorf("show %q: want clusters, endpoints, gateways or connections", what)
	}
	return nil
}

func cidrs(in []v1.CIDR) string {
	s := make([]string, len(in))
	for i, c := range in {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

func ips(in v1.DualStackIPs) string {
	s := make([]string, len(in))
	for i, c := range in {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

func rtt(d time.Duration) string {
	return d.Round(time.Microsecond).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}
