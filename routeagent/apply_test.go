package routeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

func testAgent(k nodenet.Kernel) *Agent {
	return &Agent{cfg: Config{NodeName: "n3", Log: slog.New(slog.DiscardHandler)}, applier: &nodenet.Applier{Kernel: k, Scope: Scope()}, metrics: NewMetrics(),
		clock: clocktesting.NewFakeClock(time.Unix(0, 0))}
}

// Failover on a fake node: the routes to the remote subnets are replaced
// in place (never deleted, so table 151 is never empty), the neighbour of
// the new gateway comes before the old one goes, and applying the same state
// again changes nothing.
func TestApplyFailoverMakesBeforeBreaking(t *testing.T) {
	k := &nodenettest.Kernel{}
	a := testAgent(k)
	if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil, false); err != nil {
		t.Fatal(err)
	}
	k.Log = nil
	if err := a.reconcile(facts(n3, "n2", "10.2.0.0/16"), nil, false); err != nil {
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
	if err := a.reconcile(facts(n3, "n2", "10.2.0.0/16"), nil, false); err != nil {
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
	if err := testAgent(k).reconcile(facts(n1, "n1", "10.2.0.0/16"), nil, false); err != nil {
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

const metricNames = "strait_routeagent_remote_subnets strait_routeagent_state_applied strait_routeagent_state_generation strait_routeagent_active_gateway_info strait_routeagent_applies_total strait_routeagent_apply_errors_total"

func wantMetrics(t *testing.T, a *Agent, applied, generation, applies, errs int, active string, remote int) {
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
		{"strait_routeagent_remote_subnets", "Remote subnets the applied state routes to the active gateway; 0 without one (they are unreachable then).", "gauge", remote},
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
	wantMetrics(t, a, 0, 0, 0, 0, "", 0)
	if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil, false); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 1, 1, 0, "n1", 1)
	if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil, false); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 1, 2, 0, "n1", 1)
	if err := a.reconcile(Facts{}, errors.New("node n3 not found"), false); err == nil {
		t.Fatal("a facts error was not returned")
	}
	wantMetrics(t, a, 0, 1, 3, 1, "n1", 1)
	if err := a.reconcile(facts(n3, "n2", "10.2.0.0/16"), nil, false); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 2, 4, 1, "n2", 1)
	if err := a.reconcile(facts(n3, "", "10.2.0.0/16"), nil, false); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, a, 1, 3, 5, 1, "", 0)
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
	m.recordSuccess(true, "n1", 1, 0)
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

// gatewayShaped is the gateway's usual slice on its node (gateway.gatewaySlice:
// the routeagent cannot import it): a rule per remote subnet, the masquerade
// exemption chain of each family, empty for IPv6, and a health-check
// address on the cable device.
func gatewayShaped(remote string) (nodenet.Scope, nodenet.State) {
	chain := func(f nodenet.Family) nodenet.Chain {
		return nodenet.Chain{Family: f, Table: "nat", Name: nodenet.GatewayNATChain, From: "POSTROUTING", Comment: nodenet.GatewayJumpComment}
	}
	sc := nodenet.Scope{AddrDevs: []string{CableInterface}, Priorities: []int{nodenet.GatewayPriority},
		Chains: []nodenet.Chain{chain(nodenet.IPv4), chain(nodenet.IPv6)}}
	d := netip.MustParsePrefix(remote)
	v4 := chain(nodenet.IPv4)
	v4.Rules = [][]string{{"-d", d.String(), "-m", "comment", "--comment", nodenet.NoMasqueradeComment, "-j", "ACCEPT"}}
	return sc, nodenet.State{
		Rules:  []nodenet.Rule{{Priority: nodenet.GatewayPriority, Dst: d, Table: nodenet.GatewayTable}},
		Addrs:  []nodenet.Addr{nodenet.HostAddr(CableInterface, netip.MustParseAddr("10.2.255.254"))},
		Chains: []nodenet.Chain{v4, chain(nodenet.IPv6)},
	}
}

// On a node without IPv6 (ipv6.disable=1), the route agent's usual states
// and the gateway's, which hold empty IPv6 chains, apply and converge:
// nothing of IPv6 is listed or written, and applying again changes nothing.
func TestApplyWithoutIPv6(t *testing.T) {
	k := &nodenettest.Kernel{Absent: []nodenet.Family{nodenet.IPv6}, Devices: []string{CableInterface}}
	gwScope, gwState := gatewayShaped("10.2.0.0/16")
	gw := &nodenet.Applier{Kernel: k, Scope: gwScope}
	for _, f := range []Facts{facts(n3, "", "10.2.0.0/16"), facts(n3, "n1", "10.2.0.0/16", "10.102.0.0/16"), facts(n1, "n1", "10.2.0.0/16"), facts(n3, "n1")} {
		a := testAgent(k)
		if err := a.reconcile(f, nil, false); err != nil {
			t.Fatalf("self %s, active %q: %v", f.Self.Name, f.Active, err)
		}
		if err := gw.Apply(gwState); err != nil {
			t.Fatalf("gateway: %v", err)
		}
		k.Log = nil
		if err := a.reconcile(f, nil, false); err != nil {
			t.Fatal(err)
		}
		if err := gw.Apply(gwState); err != nil {
			t.Fatal(err)
		}
		if len(k.Log) != 0 {
			t.Errorf("applying the same states again changed:\n%s", strings.Join(k.Log, "\n"))
		}
		want, _ := Compute(f)
		want.Chains = slices.DeleteFunc(want.Chains, func(c nodenet.Chain) bool { return c.Family == nodenet.IPv6 })
		got := k.State(Scope().Chains)
		got.Sysctls = want.Sysctls // the fake holds only what was set
		got.Addrs = slices.DeleteFunc(got.Addrs, func(a nodenet.Addr) bool { return a.Dev == CableInterface })
		got.Rules = slices.DeleteFunc(got.Rules, func(r nodenet.Rule) bool { return r.Priority == nodenet.GatewayPriority })
		if got.String() != want.String() {
			t.Errorf("kernel:\n%s\nwant:\n%s", got, want)
		}
	}
	if err := Cleanup(k); err != nil {
		t.Fatal(err)
	}
	if err := gw.Remove(); err != nil {
		t.Fatal(err)
	}
	s := k.State(append(Scope().Chains, gwScope.Chains...))
	s.Sysctls = nil // not owned: they stay
	if s.String() != "" {
		t.Errorf("after Cleanup and the gateway's Remove:\n%s", s)
	}
}

// On a node without IPv6, a dual-stack remote cluster's IPv6 subnets are
// left out of the state computed for the node's families, which applies;
// a state wanting them is refused before anything changes, naming them.
func TestDualStackRemoteWithoutIPv6(t *testing.T) {
	k := &nodenettest.Kernel{Absent: []nodenet.Family{nodenet.IPv6}}
	f := facts(n3, "n1", "10.2.0.0/16", "fd02::/48")
	a := testAgent(k)
	var missing *nodenet.MissingFamilyError
	if err := a.reconcile(f, nil, false); !errors.As(err, &missing) || !strings.Contains(err.Error(), "fd02::/48") {
		t.Errorf("a state wanting IPv6 on a node without: %v, want a MissingFamilyError naming fd02::/48", err)
	}
	if len(k.Log) != 0 {
		t.Errorf("a refused state changed:\n%s", strings.Join(k.Log, "\n"))
	}
	f.Families = k.Families()
	if err := a.reconcile(f, nil, false); err != nil {
		t.Fatal(err)
	}
	if s := k.State(Scope().Chains).String(); strings.Contains(s, "fd02") || !strings.Contains(s, "10.2.0.0/16 via 240.168.1.11") {
		t.Errorf("kernel:\n%s", s)
	}
}

// timerClock is a fake clock that reports each timer made, with its
// duration, once the timer exists (so the test steps the clock after it).
type timerClock struct {
	*clocktesting.FakeClock
	timers chan time.Duration
}

func (c *timerClock) NewTimer(d time.Duration) clock.Timer {
	t := c.FakeClock.NewTimer(d)
	c.timers <- d
	return t
}

// failing fails its first n packet-filter commits, as a held xtables lock
// would.
type failing struct {
	nodenet.Kernel
	n int
}

func (f *failing) Restore(fam nodenet.Family, s string) error {
	if f.n > 0 {
		f.n--
		return errors.New("another app is currently holding the xtables lock")
	}
	return f.Kernel.Restore(fam, s)
}

// recv returns the next value of c, failing the test if none comes within
// a generous bound (a hang, not a timing assertion).
func recv[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing happened: the agent is not retrying")
		panic("unreachable")
	}
}

// A failed apply is retried after a back-off that doubles, without waiting
// for an informer event or the resync; once it succeeds there is no retry.
func TestLoopRetriesWithBackoff(t *testing.T) {
	clk := &timerClock{FakeClock: clocktesting.NewFakeClock(time.Unix(0, 0)), timers: make(chan time.Duration, 10)}
	a := testAgent(&failing{Kernel: &nodenettest.Kernel{}, n: 2})
	a.clock = clk
	attempts := make(chan struct{}, 10)
	kick := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.loop(ctx, a.cfg.Log, kick, func() (Facts, error) {
			attempts <- struct{}{}
			return facts(n3, "n1", "10.2.0.0/16"), nil
		})
	}()
	recv(t, attempts) // fails
	for i, want := range []time.Duration{retryBase, 2 * retryBase} {
		if d := recv(t, clk.timers); d != want {
			t.Errorf("retry %d after %v, want %v", i+1, d, want)
		}
		clk.Step(want - 1)
		select {
		case <-attempts:
			t.Fatalf("retry %d before its back-off", i+1)
		default:
		}
		clk.Step(1)
		recv(t, attempts) // the second fails, the third succeeds
	}
	kick <- struct{}{}
	recv(t, attempts)
	// The loop ends after the attempt in hand: then it is done with its
	// timers and metrics.
	cancel()
	recv(t, done)
	if len(clk.timers) != 0 {
		t.Errorf("a retry was scheduled after a success: %v", <-clk.timers)
	}
	wantMetrics(t, a, 1, 1, 4, 2, "n1", 1)
}

// saves counts its packet-filter reads (iptables-save), the dear part of
// an Apply: a fork and exec per table and family.
type saves struct {
	nodenet.Kernel
	n int // reads of the packet filter (iptables-save)
	// routeReads counts reads of the route tables, which every apply
	// does, whether or not it reads the packet filter.
	routeReads int
}

func (s *saves) Save(f nodenet.Family, table string) (string, error) {
	s.n++
	return s.Kernel.Save(f, table)
}

func (s *saves) Routes(table int) ([]nodenet.Route, error) {
	s.routeReads++
	return s.Kernel.Routes(table)
}

// An informer event that leaves the desired state as it was applied (a
// Lease renewal every 2 s, a Node's status) does not read the kernel
// again; a change, the resync, and anything after a failed apply do. Every
// event used to run iptables-save and ip6tables-save for three tables,
// several times a second per node, a quarter of a loaded 2-core machine
// (docs/throughput.md). A change that leaves the chains as they are (a new
// active gateway: only the overlay routes move) does not read the packet
// filter either: in a sandbox failover that read held the non-gateway
// nodes' new routes back by about 0.3 s.
func TestReconcileSkipsUnchangedUntilResync(t *testing.T) {
	k := &saves{Kernel: &failing{Kernel: &nodenettest.Kernel{}}}
	a := testAgent(k)
	step := func(what string, f Facts, resync, wantApply, wantFilter bool) {
		t.Helper()
		before, routesBefore := k.n, k.routeReads
		err := a.reconcile(f, nil, resync)
		if failed := what == "failed apply"; (err != nil) != failed {
			t.Fatalf("%s: err %v, want failure %v", what, err, failed)
		}
		if applied := k.routeReads > routesBefore || k.n > before; applied != wantApply {
			t.Errorf("%s: applied %v, want %v", what, applied, wantApply)
		}
		if filter := k.n > before; filter != wantFilter {
			t.Errorf("%s: read the packet filter %v, want %v (%d iptables-save calls)", what, filter, wantFilter, k.n-before)
		}
	}
	step("first", facts(n3, "n1", "10.2.0.0/16"), false, true, true)
	step("same state, event", facts(n3, "n1", "10.2.0.0/16"), false, false, false)
	step("same state, resync", facts(n3, "n1", "10.2.0.0/16"), true, true, true)
	step("new active gateway", facts(n3, "n2", "10.2.0.0/16"), false, true, false)
	step("same state again", facts(n3, "n2", "10.2.0.0/16"), false, false, false)
	k.Kernel.(*failing).n = 1
	// Another remote subnet: new rules, whose commit fails once.
	step("failed apply", facts(n3, "n2", "10.2.0.0/16", "10.3.0.0/16"), false, true, true)
	step("same state after the failure", facts(n3, "n2", "10.2.0.0/16", "10.3.0.0/16"), false, true, true)
	step("applied, then an event", facts(n3, "n2", "10.2.0.0/16", "10.3.0.0/16"), false, false, false)
	wantMetrics(t, a, 1, 3, 8, 1, "n2", 2)
}

// The loop hands reconcile its reason: a kick applies only a change, the
// resync tick applies whatever. facts reports the kernel reads done before
// it was called, so each attempt shows what the previous one did.
func TestLoopAppliesUnchangedOnlyOnResync(t *testing.T) {
	k := &saves{Kernel: &nodenettest.Kernel{}}
	a := testAgent(k)
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	a.clock = clk
	readsBefore := make(chan int, 10)
	kick := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.loop(ctx, a.cfg.Log, kick, func() (Facts, error) {
			readsBefore <- k.n
			return facts(n3, "n1", "10.2.0.0/16"), nil
		})
	}()
	recv(t, readsBefore) // the first apply
	kick <- struct{}{}
	first := recv(t, readsBefore)
	if first == 0 {
		t.Fatal("the first reconcile did not apply")
	}
	// The kick's reconcile, with the state unchanged, read nothing; the
	// ticker (made before the first attempt) fires the resync.
	clk.Step(resync)
	if n := recv(t, readsBefore); n != first {
		t.Errorf("an event with the state unchanged read the kernel %d times", n-first)
	}
	kick <- struct{}{}
	if n := recv(t, readsBefore); n == first {
		t.Error("the resync did not apply the unchanged state")
	}
	cancel()
	recv(t, done)
}

// slowKernel is a fake kernel on which replacing a route takes step of the
// agent's fake clock.
type slowKernel struct {
	*nodenettest.Kernel
	clk  *clocktesting.FakeClock
	step time.Duration
}

func (k slowKernel) ReplaceRoute(r nodenet.Route) error {
	k.clk.Step(k.step)
	return k.Kernel.ReplaceRoute(r)
}

// The last apply's duration is the time the applies took by the agent's
// clock, and stays when a reconcile finds nothing to apply.
func TestMetricsApplyDuration(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	k := slowKernel{Kernel: &nodenettest.Kernel{}, clk: clk, step: 250 * time.Millisecond}
	a := testAgent(k)
	a.clock = clk
	routes := 0
	for range 2 {
		if err := a.reconcile(facts(n3, "n1", "10.2.0.0/16"), nil, false); err != nil {
			t.Fatal(err)
		}
		if routes == 0 {
			rs, _ := k.Routes(RemoteTable)
			routes = len(rs)
		}
		want := fmt.Sprintf("%g", (time.Duration(routes) * k.step).Seconds())
		if got := fmt.Sprintf("%g", testutil.ToFloat64(a.metrics.duration)); got != want {
			t.Errorf("last apply duration %s s, want %s s (%d routes replaced)", got, want, routes)
		}
	}
}
