// Package join is "straitctl join".
package join

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/pkg/version"
)

// NewCommand returns the join command.
func NewCommand() *cobra.Command {
	var (
		kube                   cmdutil.Kube
		opts                   member.JoinOptions
		driver, gateways       string
		podCIDRs, serviceCIDRs []string
		globalCIDR             string
		dryRun, enrolOnly      bool
		output                 string
	)
	cmd := &cobra.Command{
		Use:   "join <broker-info file>",
		Short: "Join a cluster to a broker",
		Long: `join enrols the cluster at the broker (refusing a cluster ID another cluster
uses, or CIDRs that overlap another member's), stores the cluster's own broker
credential in strait-system, sets the ClusterProperty cluster.clusterset.k8s.io,
labels the gateway nodes and installs Strait's components. Pod CIDRs are
discovered from kube-system or the nodes, service CIDRs from the ServiceCIDR
API, unless given. Joining again changes nothing; with changed flags it updates.

Before it touches the broker, join asks the cluster whether the kubeconfig may
do all it needs (CRDs, namespace, RBAC, DaemonSets, Deployments, the CoreDNS
ConfigMap, node labels) and stops with the list of missing rights. A join that
fails later removes the enrolment it made at the broker. A cluster joined to
another broker (or namespace) is refused: run "straitctl leave" first.

With --globalnet the broker allots the cluster a global CIDR from its pool
(--globalnet-cidr-size addresses, or the block --globalnet-cidr names), and
the cluster's pod and service CIDRs may then overlap those of other Globalnet
members: cross-cluster traffic uses global IPs. "straitctl leave" releases the
block; joining again keeps it.

With --dry-run, join prints the objects it would apply (-o yaml or json) and
changes nothing: the CRDs, the namespace strait-system, what Strait's Helm
chart renders (deploy/charts/strait; helm template with the same values gives
the same objects) and the broker credential Secret without its token. It still
reads the cluster (the CIDRs unless given, the gateway nodes, an existing
broker credential, the rights it needs) but does not talk to the broker, so
--globalnet needs --globalnet-cidr unless the cluster already has a global CIDR.
The CoreDNS forward and the gateway node labels are not printed.

With --enrol-only, join does only what "helm install" of Strait's chart needs
first, for a cluster Helm is to install (docs/helm.md): the same checks and
reads, the enrolment at the broker (the global CIDR too with --globalnet), the
namespace strait-system with the broker credential Secret strait-broker in
it, and the gateway node labels. It installs no CRD and none of the chart's
objects, and leaves CoreDNS alone. It prints on stdout the Helm values join
would render the chart with (no secret among them), progress on stderr;
"helm install strait deploy/charts/strait -n strait-system -f <those values>"
then installs what join would. Running it again keeps the token and the
global CIDR. A failure undoes the enrolment it made. "straitctl leave" works
on such a cluster, with the chart installed or not.`,
		Example: `  straitctl join broker-info.strait --kubeconfig c1.kubeconfig --clusterid c1 --gateway-nodes c1-n1,c1-n2
  straitctl join broker-info.strait --kubeconfig c2.kubeconfig --clusterid c2 --cable-driver vxlan
  straitctl join broker-info.strait --kubeconfig c3.kubeconfig --clusterid c3 --globalnet --globalnet-cidr-size 4096
  straitctl join broker-info.strait --kubeconfig c1.kubeconfig --clusterid c1 --dry-run -o yaml
  straitctl join broker-info.strait --kubeconfig c4.kubeconfig --clusterid c4 --gateway-nodes c4-n1 --enrol-only > c4-values.yaml
  helm install strait deploy/charts/strait --kubeconfig c4.kubeconfig --namespace strait-system -f c4-values.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if enrolOnly && dryRun {
				return errors.New("--enrol-only and --dry-run: --dry-run writes nothing and asks the broker nothing, --enrol-only enrols at the broker and writes the credential; give one")
			}
			if output != "" && enrolOnly {
				return errors.New("-o needs --dry-run: --enrol-only always prints the Helm values, as YAML")
			}
			if output != "" && !dryRun {
				return errors.New("-o needs --dry-run")
			}
			if dryRun && output == "" {
				output = "yaml"
			}
			if dryRun && output != "yaml" && output != "json" {
				return fmt.Errorf("-o %q: want yaml or json", output)
			}
			if globalCIDR != "" {
				p, err := netip.ParsePrefix(globalCIDR)
				if err != nil {
					return fmt.Errorf("--globalnet-cidr %q: %w", globalCIDR, err)
				}
				opts.GlobalCIDR, opts.Globalnet = p, true
			}
			if cmd.Flags().Changed("globalnet-cidr-size") && !opts.Globalnet {
				return errors.New("--globalnet-cidr-size needs --globalnet")
			}
			if opts.Globalnet && !opts.GlobalCIDR.IsValid() {
				if _, err := broker.ValidateGlobalCIDRSize(opts.GlobalCIDRSize); err != nil {
					return fmt.Errorf("--globalnet-cidr-size: %w", err)
				}
			}
			info, err := broker.ReadInfo(args[0])
			if err != nil {
				return err
			}
			cfg, err := kube.Config()
			if err != nil {
				return err
			}
			opts.CableDriver = v1.CableDriver(driver)
			if gateways != "" {
				opts.GatewayNodes = strings.Split(gateways, ",")
			}
			if opts.PodCIDRs, err = cidr.ParseAll(podCIDRs); err != nil {
				return fmt.Errorf("--pod-cidr: %w", err)
			}
			if opts.ServiceCIDRs, err = cidr.ParseAll(serviceCIDRs); err != nil {
				return fmt.Errorf("--service-cidr: %w", err)
			}
			opts.Log = func(format string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), format+"\n", a...) }
			if dryRun {
				// stdout is the objects; progress goes to stderr.
				opts.Log = func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
				objs, err := member.DryRun(cmd.Context(), cfg, info, opts)
				if err != nil {
					return cmdutil.Explain(err)
				}
				return printObjects(cmd.OutOrStdout(), objs, output)
			}
			if enrolOnly {
				// stdout is the values file; progress goes to stderr.
				opts.Log = func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
				values, err := member.EnrolOnly(cmd.Context(), cfg, info, opts)
				if err != nil {
					return cmdutil.Explain(err)
				}
				if err := printValues(cmd.OutOrStdout(), values); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "cluster %s enrolled; install the chart with these values: helm install %s deploy/charts/strait --namespace %s -f <this output>\n",
					opts.ClusterID, manifests.ReleaseName, v1.ComponentNamespace)
				return nil
			}
			if err := member.Join(cmd.Context(), cfg, info, opts); err != nil {
				return cmdutil.Explain(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s joined\n", opts.ClusterID)
			return nil
		},
	}
	kube.AddFlags(cmd)
	cmd.Flags().StringVar(&opts.ClusterID, "clusterid", "", "the cluster's ID, an RFC 1123 label (required)")
	cmd.Flags().StringVar(&driver, "cable-driver", string(v1.CableDriverWireGuard), "wireguard (encrypted) or vxlan (plain, for trusted networks)")
	cmd.Flags().StringVar(&gateways, "gateway-nodes", "", "comma-separated gateway nodes (default: the nodes already labelled strait.dev/gateway=true)")
	cmd.Flags().StringSliceVar(&podCIDRs, "pod-cidr", nil, "pod CIDRs (default: discovered)")
	cmd.Flags().StringSliceVar(&serviceCIDRs, "service-cidr", nil, "service CIDRs (default: discovered)")
	cmd.Flags().BoolVar(&opts.Globalnet, "globalnet", false, "get a global CIDR from the broker's Globalnet pool, for CIDRs that overlap other Globalnet members'")
	cmd.Flags().IntVar(&opts.GlobalCIDRSize, "globalnet-cidr-size", broker.DefaultGlobalCIDRSize, "addresses in the global CIDR with --globalnet, a power of two (65536 is a /16)")
	cmd.Flags().StringVar(&globalCIDR, "globalnet-cidr", "", "the global CIDR to take from the broker's pool (implies --globalnet)")
	cmd.Flags().IntVar(&opts.UnderlayMTU, "underlay-mtu", 0, "MTU of the node network the cables run over, in bytes, when smaller than the nodes' interfaces say (default: the components' 1500)")
	cmd.Flags().StringVar(&opts.ImageRepository, "image-repository", "strait", "repository of Strait's images")
	cmd.Flags().StringVar(&opts.ImageTag, "image-tag", version.Version, "tag of Strait's images")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the objects join would apply and change nothing (no writes to the cluster, no talk with the broker)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "with --dry-run: yaml (the default) or json")
	cmd.Flags().BoolVar(&enrolOnly, "enrol-only", false, "enrol at the broker, write the broker credential and label the gateway nodes, install nothing of the chart, and print the Helm values for helm install")
	_ = cmd.MarkFlagRequired("clusterid")
	return cmd
}

// printValues writes the chart's values of v (GatewayValues.Values, the
// ones join renders the chart with) as a YAML values file for helm install,
// headed by a comment saying what it is.
func printValues(w io.Writer, v manifests.GatewayValues) error {
	vals, err := v.Values()
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(vals)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "# Values of Strait's chart (deploy/charts/strait) for cluster %s, from straitctl join --enrol-only:\n# helm install %s deploy/charts/strait --namespace %s -f <this file>\n%s",
		v.ClusterID, manifests.ReleaseName, v.Namespace, b)
	return err
}

// printObjects writes objs as YAML documents (separated by ---) or as a
// JSON List, each with its apiVersion and kind, without the empty
// creationTimestamp and status that typed objects carry.
func printObjects(w io.Writer, objs []client.Object, format string) error {
	items := make([]any, 0, len(objs))
	for _, obj := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return fmt.Errorf("%s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
		if md, ok := m["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		delete(m, "status")
		items = append(items, m)
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	for _, item := range items {
		b, err := yaml.Marshal(item)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}
