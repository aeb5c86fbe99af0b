package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
	"strait.dev/strait/gateway/cable/wireguard"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// fakeNode is a NodeSlice that records what it was asked for.
type fakeNode struct {
	log []string
}

var _ NodeSlice = (*fakeNode)(nil)

func (n *fakeNode) Apply(subnets []netip.Prefix, hc []netip.Addr) error {
	n.log = append(n.log, fmt.Sprintf("apply subnets %v health-check %v", subnets, hc))
	return nil
}

func (n *fakeNode) Remove() error {
	n.log = append(n.log, "remove")
	return nil
}

// Fixed WireGuard keys, so that the golden texts can name them. testPriv
// and testPriv2 are base64 of 32 ASCII bytes; the peer key need only be 32
// bytes.
const (
	testPriv  = "cHJpdmF0ZS1rZXktb2YtdGhlLWdhdGV3YXktMDAwMDA="
	testPriv2 = "cHJpdmF0ZS1rZXktb2YtdGhlLWdhdGV3YXktMDAwMDE="
	peerKeyB  = "peerBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

func wgState(port int32, key string) CableState {
	return CableState{
		Driver:   v1.CableDriverWireGuard,
		Settings: cabledriver.Settings{Port: port, PrivateKey: key},
		Peers: []cable.Peer{{Name: "c2-gw", Endpoint: netip.MustParseAddrPort("198.51.100.2:4500"), PublicKey: peerKeyB,
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/64")}}},
		RemoteSubnets:  []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd00:2::/64")},
		HealthCheckIPs: []netip.Addr{netip.MustParseAddr("10.1.0.1")},
	}
}

func vxState(port, vni int32) CableState {
	s := wgState(0, "")
	s.Driver, s.Settings = v1.CableDriverVXLAN, cabledriver.Settings{Port: port, VNI: vni}
	s.Peers[0].PublicKey = ""
	return s
}

func newTestDataplane(drivers *cabletest.Drivers) (*CableDataplane, *fakeNode) {
	node := &fakeNode{}
	return &CableDataplane{Log: slog.New(slog.DiscardHandler), Open: drivers.Open, Node: node, Links: &cabletest.Netlink{}, SocketDir: noSocketDir}, node
}

func mustSet(t *testing.T, d *CableDataplane, s CableState) {
	t.Helper()
	if err := d.Set(context.Background(), s); err != nil {
		t.Fatalf("set: %v", err)
	}
}

// A change of the local cable settings reaches the open driver: in place
// where the driver can take it (make before break), else by closing and
// opening it again within one Set; the peers and node state follow in the
// same Set. The same state again changes nothing.
func TestCableDataplaneFollowsLocalSettings(t *testing.T) {
	key1 := "sha256:" + fingerprint(testPriv)
	key2 := "sha256:" + fingerprint(testPriv2)
	for _, tc := range []struct {
		name     string
		inPlace  bool
		from, to CableState
		changes  string
		after    string
	}{
		{"same state", false, wgState(4500, testPriv), wgState(4500, testPriv), "", "wireguard dev strait-cable mtu 1420 table 150 port 4500 vni 0 key " + key1},
		{"port, no in-place support", false, wgState(4500, testPriv), wgState(4501, testPriv),
			"close wireguard strait-cable\nopen wireguard dev strait-cable mtu 1420 table 150 port 4501 vni 0 key " + key1 + "\nset strait-cable peers 1",
			"wireguard dev strait-cable mtu 1420 table 150 port 4501 vni 0 key " + key1},
		{"port and key, in place", true, wgState(4500, testPriv), wgState(4501, testPriv2),
			"reconfigure wireguard dev strait-cable mtu 1420 table 150 port 4501 vni 0 key " + key2,
			"wireguard dev strait-cable mtu 1420 table 150 port 4501 vni 0 key " + key2},
		{"VNI needs a new device", true, vxState(4800, 100), vxState(4800, 101),
			"close vxlan strait-cable\nopen vxlan dev strait-cable mtu 1430 table 150 port 4800 vni 101 key none\nset strait-cable peers 1",
			"vxlan dev strait-cable mtu 1430 table 150 port 4800 vni 101 key none"},
		{"another driver", true, wgState(4500, testPriv), vxState(4800, 100),
			"close wireguard strait-cable\nopen vxlan dev strait-cable mtu 1430 table 150 port 4800 vni 100 key none\nset strait-cable peers 1",
			"vxlan dev strait-cable mtu 1430 table 150 port 4800 vni 100 key none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drivers := &cabletest.Drivers{InPlace: tc.inPlace}
			d, node := newTestDataplane(drivers)
			mustSet(t, d, tc.from)
			drivers.Log()
			node.log = nil
			mustSet(t, d, tc.to)
			if got := drivers.Log(); got != tc.changes {
				t.Errorf("changes:\n--- got\n%s\n--- want\n%s", got, tc.changes)
			}
			want := tc.after + "\n  peer c2-gw endpoint 198.51.100.2:4500 key \"" + tc.to.Peers[0].PublicKey + "\" keepalive 0s subnets 10.2.0.0/16,fd00:2::/64\n"
			if got := drivers.String(); got != want {
				t.Errorf("drivers:\n--- got\n%s--- want\n%s", got, want)
			}
			if want := "apply subnets [10.2.0.0/16 fd00:2::/64] health-check [10.1.0.1]"; strings.Join(node.log, "\n") != want {
				t.Errorf("node state: %q, want %q", node.log, want)
			}
		})
	}
}

// fingerprint is how the fake drivers show a private key.
func fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}

// Settings a driver refuses, or an unknown driver, fail Set before
// anything is opened.
func TestCableDataplaneRefusesBadSettings(t *testing.T) {
	for _, s := range []CableState{vxState(4800, 0), vxState(0, 100), {Driver: "ipsec"}} {
		drivers := &cabletest.Drivers{}
		d, node := newTestDataplane(drivers)
		if err := d.Set(context.Background(), s); err == nil {
			t.Errorf("%s: no error", s.Settings)
		}
		if log := drivers.Log(); log != "" || len(node.log) > 0 {
			t.Errorf("%s: made %q and %q", s.Settings, log, node.log)
		}
	}
}

// A driver that fails to open is tried again by the next Set.
func TestCableDataplaneRetriesOpen(t *testing.T) {
	drivers := &cabletest.Drivers{OpenErr: syscall.EPERM}
	d, node := newTestDataplane(drivers)
	if err := d.Set(context.Background(), wgState(4500, testPriv)); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("set: %v, want EPERM", err)
	}
	if len(node.log) > 0 {
		t.Errorf("node state applied without a cable: %q", node.log)
	}
	drivers.OpenErr = nil
	mustSet(t, d, wgState(4500, testPriv))
	if !strings.HasPrefix(drivers.String(), "wireguard dev strait-cable") {
		t.Errorf("drivers after the retry:\n%s", drivers.String())
	}
}

// Close removes the open driver's device and the node state; without an
// open driver, the device a killed predecessor left under the cable's name.
func TestCableDataplaneClose(t *testing.T) {
	drivers := &cabletest.Drivers{}
	d, node := newTestDataplane(drivers)
	mustSet(t, d, wgState(4500, testPriv))
	node.log = nil
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if drivers.String() != "" || strings.Join(node.log, ",") != "remove" {
		t.Errorf("after Close: drivers %q, node %q", drivers.String(), node.log)
	}

	nl := &cabletest.Netlink{}
	nl.AddLink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}})
	nl.AddLink(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: CableInterface, MTU: 1420}})
	d, node = newTestDataplane(&cabletest.Drivers{})
	d.Links = nl
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := nl.String(); got != "link 1: eth0 dummy mtu 1500 down\n" || strings.Join(node.log, ",") != "remove" {
		t.Errorf("after Close on a predecessor's device: links\n%s node %q", got, node.log)
	}
}

// With the real WireGuard driver over the fake kernel: a new port and key
// reach the open device in place; its link, peer and routes stay.
func TestCableDataplaneReconfiguresWireGuardInPlace(t *testing.T) {
	nl := &cabletest.Netlink{}
	wg := cabletest.NewWGClient(nl)
	d, _ := newTestDataplane(nil)
	d.Open = func(ctx context.Context, _ string, cfg cable.Config) (cable.Driver, error) {
		return wireguard.Open(ctx, cfg, &wireguard.Options{Log: slog.New(slog.DiscardHandler), Netlink: nl,
			NewClient: func() (wireguard.Client, error) { return wg, nil }})
	}
	d.Links = nl
	mustSet(t, d, wgState(4500, testPriv))
	before := nl.String()
	nl.Log = nil
	mustSet(t, d, wgState(4501, testPriv2))
	if got, want := strings.Join(nl.Log, "\n"), "wg set strait-cable private-key\nwg set strait-cable listen-port 4501"; got != want {
		t.Errorf("changes:\n--- got\n%s\n--- want\n%s", got, want)
	}
	after := nl.String()
	pub2, _ := cabledriver.WireGuard.Key.Public(testPriv2)
	pub1, _ := cabledriver.WireGuard.Key.Public(testPriv)
	want := strings.Replace(strings.Replace(before, "listen-port 4500", "listen-port 4501", 1), pub1, pub2, 1)
	if after != want {
		t.Errorf("device after the change:\n--- got\n%s--- want\n%s", after, want)
	}
}

// orderNode is a NodeSlice that logs its calls in one list with the fake
// drivers' changes, so that a test sees their order.
type orderNode struct {
	drivers *cabletest.Drivers
	log     []string
}

var _ NodeSlice = (*orderNode)(nil)

// flush moves the drivers' changes so far into the log.
func (n *orderNode) flush() {
	if l := n.drivers.Log(); l != "" {
		n.log = append(n.log, strings.Split(l, "\n")...)
	}
}

func (n *orderNode) Apply(subnets []netip.Prefix, _ []netip.Addr) error {
	n.flush()
	n.log = append(n.log, fmt.Sprintf("node rules %v", subnets))
	return nil
}

func (n *orderNode) Remove() error {
	n.flush()
	n.log = append(n.log, "node remove")
	return nil
}

// The rules at 150 never point at routes that are gone: a withdrawn
// subnet's rule goes before the driver drops its route, a new subnet's
// rule comes after the driver added its route, and Close takes the rules
// away before the device (and its table).
func TestCableDataplaneOrdersRulesAndRoutes(t *testing.T) {
	drivers := &cabletest.Drivers{}
	node := &orderNode{drivers: drivers}
	d := &CableDataplane{Log: slog.New(slog.DiscardHandler), Open: drivers.Open, Node: node, Links: &cabletest.Netlink{}, SocketDir: noSocketDir}
	step := func(name string, do func() error, want ...string) {
		t.Helper()
		node.log = nil
		if err := do(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		node.flush()
		if got := strings.Join(node.log, "\n"); got != strings.Join(want, "\n") {
			t.Errorf("%s:\n--- got\n%s\n--- want\n%s", name, got, strings.Join(want, "\n"))
		}
	}
	set := func(s CableState) func() error { return func() error { return d.Set(context.Background(), s) } }
	two := wgState(4500, testPriv)
	one := wgState(4500, testPriv)
	one.Peers[0].Subnets = one.Peers[0].Subnets[:1]
	one.RemoteSubnets = one.RemoteSubnets[:1]
	other := wgState(4500, testPriv)
	other.Peers[0].Subnets = prefixes("10.3.0.0/16")
	other.RemoteSubnets = prefixes("10.3.0.0/16")

	step("first state: the routes, then the rules", set(two),
		"open wireguard dev strait-cable mtu 1420 table 150 port 4500 vni 0 key sha256:"+fingerprint(testPriv),
		"set strait-cable peers 1",
		"node rules [10.2.0.0/16 fd00:2::/64]")
	step("a subnet withdrawn: its rule goes first", set(one),
		"node rules [10.2.0.0/16]",
		"set strait-cable peers 1",
		"node rules [10.2.0.0/16]")
	step("one subnet replaced by another: old rule out, routes, new rule in", set(other),
		"node rules []",
		"set strait-cable peers 1",
		"node rules [10.3.0.0/16]")
	step("a subnet added: the route, then the rule", set(wgState(4500, testPriv)),
		"node rules []",
		"set strait-cable peers 1",
		"node rules [10.2.0.0/16 fd00:2::/64]")
	step("the same state: the rules re-applied only", set(wgState(4500, testPriv)),
		"node rules [10.2.0.0/16 fd00:2::/64]")
	step("close: the rules, then the device", d.Close,
		"node remove",
		"close wireguard strait-cable")
}

// blockingNode is a NodeSlice whose Apply waits until released, as an
// iptables-restore on a busy node might.
type blockingNode struct {
	entered chan struct{}
	release chan struct{}
}

func (n *blockingNode) Apply([]netip.Prefix, []netip.Addr) error {
	n.entered <- struct{}{}
	<-n.release
	return nil
}

func (n *blockingNode) Remove() error { return nil }

// countingDriver is a fake driver that counts traffic.
type countingDriver struct{ cable.Driver }

func (countingDriver) Traffic() (map[string]cable.Traffic, error) {
	return map[string]cable.Traffic{"c2-gw": {RxBytes: 1, TxBytes: 2}}, nil
}

// A scrape does not wait for Set's node state appliers.
func TestCableDataplaneTrafficDuringSet(t *testing.T) {
	drivers := &cabletest.Drivers{}
	node := &blockingNode{entered: make(chan struct{}), release: make(chan struct{})}
	d := &CableDataplane{Log: slog.New(slog.DiscardHandler), Node: node, Links: &cabletest.Netlink{}, SocketDir: noSocketDir,
		Open: func(ctx context.Context, name string, cfg cable.Config) (cable.Driver, error) {
			drv, err := drivers.Open(ctx, name, cfg)
			return countingDriver{drv}, err
		}}
	set := make(chan error, 1)
	go func() { set <- d.Set(context.Background(), wgState(4500, testPriv)) }()
	<-node.entered // Set is in the node slice's Apply
	traffic := make(chan map[string]cable.Traffic, 1)
	go func() { traffic <- d.Traffic() }()
	select {
	case got := <-traffic:
		if got["c2-gw"].TxBytes != 2 {
			t.Errorf("traffic %v", got)
		}
	case <-time.After(hangTimeout):
		t.Error("Traffic blocked behind Set's node state")
	}
	close(node.release)
	if err := <-set; err != nil {
		t.Fatal(err)
	}
}

// hangTimeout only catches a hang: far above what any step takes on a
// loaded machine.
const hangTimeout = 90 * time.Second
