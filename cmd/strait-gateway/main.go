// Command strait-gateway is the gateway engine: it runs on gateway nodes,
// one of them active per cluster, publishes the cluster through the broker
// and drives the tunnels to the other clusters.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway"
	"strait.dev/strait/gateway/health"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/version"
)

// defaultNATDiscoveryPort is the NAT discovery port, next to the cable
// drivers' default ports (each driver's descriptor declares its own flags
// and defaults: --wireguard-port 4500, --vxlan-port 4800, --vxlan-vni 100).
const defaultNATDiscoveryPort = 4490

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "strait-gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg                    gateway.Config
		kubeconfig, driver     string
		podCIDRs, serviceCIDRs string
		publicIP, globalCIDR   string
		nat                    int
		showVersion            bool
		dataplane              string
		underlayMTU            int
		pathMTU                string
		metricsAddr            string
	)
	// Each driver's tunables are flags of their own, set into its settings.
	settings := map[v1.CableDriver]*cabledriver.Settings{}
	for _, d := range cabledriver.All() {
		s := &cabledriver.Settings{}
		d.AddFlags(flag.CommandLine, s)
		settings[d.Name] = s
	}
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	flag.StringVar(&cfg.ClusterID, "cluster-id", "", "this cluster's ID (required)")
	flag.StringVar(&cfg.Namespace, "namespace", v1.ComponentNamespace, "namespace of Strait's components")
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&podCIDRs, "pod-cidrs", "", "comma-separated pod CIDRs of the cluster (required)")
	flag.StringVar(&serviceCIDRs, "service-cidrs", "", "comma-separated service CIDRs of the cluster (required)")
	flag.StringVar(&globalCIDR, "global-cidr", "", "the cluster's Globalnet global CIDR, allotted by the broker (empty: no Globalnet)")
	flag.StringVar(&driver, "cable-driver", string(v1.CableDriverWireGuard), "cable driver: "+strings.Join(cabledriver.Names(), " or "))
	flag.StringVar(&publicIP, "public-ip", "", "public address (default: the node's strait.dev/public-ip annotation, else its InternalIP)")
	flag.IntVar(&nat, "nat-discovery-port", defaultNATDiscoveryPort, "NAT discovery UDP port")
	flag.StringVar(&cfg.BrokerSecret, "broker-secret", broker.SecretName, "Secret with the broker credential")
	flag.IntVar(&cfg.HealthCheckPort, "health-check-port", health.DefaultPort, "UDP port of the health probes between gateways")
	flag.DurationVar(&cfg.HealthCheckInterval, "health-check-interval", time.Second, "time between health probes of one connection")
	flag.IntVar(&cfg.HealthCheckFailures, "health-check-failures", 3, "unanswered probes in a row that make a connection an error")
	flag.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", gateway.DefaultHeartbeatInterval, "time between a standby's heartbeats to the active gateway")
	flag.IntVar(&cfg.HeartbeatFailures, "heartbeat-failures", gateway.DefaultHeartbeatFailures, "unanswered heartbeats in a row that make a standby take over")
	flag.StringVar(&dataplane, "dataplane", "cable", "cable: build the tunnels; observe: only log the desired peers")
	flag.IntVar(&underlayMTU, "underlay-mtu", 1500, "MTU of the node network the tunnels run over")
	flag.StringVar(&pathMTU, "path-mtu", "", "path MTU per remote cluster, overriding the measured one: CLUSTER=BYTES[,CLUSTER=BYTES...] (bytes include the IP header; empty: measure every path)")
	flag.BoolVar(&cfg.PathMTUSearch.Disabled, "no-path-mtu-search", false, "do not measure the path MTU to remote gateways (the route agents then size paths from --underlay-mtu, or --path-mtu)")
	flag.StringVar(&metricsAddr, "metrics-addr", gateway.DefaultMetricsAddr, "where to serve Prometheus metrics (empty: nowhere)")
	flag.BoolVar(&showVersion, "version", false, "print the version and exit")
	flag.Parse()
	if showVersion {
		fmt.Println(version.String("strait-gateway"))
		return nil
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	var err error
	if cfg.PodCIDRs, err = requiredCIDRs("--pod-cidrs", podCIDRs); err != nil {
		return err
	}
	if cfg.ServiceCIDRs, err = requiredCIDRs("--service-cidrs", serviceCIDRs); err != nil {
		return err
	}
	if globalCIDR != "" {
		p, err := netip.ParsePrefix(globalCIDR)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return fmt.Errorf("--global-cidr %q: want an IPv4 CIDR of at least 4 addresses", globalCIDR)
		}
		cfg.GlobalCIDR = p.Masked()
	}
	if cfg.PathMTU, err = gateway.ParsePathMTU(pathMTU); err != nil {
		return fmt.Errorf("--path-mtu: %w", err)
	}
	if publicIP != "" {
		if cfg.PublicIP, err = netip.ParseAddr(publicIP); err != nil {
			return fmt.Errorf("--public-ip: %w", err)
		}
	}
	switch {
	case cfg.ClusterID == "":
		return fmt.Errorf("--cluster-id is required")
	case cfg.NodeName == "":
		return fmt.Errorf("--node-name or $NODE_NAME is required")
	}
	desc, err := cabledriver.Get(v1.CableDriver(driver))
	if err != nil {
		return fmt.Errorf("--cable-driver: %w", err)
	}
	cfg.CableDriver, cfg.Cable = desc.Name, *settings[desc.Name]
	if err := desc.Validate(cfg.Cable); err != nil {
		return fmt.Errorf("%s settings: %w", desc.Name, err)
	}
	cfg.NATDiscoveryPort = int32(nat)
	cfg.Log = log
	switch dataplane {
	case "cable":
		cfg.Dataplane = &gateway.CableDataplane{UnderlayMTU: underlayMTU, Log: log}
	case "observe":
		cfg.Dataplane = &gateway.ObserverDataplane{Log: log}
	default:
		return fmt.Errorf("--dataplane %q: want cable or observe", dataplane)
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
	if metricsAddr != "" {
		cfg.Metrics = gateway.NewMetrics()
	}
	engine, err := gateway.New(rc, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.Metrics != nil {
		go func() {
			if err := cfg.Metrics.Serve(ctx, metricsAddr); err != nil {
				log.Error("metrics", "addr", metricsAddr, "err", err)
			}
		}()
	}
	log.Info("starting", "version", version.String("strait-gateway"), "driver", driver)
	return engine.Run(ctx)
}

func requiredCIDRs(flagName, s string) ([]netip.Prefix, error) {
	ps, err := cidr.ParseList(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", flagName, err)
	case len(ps) == 0:
		return nil, fmt.Errorf("%s is required", flagName)
	}
	return ps, nil
}
