// Command strait-routeagent runs on every node of a member cluster and
// routes the other clusters' pod and service CIDRs to the active gateway.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/version"
	"strait.dev/strait/routeagent"
)

// DaemonSetName is the route agent's DaemonSet (deploy/charts/strait/templates/routeagent.yaml).
const DaemonSetName = "strait-routeagent"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "strait-routeagent:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg                        routeagent.Config
		kubeconfig, pods, services string
		showVersion                bool
	)
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	flag.StringVar(&cfg.ClusterID, "cluster-id", "", "this cluster's ID (required)")
	flag.StringVar(&cfg.Namespace, "namespace", v1.ComponentNamespace, "namespace of Strait's components")
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&pods, "pod-cidrs", "", "comma-separated pod CIDRs of the cluster (required)")
	flag.StringVar(&services, "service-cidrs", "", "comma-separated service CIDRs of the cluster (required)")
	flag.StringVar(&cfg.CableDriver, "cable-driver", string(v1.CableDriverWireGuard), "the cluster's cable driver, for the path MTU: "+strings.Join(cabledriver.Names(), " or "))
	flag.IntVar(&cfg.UnderlayMTU, "underlay-mtu", 1500, "MTU of the node network")
	cfg.MasqueradeBit = flag.Int("kube-proxy-masquerade-bit", routeagent.DefaultMasqueradeBit,
		"the bit kube-proxy marks packets to masquerade with; must match kube-proxy's --iptables-masquerade-bit / masqueradeBit (0 to 31)")
	flag.StringVar(&cfg.LeaseName, "lease", v1.GatewayLeaseName, "the gateways' Lease, whose holder is the active gateway")
	flag.StringVar(&cfg.DaemonSet, "daemonset", DaemonSetName, "this agent's DaemonSet: when it is gone at exit, clean up")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", routeagent.DefaultMetricsAddr, `address to serve Prometheus metrics on, in the node's network namespace ("-" for none)`)
	flag.BoolVar(&showVersion, "version", false, "print the version and exit")
	flag.Parse()
	if showVersion {
		fmt.Println(version.String("strait-routeagent"))
		return nil
	}
	p, err := cidr.ParseList(pods)
	if err != nil {
		return fmt.Errorf("--pod-cidrs: %w", err)
	}
	s, err := cidr.ParseList(services)
	if err != nil {
		return fmt.Errorf("--service-cidrs: %w", err)
	}
	if len(p) == 0 || len(s) == 0 {
		return fmt.Errorf("--pod-cidrs and --service-cidrs are required")
	}
	cfg.LocalCIDRs = append(p, s...)
	if err := routeagent.ValidateMasqueradeBit(*cfg.MasqueradeBit); err != nil {
		return fmt.Errorf("--kube-proxy-masquerade-bit: %w", err)
	}
	if _, err := cabledriver.Get(v1.CableDriver(cfg.CableDriver)); err != nil {
		return fmt.Errorf("--cable-driver: %w", err)
	}
	var rc *rest.Config
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return err
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	a, err := routeagent.New(rc, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return a.Run(ctx)
}
