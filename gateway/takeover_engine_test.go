package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/testutil"
)

// member is a member cluster of the two-cluster fixture: its own apiserver,
// enrolled at the broker, with gateway nodes each on its own loopback
// address (InternalIP, NAT discovery and health-check address).
type member struct {
	id  string
	env *kubetest.Env
	c   client.Client
	ips map[string]string
}

// newMember starts cluster id's apiserver, stores its broker credential and
// makes its gateway nodes (node name → loopback address; the node's pod
// CIDR is the address's /24, so that its health-check address, the CIDR's
// first, is the address too).
func newMember(t *testing.T, info *broker.Info, id, pods, svcs string, ips map[string]string) *member {
	t.Helper()
	ctx := context.Background()
	token, err := broker.Enroll(ctx, info, broker.Member{ClusterID: id, ClusterUID: id,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix(pods)}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(svcs)}})
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.New(t, kubetest.Options{})
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, broker.CredentialSecret(v1.ComponentNamespace, info, token)); err != nil {
		t.Fatal(err)
	}
	for name, ip := range ips {
		cidr := netip.PrefixFrom(netip.MustParseAddr(ip), 24).Masked()
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.GatewayNodeLabel: "true"}},
			Spec: corev1.NodeSpec{PodCIDR: cidr.String(), PodCIDRs: []string{cidr.String()}}}
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
		if err := c.Status().Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	return &member{id: id, env: env, c: c, ips: ips}
}

// start runs node's engine of m with a recorder for a data plane, on a
// connection to the apiserver that crash cuts, as kill -9 would.
// Its data plane calls go to events.
func (m *member) start(t *testing.T, k *kicker, node string, cable cableConfig, healthPort int, pods, svcs string, logs *testutil.SyncBuffer, events *eventLog) (r *running, crash func()) {
	t.Helper()
	var dead atomic.Bool
	rc := rest.CopyConfig(m.env.Config)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper { return crashTransport{next: next, dead: &dead} })
	r = &running{rec: &recorder{k: k, node: node, events: events}, metrics: gateway.NewMetrics(), done: make(chan error, 1)}
	ip := netip.MustParseAddr(m.ips[node])
	e, err := gateway.New(rc, gateway.Config{
		ClusterID: m.id, Namespace: v1.ComponentNamespace, NodeName: node,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix(pods)}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(svcs)},
		CableDriver: cable.driver, Cable: cable.settings,
		NATDiscoveryPort: 4490, NATDiscoveryBind: ip, HealthCheckPort: healthPort, HealthCheckBind: ip,
		HealthCheckInterval: 200 * time.Millisecond, BrokerSecret: broker.SecretName, Dataplane: r.rec, Metrics: r.metrics,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	go func() { r.done <- e.Run(ctx); k.poke() }()
	t.Cleanup(func() { r.cancel(); <-r.done })
	return r, func() {
		dead.Store(true)
		r.cancel()
		<-r.done
		r.done <- nil // for the cleanup
	}
}

// cableConfig is a cable driver and its settings.
type cableConfig struct {
	driver   v1.CableDriver
	settings cabledriver.Settings
}

// gateway is node's Gateway object in m.
func (m *member) gateway(node string) v1.Gateway {
	var gw v1.Gateway
	_ = m.c.Get(context.Background(), client.ObjectKey{Namespace: v1.ComponentNamespace, Name: node}, &gw)
	return gw
}

// connected reports whether node's Gateway in m says active with one
// connection, to endpoint, connected (its health probes answered).
func (m *member) connected(node, endpoint string) bool {
	gw := m.gateway(node)
	c := gw.Status.Connections
	return gw.Status.HAStatus == v1.HAStatusActive && len(c) == 1 && c[0].Endpoint == endpoint && c[0].Status == v1.Connected
}

// TestEngineFailsOverWithoutTheBroker: clusters c1 (gateway a1) and c2
// (gateways b1, active, and b2, standby) are connected through a real
// broker. The broker's apiserver stops; then b1 crashes (kill -9: no
// release, no status). b2 takes c2's Lease and announces itself to a1 over
// the NAT discovery port; a1 moves its cable to b2 and its health probes
// through the cable are answered again, all while the broker is away.
// When the broker comes back, its Endpoints (b1's old one among them)
// change nothing: b2's epoch is the highest. Real UDP throughout (NAT
// discovery, announcements, heartbeats, health probes) on loopback
// addresses; the data planes are recorders. With WireGuard the
// announcement is authenticated by the cable keys; with VXLAN it is
// accepted from the candidate's published address.
func TestEngineFailsOverWithoutTheBroker(t *testing.T) {
	for _, cable := range []cableConfig{
		{v1.CableDriverWireGuard, cabledriver.Settings{Port: 4500}},
		{v1.CableDriverVXLAN, cabledriver.Settings{Port: 4800, VNI: 100}},
	} {
		t.Run(string(cable.driver), func(t *testing.T) { failOverWithoutTheBroker(t, cable) })
	}
}

func failOverWithoutTheBroker(t *testing.T, cable cableConfig) {
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatal(err)
	}
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 31, 1)})
	if err != nil {
		t.Fatal(err)
	}
	healthPort := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	c1 := newMember(t, info, "c1", "10.1.0.0/16", "10.101.0.0/16", map[string]string{"a1": "127.0.31.1"})
	c2 := newMember(t, info, "c2", "10.2.0.0/16", "10.102.0.0/16", map[string]string{"b1": "127.0.32.1", "b2": "127.0.33.1"})
	k := newKicker()
	for _, m := range []*member{c1, c2} {
		k.watch(t, m.env.Config, v1.ComponentNamespace, v1.SchemeGroupVersion.WithResource("gateways"), nil)
		k.watch(t, m.env.Config, v1.ComponentNamespace, v1.SchemeGroupVersion.WithResource("endpoints"), nil)
		k.watch(t, m.env.Config, v1.ComponentNamespace, coordinationv1.SchemeGroupVersion.WithResource("leases"), nil)
	}
	logs := map[string]*testutil.SyncBuffer{"a1": {}, "b1": {}, "b2": {}}
	events := &eventLog{} // a1's data plane calls
	dump := func() string {
		var b strings.Builder
		for _, n := range []string{"a1", "b1", "b2"} {
			fmt.Fprintf(&b, "\n--- %s's log:\n%s", n, logs[n])
		}
		return b.String()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(dump())
		}
	})
	a1, _ := c1.start(t, k, "a1", cable, healthPort, "10.1.0.0/16", "10.101.0.0/16", logs["a1"], events)
	b1, crashB1 := c2.start(t, k, "b1", cable, healthPort, "10.2.0.0/16", "10.102.0.0/16", logs["b1"], nil)
	k.waitFor(t, "a1 and b1 active", func() bool {
		return c1.gateway("a1").Status.HAStatus == v1.HAStatusActive && c2.gateway("b1").Status.HAStatus == v1.HAStatusActive
	})
	b2, _ := c2.start(t, k, "b2", cable, healthPort, "10.2.0.0/16", "10.102.0.0/16", logs["b2"], nil)
	k.waitFor(t, "b2 passive", func() bool { return c2.gateway("b2").Status.HAStatus == v1.HAStatusPassive })
	// Through the broker: each active gateway has the other as its peer
	// and its probes answered, and c1 knows b2 as c2's candidate.
	k.waitFor(t, "a1 and b1 connected to each other, b2 a candidate at c1", func() bool {
		var ep v1.Endpoint
		if err := c1.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "c2.b1"}, &ep); err != nil ||
			len(ep.Spec.Candidates) != 1 || ep.Spec.Candidates[0].Hostname != "b2" {
			return false
		}
		return slices.Equal(a1.rec.peers(), []string{"c2.b1"}) && slices.Equal(b1.rec.peers(), []string{"c1.a1"}) &&
			c1.connected("a1", "c2.b1") && c2.connected("b1", "c1.a1")
	})

	brokerEnv.StopAPIServer()
	crashB1()
	k.waitFor(t, "a1's cable moved to b2 and connected, with the broker away", func() bool {
		return slices.Equal(a1.rec.peers(), []string{"c2.b2"}) && c1.connected("a1", "c2.b2")
	}, func() string {
		return fmt.Sprintf("a1's peers %v, connections %+v, b2's role %s", a1.rec.peers(), c1.gateway("a1").Status.Connections, c2.gateway("b2").Status.HAStatus)
	})
	if !slices.Equal(b2.rec.peers(), []string{"c1.a1"}) {
		t.Errorf("b2's peers %v, want [c1.a1]", b2.rec.peers())
	}
	if !strings.Contains(logs["b2"].String(), "takeover acknowledged") {
		t.Errorf("b2's log does not say a1 acknowledged its takeover")
	}
	// The broker was away all along: nothing could come through it.
	switched := events.len()
	if err := brokerEnv.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The broker is back: c1 gets b2's own Endpoint and loses b1's old
	// one; a1 stays with b2 throughout (no flapping back to b1, whose
	// Endpoint the broker still had).
	k.waitFor(t, "b2's own Endpoint in c1 from the broker", func() bool {
		var ep v1.Endpoint
		return c1.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "c2.b2"}, &ep) == nil
	})
	k.waitFor(t, "b1's old Endpoint gone from c1", func() bool {
		var ep v1.Endpoint
		err := c1.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "c2.b1"}, &ep)
		return err != nil && client.IgnoreNotFound(err) == nil
	})
	if got := a1.rec.peers(); !slices.Equal(got, []string{"c2.b2"}) || !c1.connected("a1", "c2.b2") {
		t.Errorf("after the broker came back a1's peers are %v, connections %+v; want c2.b2 connected", got, c1.gateway("a1").Status.Connections)
	}
	for _, ev := range events.since(switched) {
		if ev != "a1 set c2.b2" {
			t.Errorf("a1's data plane after the switch to b2: %q, want only sets of c2.b2 (all: %q)", ev, events.since(switched))
			break
		}
	}
	logTakeovers(t, "b2", logs["b2"])
}
