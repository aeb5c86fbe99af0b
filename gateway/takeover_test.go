package gateway

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/announce"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// sent is what a takeover's announce sent.
type sent struct {
	b  []byte
	to netip.AddrPort
}

func collect(out *[]sent) func([]byte, netip.AddrPort) error {
	return func(b []byte, to netip.AddrPort) error {
		*out = append(*out, sent{b: b, to: to})
		return nil
	}
}

// takeoverPair is c1's active gateway a1 and c2's standby b2, which has
// just taken c2's Lease in epoch 4 from b1, with the Endpoints each sees
// (through the broker, before the takeover), for driver.
type takeoverPair struct {
	a, b       *takeover
	epsA, epsB []v1.Endpoint
	keyB1      wgtypes.Key
}

func newTakeoverPair(t *testing.T, driver v1.CableDriver) *takeoverPair {
	t.Helper()
	desc, err := cabledriver.Get(driver)
	if err != nil {
		t.Fatal(err)
	}
	a1, b1, b2 := newKey(t), newKey(t), newKey(t)
	wg := func(k wgtypes.Key) *v1.WireGuardConfig {
		if desc.Key == nil {
			return nil
		}
		return &v1.WireGuardConfig{PublicKey: k.PublicKey().String(), Port: 4500}
	}
	vx := func() *v1.VXLANConfig {
		if desc.Key != nil {
			return nil
		}
		return &v1.VXLANConfig{}
	}
	spec := func(s *v1.EndpointSpec, host, private string, k wgtypes.Key) {
		s.Hostname, s.PrivateIPs, s.PublicIPs, s.CableDriver, s.WireGuard, s.VXLAN = host, v1.DualStackIPs{v1.IP(private)}, nil, driver, wg(k), vx()
	}
	c2 := remote("c2.b1", "c2", 3, func(s *v1.EndpointSpec) {
		spec(s, "b1", "192.168.2.1", b1)
		s.Candidates = []v1.GatewayCandidate{{Hostname: "b2", PrivateIPs: v1.DualStackIPs{"192.168.2.2"}, WireGuard: wg(b2), VXLAN: vx(),
			HealthCheckIPs: v1.DualStackIPs{"10.2.1.1"}}}
	})
	c1 := remote("c1.a1", "c1", 1, func(s *v1.EndpointSpec) {
		spec(s, "a1", "192.168.1.1", a1)
		s.Subnets = []v1.CIDR{"10.1.0.0/16"}
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &takeoverPair{epsA: []v1.Endpoint{c1, c2}, epsB: []v1.Endpoint{c1, c2}, keyB1: b1}
	if p.a, err = newTakeover("c1", "a1", 1, desc, cabledriver.Settings{PrivateKey: a1.String()}, log); err != nil {
		t.Fatal(err)
	}
	if p.b, err = newTakeover("c2", "b2", 4, desc, cabledriver.Settings{PrivateKey: b2.String()}, log); err != nil {
		t.Fatal(err)
	}
	return p
}

// chosen names the Endpoint that stands for c2 at c1, and its epoch.
func (p *takeoverPair) chosen() string {
	remotes, _ := activeEndpoints(p.a.endpoints(p.epsA), "c1")
	for _, r := range remotes {
		if r.Spec.ClusterID == "c2" {
			return r.Name + " " + r.Annotations[v1.GatewayEpochAnnotation]
		}
	}
	return "none"
}

// The new active gateway b2 of c2 announces itself to c1's gateway a1 on
// a1's NAT discovery address; a1 moves c2 to b2 at once and acknowledges;
// b2 stops announcing to c1. A repeat is acknowledged again without a
// switch, a forgery and a stale epoch are refused, and when the broker
// brings c2's Endpoints the highest epoch decides: b2's own Endpoint
// replaces the announced one, the old one at the broker changes nothing.
func TestTakeoverAnnouncedAndAcknowledged(t *testing.T) {
	p := newTakeoverPair(t, v1.CableDriverWireGuard)
	var out []sent
	if !p.b.announce(p.b.endpoints(p.epsB), collect(&out)) {
		t.Fatal("announce: nothing to announce")
	}
	if len(out) != 1 || out[0].to != netip.MustParseAddrPort("192.168.1.1:4490") {
		t.Fatalf("announced to %v; want c1's gateway at 192.168.1.1:4490", out)
	}
	// A public address is announced to as well, once when it is the
	// private one.
	for pub, want := range map[v1.IP]int{"198.18.1.1": 2, "192.168.1.1": 1} {
		eps := slices.Clone(p.epsB)
		eps[0].Spec.PublicIPs = v1.DualStackIPs{pub}
		var more []sent
		p.b.announce(eps, collect(&more))
		if len(more) != want {
			t.Errorf("with the public address %s: %d datagrams, want %d", pub, len(more), want)
		}
	}
	from := netip.MustParseAddrPort("192.168.2.2:4490")
	if got := p.chosen(); got != "c2.b1 3" {
		t.Fatalf("before: c2 is %s", got)
	}
	ack, switched := p.a.receive(datagram{b: out[0].b, from: from}, p.a.endpoints(p.epsA))
	if !switched || ack == nil {
		t.Fatalf("receive: switched %t, ack %t", switched, ack != nil)
	}
	if got := p.chosen(); got != "c2.b2 4" {
		t.Fatalf("after the announcement c2 is %s, want c2.b2 4", got)
	}
	if reply, switched := p.b.receive(datagram{b: ack, from: netip.MustParseAddrPort("192.168.1.1:4490")}, p.b.endpoints(p.epsB)); reply != nil || switched {
		t.Errorf("an acknowledgement was answered (%t) or switched (%t)", reply != nil, switched)
	}
	out = nil
	if p.b.announce(p.b.endpoints(p.epsB), collect(&out)) || len(out) != 0 {
		t.Errorf("still announcing after the acknowledgement: %d datagrams", len(out))
	}

	// The same announcement again (the acknowledgement was lost): only
	// acknowledged.
	ack, switched = p.a.receive(datagram{b: mustSeal(t, p, "b2", 4, p.b.private), from: from}, p.a.endpoints(p.epsA))
	if switched || ack == nil {
		t.Errorf("a repeat: switched %t, ack %t; want only an acknowledgement", switched, ack != nil)
	}
	// Forged (b1's key in b2's name), stale, from the old gateway itself:
	// refused, nothing changes.
	for name, b := range map[string][]byte{
		"b2 sealed with b1's key": mustSeal(t, p, "b2", 5, announce.Key(p.keyB1)),
		"an older epoch":          mustSeal(t, p, "b2", 3, p.b.private),
		"garbage":                 []byte("hello"),
	} {
		if ack, switched := p.a.receive(datagram{b: b, from: from}, p.a.endpoints(p.epsA)); ack != nil || switched {
			t.Errorf("%s: acknowledged %t, switched %t", name, ack != nil, switched)
		}
	}
	if got := p.chosen(); got != "c2.b2 4" {
		t.Fatalf("after the refusals c2 is %s, want c2.b2 4", got)
	}

	// The broker is back with only the old Endpoint: the announced one
	// stays (epoch 4 over 3). Then b2's own arrives: it replaces the
	// announced one.
	if got := len(p.a.endpoints(p.epsA)); got != len(p.epsA)+1 {
		t.Errorf("%d Endpoints with the announced one, want %d", got, len(p.epsA)+1)
	}
	own := remote("c2.b2", "c2", 4, func(s *v1.EndpointSpec) { s.Hostname = "b2" })
	p.epsA = append(p.epsA, own)
	if got := len(p.a.endpoints(p.epsA)); got != len(p.epsA) {
		t.Errorf("%d Endpoints once the broker brought b2's, want %d (the announced one dropped)", got, len(p.epsA))
	}
	if got := p.chosen(); got != "c2.b2 4" {
		t.Errorf("with b2's own Endpoint c2 is %s, want c2.b2 4", got)
	}
}

// Without keys (VXLAN) the sender is known by its published address.
func TestTakeoverWithoutKeys(t *testing.T) {
	p := newTakeoverPair(t, v1.CableDriverVXLAN)
	var out []sent
	p.b.announce(p.b.endpoints(p.epsB), collect(&out))
	if len(out) != 1 {
		t.Fatalf("announced %d datagrams, want 1", len(out))
	}
	if ack, switched := p.a.receive(datagram{b: out[0].b, from: netip.MustParseAddrPort("192.168.2.9:4490")}, p.a.endpoints(p.epsA)); ack != nil || switched {
		t.Errorf("from an address b2 does not publish: acknowledged %t, switched %t", ack != nil, switched)
	}
	ack, switched := p.a.receive(datagram{b: out[0].b, from: netip.MustParseAddrPort("192.168.2.2:4490")}, p.a.endpoints(p.epsA))
	if !switched || ack == nil {
		t.Fatalf("from b2's address: switched %t, ack %t", switched, ack != nil)
	}
	if got := p.chosen(); got != "c2.b2 4" {
		t.Errorf("c2 is %s, want c2.b2 4", got)
	}
	if _, switched := p.b.receive(datagram{b: ack, from: netip.MustParseAddrPort("192.168.1.1:4490")}, p.b.endpoints(p.epsB)); switched || !p.b.acked["c1"] {
		t.Errorf("b2 did not take c1's acknowledgement")
	}
}

// mustSeal is b2's announcement of epoch, in node's name, sealed with
// private for a1.
func mustSeal(t *testing.T, p *takeoverPair, node string, epoch uint32, private announce.Key) []byte {
	t.Helper()
	b, err := announce.Seal(announce.Message{Kind: announce.Takeover, ClusterID: "c2", Node: node, Epoch: epoch},
		private, announce.Key(wgtypes.Key(p.a.private).PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
