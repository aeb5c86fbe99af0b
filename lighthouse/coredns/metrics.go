package coredns

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The plugin's metrics, next to CoreDNS's own (coredns_dns_*), served by the
// prometheus plugin.
var (
	// requestCount counts the questions under each zone by what the name
	// is: service, port, endpoint, version, empty (a name without records
	// of its own) or none (no such name).
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Questions under the clusterset zones, by server, zone and kind of name.",
	}, []string{"server", "zone", "kind"})

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
)
