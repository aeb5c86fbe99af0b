// Command strait-lighthouse is the Lighthouse agent of a member cluster: it
// publishes the cluster's ServiceExports through the broker and makes the
// ServiceImports, derived Services and EndpointSlices of the clusterset's
// exported services. Its replicas elect one active agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"strait.dev/strait/broker"
	"strait.dev/strait/lighthouse"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/version"
)

// defaultHealthAddr is where the agent serves /healthz and /readyz for the
// kubelet's probes: port 8081, controller-runtime's customary probe port.
// The agent runs in its pod's own network namespace, so the port is in no
// other component's way.
const defaultHealthAddr = ":8081"

// Exit codes: exitUsage for a bad command line (as the flag package exits),
// exitFailure when the agent fails.
const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "strait-lighthouse:", err)
		os.Exit(exitUsage)
	case opts.showVersion:
		fmt.Println(version.String("strait-lighthouse"))
		return
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "strait-lighthouse:", err)
		os.Exit(exitFailure)
	}
}

// options is the command line, parsed and checked.
type options struct {
	cfg         lighthouse.Config
	kubeconfig  string
	showVersion bool
}

// parseFlags parses args (without the program name). The flag package
// reports its own errors (an unknown flag, a bad value) with the usage on
// stderr; the error returned then is theirs, or flag.ErrHelp for -h. The
// flags' values are checked too, and an error names the flag to fix.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("strait-lighthouse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fs.StringVar(&o.cfg.ClusterID, "cluster-id", "", "this cluster's ID (required)")
	fs.StringVar(&o.cfg.Namespace, "namespace", v1.ComponentNamespace, "namespace of Strait's components")
	fs.StringVar(&o.cfg.BrokerSecret, "broker-secret", broker.SecretName, "Secret with the broker credential, in --namespace")
	fs.BoolVar(&o.cfg.LeaderElection, "leader-elect", true, "wait for the Lease "+lighthouse.LeaseName+" before writing (off only when one replica runs)")
	fs.StringVar(&o.cfg.MetricsAddr, "metrics-addr", lighthouse.DefaultMetricsAddr, `where to serve Prometheus metrics ("" or "0": nowhere)`)
	fs.StringVar(&o.cfg.HealthAddr, "health-addr", defaultHealthAddr, `where to serve /healthz and /readyz ("" or "0": nowhere)`)
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
	case o.cfg.Namespace == "":
		return o, errors.New("--namespace must not be empty")
	case o.cfg.BrokerSecret == "":
		return o, errors.New("--broker-secret must not be empty")
	}
	if err := broker.ValidateClusterID(o.cfg.ClusterID); err != nil {
		return o, fmt.Errorf("--cluster-id: %w", err)
	}
	return o, nil
}

// run runs the agent until SIGTERM or SIGINT.
func run(o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// The agent's controllers are controller-runtime's, which log through
	// logr: into the same handler.
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
	log.Info("starting", "version", version.String("strait-lighthouse"), "cluster", o.cfg.ClusterID,
		"namespace", o.cfg.Namespace, "leaderElection", o.cfg.LeaderElection)
	return lighthouse.Run(ctx, rc, o.cfg)
}
