package routeagent

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"strait.dev/strait/pkg/metricsserver"
)

// DefaultMetricsAddr is where a route agent serves Prometheus metrics: in
// the node's network namespace, the port after the gateway's (9476), so
// that both run on a gateway node.
const DefaultMetricsAddr = ":9477"

// Metrics tell whether, and which, desired state the agent has in the
// kernel, so that tests and alerts wait on them instead of on time:
//
//	strait_routeagent_state_applied 1 once the current desired state is
//	  in the kernel; 0 before the first apply and while one fails.
//	strait_routeagent_state_generation +1 each time a changed desired
//	  state has been applied.
//	strait_routeagent_active_gateway_info{node} 1 for the active gateway
//	  the applied state routes to (no series without one).
//	strait_routeagent_applies_total, strait_routeagent_apply_errors_total.
//	strait_routeagent_remote_subnets the remote subnets the applied state
//	  routes to a gateway (0 without an active gateway: they are
//	  unreachable then).
//	strait_routeagent_last_apply_duration_seconds how long the last
//	  successful apply took, by the agent's clock.
type Metrics struct {
	reg        *prometheus.Registry
	applied    prometheus.Gauge
	generation prometheus.Gauge
	active     *prometheus.GaugeVec
	applies    prometheus.Counter
	errors     prometheus.Counter
	remote     prometheus.Gauge
	duration   prometheus.Gauge
}

// NewMetrics makes the metrics in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_routeagent_state_applied",
			Help: "1 once the current desired state is in the kernel; 0 before the first apply and while an apply fails."}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_routeagent_state_generation",
			Help: "Increments each time a changed desired state has been applied."}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_routeagent_active_gateway_info",
			Help: "1 for the active gateway node that the applied state routes to."}, []string{"node"}),
		applies: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_routeagent_applies_total",
			Help: "Attempts to make the kernel match the desired state."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_routeagent_apply_errors_total",
			Help: "Attempts that failed (facts, computing or applying)."}),
		remote: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_routeagent_remote_subnets",
			Help: "Remote subnets the applied state routes to the active gateway; 0 without one (they are unreachable then)."}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_routeagent_last_apply_duration_seconds",
			Help: "How long the last successful apply (reading and changing the kernel) took, in seconds."}),
	}
	m.reg.MustRegister(m.collectors()...)
	return m
}

// recordFailure records a failed attempt: the kernel may not hold the
// desired state.
func (m *Metrics) recordFailure() {
	m.applies.Inc()
	m.errors.Inc()
	m.applied.Set(0)
}

// recordSuccess records an applied state, routed to the active gateway
// node active ("" for none), with remote subnets routed to it, that took
// took to apply (negative: nothing was applied, the kernel already held
// it); changed says it differs from the last applied.
func (m *Metrics) recordSuccess(changed bool, active string, remote int, took time.Duration) {
	m.applies.Inc()
	m.remote.Set(float64(remote))
	if took >= 0 {
		m.duration.Set(took.Seconds())
	}
	if changed {
		m.generation.Inc()
	}
	m.active.Reset()
	if active != "" {
		m.active.WithLabelValues(active).Set(1)
	}
	m.applied.Set(1)
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve serves the metrics at /metrics on ln until ctx ends, with the
// timeouts of pkg/metricsserver; nil once ctx has ended, the server's error
// otherwise.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	return metricsserver.Serve(ctx, ln, m.Handler())
}

// Describe sends the description of every metric the agent serves, series
// or not yet (prometheus.Collector's Describe): for tools that check the
// names dashboards and alerts use.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// collectors are every metric the agent serves.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.applied, m.generation, m.active, m.applies, m.errors, m.remote, m.duration}
}
