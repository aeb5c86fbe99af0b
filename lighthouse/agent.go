package lighthouse

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/client-go/rest"
)

// DefaultMetricsAddr is where the agent serves Prometheus metrics.
const DefaultMetricsAddr = ":9464"

// LeaseName is the Lease in the component namespace whose holder is the
// cluster's active Lighthouse agent (leader election; the other replicas
// wait).
const LeaseName = "strait-lighthouse"

// Config configures the Lighthouse agent of one member cluster.
type Config struct {
	// ClusterID is this cluster's ID (the cluster.clusterset.k8s.io
	// ClusterProperty).
	ClusterID string
	// Namespace is Strait's component namespace (strait-system): the
	// export records live there, next to the broker Secret and the Gateways.
	Namespace string
	// BrokerSecret names the Secret in Namespace with the member's broker
	// credential (broker.SecretName).
	BrokerSecret string
	// LeaderElection makes the agent wait for LeaseName before it writes;
	// off only in tests that run one agent.
	LeaderElection bool
	// MetricsAddr is where to serve Prometheus metrics ("" or "0": none).
	MetricsAddr string
	// HealthAddr serves /healthz and /readyz ("" or "0": none).
	HealthAddr string
	// Resync is how often every object is looked at again; 0 is 10 minutes.
	Resync time.Duration
	Log    *slog.Logger
}

// Run runs the agent until ctx ends: the broker syncer for the export
// records, the export controller (ServiceExport → records and status) and
// the import controller (records → ServiceImports, derived Services and
// EndpointSlices in every namespace that exists).
func Run(ctx context.Context, rc *rest.Config, cfg Config) error {
	return errors.New("lighthouse: not built yet")
}
