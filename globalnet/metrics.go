package globalnet

import (
	"math"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are Globalnet's own Prometheus metrics, next to
// controller-runtime's on the same endpoint. The allocation series are
// set by the allocator, which runs on the Lease holder only: on the other
// instances they stay 0, so dashboards and alerts take the max over
// instances. Make one with NewMetrics; it is safe for concurrent use.
type Metrics struct {
	size      prometheus.Gauge
	allocated prometheus.Gauge
	refused   prometheus.Gauge
}

// NewMetrics makes the metrics of a controller allotting from cidr.
func NewMetrics(cidr netip.Prefix) *Metrics {
	m := &Metrics{
		size: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_globalnet_pool_ips",
			Help: "Global IPs the cluster's global CIDR can allot (its addresses less the reserved ones at its start)."}),
		allocated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_globalnet_allocated_ips",
			Help: "Global IPs allotted to ClusterGlobalEgressIPs, GlobalEgressIPs and GlobalIngressIPs, by the last allotment of the Lease holder."}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_globalnet_exhausted_requests",
			Help: "Objects the last allotment of the Lease holder gave no global IPs because the global CIDR had no run of free addresses long enough (condition IPPoolExhausted)."}),
	}
	m.size.Set(poolSize(cidr))
	return m
}

// poolSize is how many addresses of cidr may be allotted, as a float: an
// IPv6 global CIDR can hold more than an int.
func poolSize(cidr netip.Prefix) float64 {
	if !cidr.IsValid() {
		return 0
	}
	return math.Max(0, math.Exp2(float64(cidr.Addr().BitLen()-cidr.Bits()))-reservedAddrs)
}

// recordAllotment records the pool after an allotment and how many
// holders it refused for want of addresses.
func (m *Metrics) recordAllotment(p *Pool, refused int) {
	if m == nil {
		return
	}
	m.allocated.Set(float64(p.held()))
	m.refused.Set(float64(refused))
}

var _ prometheus.Collector = (*Metrics)(nil)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// collectors are Globalnet's metrics.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.size, m.allocated, m.refused}
}
