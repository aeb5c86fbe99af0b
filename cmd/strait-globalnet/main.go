// Command strait-globalnet is the Globalnet controller of a member cluster
// that joined with Globalnet (docs/globalnet.md). It runs on every gateway
// node: each instance applies the node's NAT between global and cluster
// addresses, and the holder of the Lease strait-globalnet allots the global
// IPs and makes the GlobalIngressIPs and strait-gn Services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"strait.dev/strait/broker"
	"strait.dev/strait/globalnet"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/version"
)

// Exit codes: exitUsage for a bad command line (as the flag package exits),
// exitFailure when the controller fails.
const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr, os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "strait-globalnet:", err)
		os.Exit(exitUsage)
	case opts.showVersion:
		fmt.Println(version.String("strait-globalnet"))
		return
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "strait-globalnet:", err)
		os.Exit(exitFailure)
	}
}

// options is the command line, parsed and checked.
type options struct {
	cfg         globalnet.Config
	kubeconfig  string
	showVersion bool
}

// parseFlags parses args (without the program name); getenv gives
// NODE_NAME, the default of --node-name. Errors name the flag to fix, or
// are the flag package's (flag.ErrHelp for -h).
func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	var cidr string
	fs := flag.NewFlagSet("strait-globalnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fs.StringVar(&o.cfg.ClusterID, "cluster-id", "", "this cluster's ID (required)")
	fs.StringVar(&cidr, "global-cidr", "", "this cluster's global CIDR, allotted by the broker, e.g. 242.1.0.0/16 (required)")
	fs.StringVar(&o.cfg.Namespace, "namespace", v1.ComponentNamespace, "namespace of Strait's components (the Lease "+globalnet.LeaseName+" is there)")
	fs.StringVar(&o.cfg.NodeName, "node-name", getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.BoolVar(&o.cfg.LeaderElection, "leader-elect", true, "allot only while holding the Lease "+globalnet.LeaseName+" (off only when one instance runs)")
	fs.StringVar(&o.cfg.MetricsAddr, "metrics-addr", globalnet.DefaultMetricsAddr, `where to serve Prometheus metrics, on the node's network ("" or "0": nowhere)`)
	fs.StringVar(&o.cfg.HealthAddr, "health-addr", "0", `where to serve /healthz and /readyz ("" or "0": nowhere)`)
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.showVersion {
		return o, nil
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	case o.cfg.ClusterID == "":
		return o, errors.New("--cluster-id is required")
	case cidr == "":
		return o, errors.New("--global-cidr is required")
	case o.cfg.Namespace == "":
		return o, errors.New("--namespace must not be empty")
	case o.cfg.NodeName == "":
		return o, errors.New("--node-name is required (or NODE_NAME in the environment)")
	}
	if err := broker.ValidateClusterID(o.cfg.ClusterID); err != nil {
		return o, fmt.Errorf("--cluster-id: %w", err)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return o, fmt.Errorf("--global-cidr: %w", err)
	}
	if _, err := globalnet.NewPool(p); err != nil {
		return o, fmt.Errorf("--global-cidr: %w", err)
	}
	o.cfg.GlobalCIDR = p
	return o, nil
}

// run runs the controller until SIGTERM or SIGINT.
func run(o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	o.cfg.Log = log
	var (
		rc  *rest.Config
		err error
	)
	if o.kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("starting", "version", version.String("strait-globalnet"), "cluster", o.cfg.ClusterID, "globalCIDR", o.cfg.GlobalCIDR, "node", o.cfg.NodeName)
	return globalnet.Run(ctx, rc, o.cfg)
}
