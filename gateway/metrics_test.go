package gateway

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/gateway/cable"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// fakeTraffic is a cable's per-peer counters that a test moves on.
type fakeTraffic struct {
	mu    sync.Mutex
	calls int
	by    map[string]cable.Traffic
}

func (f *fakeTraffic) source() map[string]cable.Traffic {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := map[string]cable.Traffic{}
	for k, v := range f.by {
		out[k] = v
	}
	return out
}

func (f *fakeTraffic) set(ep string, rx, tx int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.by[ep] = cable.Traffic{RxBytes: rx, TxBytes: tx}
}

func ms(n int) metav1.Duration { return metav1.Duration{Duration: time.Duration(n) * time.Millisecond} }

var testConns = []v1.Connection{
	{ClusterID: "c2", Endpoint: "c2-gw", Status: v1.Connected,
		LatencyRTT: &v1.LatencyRTT{Last: ms(2), Min: ms(1), Average: ms(2), Max: ms(3)}},
	{ClusterID: "c3", Endpoint: "c3-gw", Status: v1.ConnectionError},
}

const allNames = "strait_gateway_active strait_connection_status strait_connection_rtt_seconds strait_connection_rx_bytes_total strait_connection_tx_bytes_total"

func compare(t *testing.T, m *Metrics, want string) {
	t.Helper()
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), strings.Fields(allNames)...); err != nil {
		t.Error(err)
	}
}

const header = `
# HELP strait_gateway_active 1 when this gateway is its cluster's active gateway, else 0.
# TYPE strait_gateway_active gauge
strait_gateway_active 1
# HELP strait_connection_status 1 for the current status of each connection to a remote gateway, 0 for the other statuses.
# TYPE strait_connection_status gauge
strait_connection_status{cluster_id="c2",endpoint="c2-gw",status="connected"} 1
strait_connection_status{cluster_id="c2",endpoint="c2-gw",status="connecting"} 0
strait_connection_status{cluster_id="c2",endpoint="c2-gw",status="error"} 0
strait_connection_status{cluster_id="c3",endpoint="c3-gw",status="connected"} 0
strait_connection_status{cluster_id="c3",endpoint="c3-gw",status="connecting"} 0
strait_connection_status{cluster_id="c3",endpoint="c3-gw",status="error"} 1
# HELP strait_connection_rtt_seconds Health-check round-trip time through the cable: last, min, avg and max.
# TYPE strait_connection_rtt_seconds gauge
strait_connection_rtt_seconds{cluster_id="c2",endpoint="c2-gw",stat="avg"} 0.002
strait_connection_rtt_seconds{cluster_id="c2",endpoint="c2-gw",stat="last"} 0.002
strait_connection_rtt_seconds{cluster_id="c2",endpoint="c2-gw",stat="max"} 0.003
strait_connection_rtt_seconds{cluster_id="c2",endpoint="c2-gw",stat="min"} 0.001
`

func bytesText(rx, tx string) string {
	return `
# HELP strait_connection_rx_bytes_total Bytes received from a remote gateway through the cable (drivers that count per peer). The driver's counter: it restarts from 0 when the peer is set up again.
# TYPE strait_connection_rx_bytes_total counter
strait_connection_rx_bytes_total{cluster_id="c2",endpoint="c2-gw"} ` + rx + `
# HELP strait_connection_tx_bytes_total Bytes sent to a remote gateway through the cable (drivers that count per peer). The driver's counter: it restarts from 0 when the peer is set up again.
# TYPE strait_connection_tx_bytes_total counter
strait_connection_tx_bytes_total{cluster_id="c2",endpoint="c2-gw"} ` + tx + `
`
}

// The byte counters are counters, read from the traffic source when
// Prometheus scrapes, not copies refreshed by the engine.
func TestMetricsCountersReadAtScrape(t *testing.T) {
	m := NewMetrics()
	m.SetActive(true)
	// Traffic for an endpoint with no connection (c9-gw) is not shown: it
	// has no cluster to label it with.
	traffic := &fakeTraffic{by: map[string]cable.Traffic{"c2-gw": {RxBytes: 100, TxBytes: 200}, "c9-gw": {RxBytes: 1, TxBytes: 1}}}
	m.SetTrafficSource(traffic.source)
	m.SetConnections(testConns)
	compare(t, m, header+bytesText("100", "200"))

	// The cable moves on; the engine calls nothing; the next scrape sees it.
	traffic.set("c2-gw", 1500, 2600)
	compare(t, m, header+bytesText("1500", "2600"))
	if traffic.calls == 0 {
		t.Error("the traffic source was never called")
	}

	if problems, err := testutil.GatherAndLint(m.reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	if problems, err := testutil.CollectAndLint((*connCollector)(m)); err != nil || len(problems) > 0 {
		t.Errorf("lint of the connection collector: %v %+v", err, problems)
	}
}

func TestMetricsConnectionsGo(t *testing.T) {
	m := NewMetrics()
	m.SetActive(true)
	traffic := &fakeTraffic{by: map[string]cable.Traffic{"c2-gw": {RxBytes: 100, TxBytes: 200}}}
	m.SetTrafficSource(traffic.source)
	conns := append([]v1.Connection(nil), testConns...)
	m.SetConnections(conns)
	// SetConnections copies: the caller may reuse its slice.
	conns[0].Endpoint = "changed"
	compare(t, m, header+bytesText("100", "200"))

	// A connection that goes leaves no series behind.
	m.SetConnections(nil)
	m.SetActive(false)
	compare(t, m, `
# HELP strait_gateway_active 1 when this gateway is its cluster's active gateway, else 0.
# TYPE strait_gateway_active gauge
strait_gateway_active 0
`)
	// Without a source there are no byte counters, and duplicate entries
	// for one endpoint do not break the scrape.
	m.SetTrafficSource(nil)
	m.SetConnections([]v1.Connection{testConns[1], testConns[1]})
	if got := testutil.CollectAndCount((*connCollector)(m)); got != 3 {
		t.Errorf("%d series, want 3 (the statuses of c3-gw)", got)
	}
}

func TestMetricsHandler(t *testing.T) {
	m := NewMetrics()
	m.SetActive(true)
	m.SetConnections(testConns)
	m.SetTrafficSource((&fakeTraffic{by: map[string]cable.Traffic{"c2-gw": {RxBytes: 7, TxBytes: 9}}}).source)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"strait_gateway_active 1",
		`strait_connection_rx_bytes_total{cluster_id="c2",endpoint="c2-gw"} 7`,
		`strait_connection_tx_bytes_total{cluster_id="c2",endpoint="c2-gw"} 9`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
}

func TestMetricsServe(t *testing.T) {
	m := NewMetrics()
	if err := m.Serve(context.Background(), "256.0.0.1:1"); err == nil {
		t.Error("serving on an invalid address succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, "127.0.0.1:0") }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after its context ended: %v", err)
	}
}

// The engine sets connections while Prometheus scrapes.
func TestMetricsConcurrent(t *testing.T) {
	m := NewMetrics()
	traffic := &fakeTraffic{by: map[string]cable.Traffic{"c2-gw": {RxBytes: 1, TxBytes: 1}}}
	m.SetTrafficSource(traffic.source)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			conns := append([]v1.Connection(nil), testConns...)
			m.SetConnections(conns)
			conns[0].Status = v1.ConnectionError // the engine reuses its slice
			m.SetActive(i%2 == 0)
			traffic.set("c2-gw", int64(i), int64(i))
		}
	}()
	for range 50 {
		if _, err := m.reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}
