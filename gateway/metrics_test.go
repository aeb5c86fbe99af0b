package gateway

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/gateway/cable"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	m.SetActive(true)
	m.SetConnections([]v1.Connection{
		{ClusterID: "c2", Endpoint: "c2-gw", Status: v1.Connected, LatencyRTT: &v1.LatencyRTT{
			Last: metav1.Duration{Duration: 2 * time.Millisecond}, Min: metav1.Duration{Duration: time.Millisecond},
			Average: metav1.Duration{Duration: 2 * time.Millisecond}, Max: metav1.Duration{Duration: 3 * time.Millisecond}}},
		{ClusterID: "c3", Endpoint: "c3-gw", Status: v1.ConnectionError},
	}, map[string]cable.Traffic{"c2-gw": {RxBytes: 100, TxBytes: 200}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"strait_gateway_active 1",
		`strait_connection_status{cluster_id="c2",endpoint="c2-gw",status="connected"} 1`,
		`strait_connection_status{cluster_id="c2",endpoint="c2-gw",status="error"} 0`,
		`strait_connection_status{cluster_id="c3",endpoint="c3-gw",status="error"} 1`,
		`strait_connection_rtt_seconds{cluster_id="c2",endpoint="c2-gw",stat="max"} 0.003`,
		`strait_connection_rx_bytes{cluster_id="c2",endpoint="c2-gw"} 100`,
		`strait_connection_tx_bytes{cluster_id="c2",endpoint="c2-gw"} 200`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A connection that goes away leaves no series behind.
	m.SetConnections(nil, nil)
	resp, _ = srv.Client().Get(srv.URL)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "c3-gw") {
		t.Errorf("series of a removed connection remain:\n%s", body)
	}
}
