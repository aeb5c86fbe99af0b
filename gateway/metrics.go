package gateway

import (
	"context"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"strait.dev/strait/gateway/cable"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/metricsserver"
)

// DefaultMetricsAddr is where a gateway serves Prometheus metrics: a port of
// its own in the node's network namespace.
const DefaultMetricsAddr = ":9476"

// Metric descriptions of the per-connection series. They are rendered at
// scrape time from the last connections set and the traffic source, so a
// connection that goes leaves no series behind and the byte counters are
// the cable driver's own counters, read when Prometheus asks.
var (
	connStatusDesc = prometheus.NewDesc("strait_connection_status",
		"1 for the current status of each connection to a remote gateway, 0 for the other statuses.",
		[]string{"cluster_id", "endpoint", "status"}, nil)
	connRTTDesc = prometheus.NewDesc("strait_connection_rtt_seconds",
		"Health-check round-trip time through the cable: last, min, avg and max.",
		[]string{"cluster_id", "endpoint", "stat"}, nil)
	connRxDesc = prometheus.NewDesc("strait_connection_rx_bytes_total",
		"Bytes received from a remote gateway through the cable (drivers that count per peer). The driver's counter: it restarts from 0 when the peer is set up again.",
		[]string{"cluster_id", "endpoint"}, nil)
	connTxDesc = prometheus.NewDesc("strait_connection_tx_bytes_total",
		"Bytes sent to a remote gateway through the cable (drivers that count per peer). The driver's counter: it restarts from 0 when the peer is set up again.",
		[]string{"cluster_id", "endpoint"}, nil)
)

// connectionStatuses are the values of the status label, one series each.
var connectionStatuses = []v1.ConnectionStatus{v1.Connected, v1.Connecting, v1.ConnectionError}

// Metrics are a gateway's Prometheus metrics, in a registry of their own.
// The zero value is not usable: make one with NewMetrics. Its methods are
// safe for concurrent use.
type Metrics struct {
	reg    *prometheus.Registry
	active prometheus.Gauge
	held   prometheus.Gauge

	mu      sync.Mutex
	conns   []v1.Connection
	traffic func() map[string]cable.Traffic
}

// NewMetrics makes the metrics in a registry of their own: the gateway's
// role, and the per-connection series collected at scrape time.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_gateway_active",
			Help: "1 when this gateway is its cluster's active gateway, else 0."}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_broker_records_held",
			Help: "Other clusters' Clusters and Endpoints the active gateway keeps although the broker lacks them (a broker outage; see the log). 0 when in step."}),
	}
	m.reg.MustRegister(m.active, m.held, (*connCollector)(m))
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

// SetHeldRecords records how many imported records the syncer keeps
// although the broker lacks them.
func (m *Metrics) SetHeldRecords(n int) { m.held.Set(float64(n)) }

// SetConnections replaces the connections whose status, round-trip times
// and traffic the metrics show. A connection left out leaves no series
// behind. conns is copied.
func (m *Metrics) SetConnections(conns []v1.Connection) {
	cp := make([]v1.Connection, len(conns))
	for i := range conns {
		conns[i].DeepCopyInto(&cp[i])
	}
	m.mu.Lock()
	m.conns = cp
	m.mu.Unlock()
}

// SetTrafficSource sets where the byte counters come from: a function,
// called at each scrape, that returns the cable's counters by Endpoint name
// (the connections' Endpoint field). Only endpoints of the connections last
// set are shown. nil removes the byte counters.
func (m *Metrics) SetTrafficSource(source func() map[string]cable.Traffic) {
	m.mu.Lock()
	m.traffic = source
	m.mu.Unlock()
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve serves the metrics at /metrics on addr until ctx ends, with the
// timeouts of pkg/metricsserver. It returns an error if addr cannot be
// listened on or the server fails; nil once ctx has ended.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	return metricsserver.ListenAndServe(ctx, addr, m.Handler())
}

// connCollector renders the per-connection series of a Metrics at scrape
// time.
type connCollector Metrics

var _ prometheus.Collector = (*connCollector)(nil)

// Describe implements prometheus.Collector.
func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connStatusDesc, connRTTDesc, connRxDesc, connTxDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	conns, source := c.conns, c.traffic
	c.mu.Unlock()
	// The source is called outside the lock: it may read the kernel.
	var traffic map[string]cable.Traffic
	if source != nil {
		traffic = source()
	}
	emit := func(desc *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(desc, typ, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(desc, err)
		}
		ch <- m
	}
	seen := map[string]bool{}
	for _, conn := range conns {
		id, ep := string(conn.ClusterID), conn.Endpoint
		// Two entries for one endpoint would be duplicate series, which
		// fail the whole scrape; the first wins.
		if seen[ep] {
			continue
		}
		seen[ep] = true
		for _, s := range connectionStatuses {
			v := 0.0
			if conn.Status == s {
				v = 1
			}
			emit(connStatusDesc, prometheus.GaugeValue, v, id, ep, string(s))
		}
		if r := conn.LatencyRTT; r != nil {
			emit(connRTTDesc, prometheus.GaugeValue, r.Last.Seconds(), id, ep, "last")
			emit(connRTTDesc, prometheus.GaugeValue, r.Min.Seconds(), id, ep, "min")
			emit(connRTTDesc, prometheus.GaugeValue, r.Average.Seconds(), id, ep, "avg")
			emit(connRTTDesc, prometheus.GaugeValue, r.Max.Seconds(), id, ep, "max")
		}
		if t, ok := traffic[ep]; ok {
			emit(connRxDesc, prometheus.CounterValue, float64(t.RxBytes), id, ep)
			emit(connTxDesc, prometheus.CounterValue, float64(t.TxBytes), id, ep)
		}
	}
}

// Describe sends the description of every metric the gateway serves,
// series or not yet (prometheus.Collector's Describe): for tools that
// check the names dashboards and alerts use.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.active.Describe(ch)
	m.held.Describe(ch)
	(*connCollector)(m).Describe(ch)
}
