package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"strait.dev/strait/gateway/cable"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// DefaultMetricsAddr is where a gateway serves Prometheus metrics: a port of
// its own in the node's network namespace.
const DefaultMetricsAddr = ":9476"

// Metrics are a gateway's Prometheus metrics.
type Metrics struct {
	reg    *prometheus.Registry
	active prometheus.Gauge
	status *prometheus.GaugeVec
	rtt    *prometheus.GaugeVec
	rx, tx *prometheus.GaugeVec
}

// NewMetrics makes the metrics in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_gateway_active",
			Help: "1 when this gateway is its cluster's active gateway, else 0."}),
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_connection_status",
			Help: "1 for the current status of each connection to a remote gateway."}, []string{"cluster_id", "endpoint", "status"}),
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_connection_rtt_seconds",
			Help: "Health-check round-trip time through the cable: last, min, avg and max."}, []string{"cluster_id", "endpoint", "stat"}),
		rx: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_connection_rx_bytes",
			Help: "Bytes received from a remote gateway through the cable (drivers that count per peer)."}, []string{"cluster_id", "endpoint"}),
		tx: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_connection_tx_bytes",
			Help: "Bytes sent to a remote gateway through the cable (drivers that count per peer)."}, []string{"cluster_id", "endpoint"}),
	}
	m.reg.MustRegister(m.active, m.status, m.rtt, m.rx, m.tx)
	return m
}

// SetActive records the gateway's role.
func (m *Metrics) SetActive(active bool) {
	if active {
		m.active.Set(1)
	} else {
		m.active.Set(0)
	}
}

// SetConnections replaces the per-connection series with the given ones.
func (m *Metrics) SetConnections(conns []v1.Connection, traffic map[string]cable.Traffic) {
	m.status.Reset()
	m.rtt.Reset()
	m.rx.Reset()
	m.tx.Reset()
	for _, c := range conns {
		id, ep := string(c.ClusterID), c.Endpoint
		for _, s := range []v1.ConnectionStatus{v1.Connected, v1.Connecting, v1.ConnectionError} {
			v := 0.0
			if c.Status == s {
				v = 1
			}
			m.status.WithLabelValues(id, ep, string(s)).Set(v)
		}
		if r := c.LatencyRTT; r != nil {
			m.rtt.WithLabelValues(id, ep, "last").Set(r.Last.Seconds())
			m.rtt.WithLabelValues(id, ep, "min").Set(r.Min.Seconds())
			m.rtt.WithLabelValues(id, ep, "avg").Set(r.Average.Seconds())
			m.rtt.WithLabelValues(id, ep, "max").Set(r.Max.Seconds())
		}
		if t, ok := traffic[ep]; ok {
			m.rx.WithLabelValues(id, ep).Set(float64(t.RxBytes))
			m.tx.WithLabelValues(id, ep).Set(float64(t.TxBytes))
		}
	}
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve serves the metrics on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
