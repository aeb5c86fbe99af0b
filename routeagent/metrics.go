package routeagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultMetricsAddr is where a route agent serves Prometheus metrics: in
// the node's network namespace, the port after the gateway's (9476), so
// that both run on a gateway node.
const DefaultMetricsAddr = ":9477"

const (
	// metricsReadHeaderTimeout bounds a slow client's hold on a connection.
	metricsReadHeaderTimeout = 5 * time.Second
	// metricsShutdownGrace lets a scrape in flight finish at exit.
	metricsShutdownGrace = 2 * time.Second
)

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
type Metrics struct {
	reg        *prometheus.Registry
	applied    prometheus.Gauge
	generation prometheus.Gauge
	active     *prometheus.GaugeVec
	applies    prometheus.Counter
	errors     prometheus.Counter
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
	}
	m.reg.MustRegister(m.applied, m.generation, m.active, m.applies, m.errors)
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
// node active ("" for none); changed says it differs from the last applied.
func (m *Metrics) recordSuccess(changed bool, active string) {
	m.applies.Inc()
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

// Serve serves the metrics at /metrics on ln until ctx ends; nil once ctx
// has ended, the server's error otherwise.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadHeaderTimeout}
	served := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-served:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	close(served)
	<-stopped
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}
