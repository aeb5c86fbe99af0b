package routeagent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

func testAgent(k nodenet.Kernel) *Agent {
	return &Agent{cfg: Config{NodeName: "n3", Log: slog.New(slog.DiscardHandler)}, applier: &nodenet.Applier{Kernel: k, Scope: Scope()}, metrics: NewMetrics()}
}

// Failover on a fake node: the routes to the remote subnets are replaced
// in place (never deleted, so table 151 is never empty), the neighbour of
// the new gateway comes before the old one goes, and applying the same state
// again changes nothing.
func TestApplyFailoverMakesBeforeBreaking(t *testing.T) {
	k := &nodenettest.Kernel{}
	a := testAgent(k)
	if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	k.Log = nil
	if err := a.reconcile(facts(n3, "n2", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	log := strings.Join(k.Log, "\n")
	if strings.Contains(log, "route del") {
		t.Errorf("failover deleted a route:\n%s", log)
	}
	if !strings.Contains(log, "route replace 10.2.0.0/16 via 240.168.1.12") {
		t.Errorf("failover did not re-point the route:\n%s", log)
	}
	if i, j := strings.Index(log, "neigh replace 240.168.1.12"), strings.Index(log, "neigh del 240.168.1.11"); i < 0 || j < 0 || i > j {
		t.Errorf("new neighbour not added before the old one went:\n%s", log)
	}
	want, _ := Compute(facts(n3, "n2", "10.2.0.0/16"))
	k.Log = nil
	if err := a.reconcile(facts(n3, "n2", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	if len(k.Log) != 0 {
		t.Errorf("applying the same state again changed:\n%s", strings.Join(k.Log, "\n"))
	}
	got := k.State(Scope().Chains)
	got.Sysctls = want.Sysctls // the fake holds only what was set
	if got.String() != want.String() {
		t.Errorf("kernel:\n%s\nwant:\n%s", got, want)
	}
}

// Cleanup removes what the agent made and nothing of the gateway's on the
// same node.
func TestCleanupRemovesExactlyOurs(t *testing.T) {
	k := &nodenettest.Kernel{Devices: []string{CableInterface}}
	gw := nodenet.Rule{Priority: nodenet.GatewayPriority, Dst: netip.MustParsePrefix("10.2.0.0/16"), Table: nodenet.GatewayTable}
	if err := k.AddRule(gw); err != nil {
		t.Fatal(err)
	}
	if err := k.AddFilterRule(nodenet.IPv4, "nat", "POSTROUTING", "-j MASQUERADE"); err != nil {
		t.Fatal(err)
	}
	if err := testAgent(k).reconcile(facts(n1, "n1", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(k); err != nil {
		t.Fatal(err)
	}
	s := k.State(Scope().Chains)
	s.Sysctls = nil
	if want := "# ip rule\n150:\tfrom all to 10.2.0.0/16 lookup 150\n"; s.String() != want {
		t.Errorf("after Cleanup:\n%s\nwant:\n%s", s, want)
	}
	if nat, _ := k.Save(nodenet.IPv4, "nat"); !strings.Contains(nat, "-A POSTROUTING -j MASQUERADE\n") || strings.Contains(nat, "STRAIT") {
		t.Errorf("nat table after Cleanup:\n%s", nat)
	}
}

const metricNames = "strait_routeagent_state_applied strait_routeagent_state_generation strait_routeagent_active_gateway_info strait_routeagent_applies_total strait_routeagent_apply_errors_total"

func wantMetrics(t *testing.T, a *Agent, applied, generation, applies, errs int, active string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# HELP strait_routeagent_active_gateway_info 1 for the active gateway node that the applied state routes to.\n# TYPE strait_routeagent_active_gateway_info gauge\n")
	if active != "" {
		b.WriteString(`strait_routeagent_active_gateway_info{node="` + active + "\"} 1\n")
	}
	for _, m := range []struct {
		name, help, typ string
		v               int
	}{
		{"strait_routeagent_apply_errors_total", "Attempts that failed (facts, computing or applying).", "counter", errs},
		{"strait_routeagent_applies_total", "Attempts to make the kernel match the desired state.", "counter", applies},
		{"strait_routeagent_state_applied", "1 once the current desired state is in the kernel; 0 before the first apply and while an apply fails.", "gauge", applied},
		{"strait_routeagent_state_generation", "Increments each time a changed desired state has been applied.", "gauge", generation},
	} {
		b.WriteString("# HELP " + m.name + " " + m.help + "\n# TYPE " + m.name + " " + m.typ + "\n" + m.name + " " + string(rune('0'+m.v)) + "\n")
	}
	if err := testutil.GatherAndCompare(a.metrics.reg, strings.NewReader(b.String()), strings.Fields(metricNames)...); err != nil {
		t.Error(err)
	}
}

// The metrics say when the desired state is in the kernel: not before the
// first apply, not while one fails; the generation moves only on a change.
func TestMetricsFollowApplies(t *testing.T) {
	k := &nodenettest.Kernel{}
	a := testAgent(k)
	wantMetrics(t, a, 0, 0, 0, 0, "")
	if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 1, 1, 0, "n1")
	if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 1, 2, 0, "n1")
	if err := a.reconcile(Facts{}, errors.New("node n3 not found")); err == nil {
		t.Fatal("a facts error was not returned")
	}
	wantMetrics(t, a, 0, 1, 3, 1, "n1")
	if err := a.reconcile(facts(n3, "n2", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 2, 4, 1, "n2")
	if err := a.reconcile(facts(n3, "", "10.2.0.0/16"), nil); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 3, 5, 1, "")
}

// The metrics are served over HTTP for tests and Prometheus to wait on.
func TestMetricsServe(t *testing.T) {
	m := NewMetrics()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx, ln) }()
	m.recordSuccess(true, "n1")
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"strait_routeagent_state_applied 1\n", "strait_routeagent_state_generation 1\n", `strait_routeagent_active_gateway_info{node="n1"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after the context ended: %v", err)
	}
}
