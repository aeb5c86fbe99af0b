package lighthouse

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// scrapeTimeout bounds the cache reads of one scrape: the cache answers in
// microseconds once synced, and a scrape must not hang on one that is not.
const scrapeTimeout = 5 * time.Second

// exportConditions are the ServiceExport conditions the agent sets, one
// series per condition and status each.
var exportConditions = []string{
	string(mcsv1beta1.ServiceExportConditionValid),
	string(mcsv1beta1.ServiceExportConditionReady),
	string(mcsv1beta1.ServiceExportConditionConflict),
}

var conditionStatuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

var (
	exportsDesc = prometheus.NewDesc("strait_lighthouse_exports",
		"ServiceExports in the cluster by condition (Valid, Ready, Conflict) and its status (True, False, Unknown); an export without the condition yet is in none.",
		[]string{"condition", "status"}, nil)
	importsDesc = prometheus.NewDesc("strait_lighthouse_imports",
		"ServiceImports the agent keeps in the cluster's namespaces (one per service exported by some cluster of the clusterset).",
		nil, nil)
)

// Metrics are the Lighthouse agent's own Prometheus metrics, next to
// controller-runtime's (controller_runtime_*, workqueue_*) on the same
// endpoint. The export and import counts are read from the agent's cache
// at scrape time; the broker sync series are the leader's (the syncer runs
// on the leader only). Make one with NewMetrics; its methods are safe for
// concurrent use.
type Metrics struct {
	syncErrors prometheus.Counter
	lastSync   prometheus.Gauge

	reader    client.Reader
	namespace string
	now       func() time.Time
}

// NewMetrics makes the metrics; Collect reads exports and imports from
// reader, the agent's cache, leaving out the records in the component
// namespace ns.
func NewMetrics(reader client.Reader, ns string) *Metrics {
	return &Metrics{
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_lighthouse_broker_sync_errors_total",
			Help: "Failed attempts to sync one export record between the cluster and the broker (each is retried with back-off)."}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_lighthouse_broker_last_sync_timestamp_seconds",
			Help: "Unix time of the last successful sync of an export record with the broker, or of the first complete list of both sides; 0 before."}),
		reader:    reader,
		namespace: ns,
		now:       time.Now,
	}
}

// recordSync records one attempt of the broker syncer (syncer.Config.OnSync).
func (m *Metrics) recordSync(err error) {
	if err != nil {
		m.syncErrors.Inc()
		return
	}
	m.lastSync.Set(float64(m.now().UnixNano()) / 1e9)
}

var _ prometheus.Collector = (*Metrics)(nil)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- exportsDesc
	ch <- importsDesc
	m.syncErrors.Describe(ch)
	m.lastSync.Describe(ch)
}

// Collect implements prometheus.Collector. A cache that cannot be read
// within scrapeTimeout makes the export and import series invalid, which
// fails the scrape (the up series says so) rather than showing zeros.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.syncErrors.Collect(ch)
	m.lastSync.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()

	var exports mcsv1beta1.ServiceExportList
	if err := m.reader.List(ctx, &exports); err != nil {
		ch <- prometheus.NewInvalidMetric(exportsDesc, err)
	} else {
		counts := countExports(exports.Items)
		for _, c := range exportConditions {
			for _, s := range conditionStatuses {
				ch <- prometheus.MustNewConstMetric(exportsDesc, prometheus.GaugeValue, float64(counts[c][s]), c, string(s))
			}
		}
	}

	var imports mcsv1beta1.ServiceImportList
	if err := m.reader.List(ctx, &imports); err != nil {
		ch <- prometheus.NewInvalidMetric(importsDesc, err)
		return
	}
	n := 0
	for i := range imports.Items {
		si := &imports.Items[i]
		if si.Namespace != m.namespace && !isRecord(si) {
			n++
		}
	}
	ch <- prometheus.MustNewConstMetric(importsDesc, prometheus.GaugeValue, float64(n))
}

// countExports counts exports by condition type and status.
func countExports(exports []mcsv1beta1.ServiceExport) map[string]map[metav1.ConditionStatus]int {
	out := map[string]map[metav1.ConditionStatus]int{}
	for _, c := range exportConditions {
		out[c] = map[metav1.ConditionStatus]int{}
	}
	for _, se := range exports {
		for _, c := range se.Status.Conditions {
			if byStatus, ok := out[c.Type]; ok {
				byStatus[c.Status]++
			}
		}
	}
	return out
}
