package coredns

import (
	"strconv"

	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The plugin's metrics, next to CoreDNS's own (coredns_dns_*), served by the
// prometheus plugin. As CoreDNS's plugins do, they are registered once per
// process in the default registry, which the prometheus plugin serves, and
// carry the server label (metrics.WithServer) where a request is counted.
var (
	// requestCount counts the questions under each zone by what the name
	// is: service, port, endpoint, version, empty (a name without records
	// of its own) or none (no such name); and by query type.
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Questions under the clusterset zones, by server, zone, kind of name and query type (A, AAAA, SRV, TXT, SOA, ANY, other).",
	}, []string{"server", "zone", "kind", "type"})

	// responseCount counts the responses the plugin made itself (not
	// those it passed to the next plugin), by rcode.
	responseCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "responses_total",
		Help:      "Responses the plugin made itself, by server, zone and rcode (NOERROR includes NODATA; SERVFAIL before the plugin has synced).",
	}, []string{"server", "zone", "rcode"})

	// importAnswerCount counts the NOERROR responses with records: the
	// answers served from the imports.
	importAnswerCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "import_answers_total",
		Help:      "Responses with records made from the ServiceImports and EndpointSlices, by server and zone.",
	}, []string{"server", "zone"})

	// syncedGauge is 1 once the store has synced (answers are served), 0
	// before (every answer is SERVFAIL).
	syncedGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "synced",
		Help:      "1 when the plugin's view of ServiceImports, EndpointSlices and Gateways has synced, 0 before.",
	})

	// importsGauge is how many ServiceImports the store holds.
	importsGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "imports",
		Help:      "ServiceImports the plugin answers for.",
	})

	// watchErrors counts the requests of the plugin's view (lists and
	// watches) that failed, by resource (countFailures): the apiserver
	// unreachable or refusing connections, access denied, 5xx. While they
	// fail the answers are from the last view, which may be stale. Expired
	// resource versions (410), a routine relist, are not counted.
	watchErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "watch_errors_total",
		Help:      "Requests of the lists and watches of ServiceImports, EndpointSlices or Gateways that failed, by resource (retried with back-off); the answers meanwhile come from the last view.",
	}, []string{"type"})
)

// monitoredTypes are the query types counted by name; the others are
// "other", so that a client cannot grow the series without bound.
var monitoredTypes = map[uint16]bool{dns.TypeA: true, dns.TypeAAAA: true, dns.TypeSRV: true, dns.TypeTXT: true, dns.TypeSOA: true, dns.TypeANY: true}

// qtypeName is the type label of a query type.
func qtypeName(t uint16) string {
	if monitoredTypes[t] {
		return dns.TypeToString[t]
	}
	return "other"
}

// rcodeName is the rcode label: the rcode's name, or its number.
func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return strconv.Itoa(rcode)
}

// DescribeMetrics sends the description of every metric of the plugin,
// series or not yet (as a prometheus.Collector's Describe): for tools that
// check the names dashboards and alerts use.
func DescribeMetrics(ch chan<- *prometheus.Desc) {
	for _, c := range []prometheus.Collector{requestCount, responseCount, importAnswerCount, syncedGauge, importsGauge, watchErrors} {
		c.Describe(ch)
	}
}
