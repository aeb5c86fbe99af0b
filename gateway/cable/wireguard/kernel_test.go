package wireguard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
)

// Unit tests of the kernel device path against fakes of netlink and wgctrl:
// this machine has no WireGuard module, so the real namespace test
// (TestTunnelBetweenNamespaces) only ever runs the userspace device.

var (
	_ Netlink = (*cabletest.Netlink)(nil)
	_ Client  = (*cabletest.WGClient)(nil)
)

const (
	testDev = "stwg0"
	// testKey is base64("private-key-of-the-gateway-00000"), fixed so that
	// the golden text can show its public key, testPub.
	testKey = "cHJpdmF0ZS1rZXktb2YtdGhlLWdhdGV3YXktMDAwMDA="
	testPub = "HK7K2vKRm+f0vRQD4TEznV5U3FHVEz2ErD/BLd5QhUM="
	// Peer keys need only be 32 bytes: these read well in the golden text.
	keyB = "peerBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyC = "peerCAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyD = "peerDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

// fixture is what another component made before the driver opened: an
// underlay link, a main-table route and a route in our table through it.
// The driver must leave all of it alone.
const fixture = `link 1: eth0 dummy mtu 1500 up
  route 10.99.0.0/16 table 150 scope universe
  route 192.0.2.0/24 table 254 scope link
`

// kernelDev is the device Open makes: link 2, after eth0.
const kernelDev = "link 2: stwg0 wireguard mtu 1420 up\n  wg public-key " + testPub + " listen-port 51820\n"

type fakes struct {
	nl        *cabletest.Netlink
	wg        *cabletest.WGClient
	userspace []string // the devices StartUserspace was asked for
}

func newFakes(t *testing.T) *fakes {
	t.Helper()
	nl := &cabletest.Netlink{}
	idx := nl.AddLink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500, Flags: net.FlagUp}})
	for _, r := range []netlink.Route{
		{LinkIndex: idx, Dst: ipNet("192.0.2.0/24"), Scope: netlink.SCOPE_LINK},
		{LinkIndex: idx, Dst: ipNet("10.99.0.0/16"), Table: testTable},
	} {
		if err := nl.RouteReplace(&r); err != nil {
			t.Fatal(err)
		}
	}
	nl.Log = nil
	return &fakes{nl: nl, wg: cabletest.NewWGClient(nl)}
}

func ipNet(s string) *net.IPNet {
	n := cable.IPNets([]netip.Prefix{netip.MustParsePrefix(s)})[0]
	return &n
}

// options wire the driver to the fakes; StartUserspace stands in for
// wireguard-go with a TUN link that goes away when it is closed.
func (f *fakes) options() *Options {
	return &Options{
		Log:       slog.New(slog.DiscardHandler),
		Netlink:   f.nl,
		NewClient: func() (Client, error) { return f.wg, nil },
		StartUserspace: func(name string, mtu int) (io.Closer, error) {
			f.userspace = append(f.userspace, name)
			f.nl.AddLink(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
			return closerFunc(func() error { f.nl.DelLink(name); return nil }), nil
		},
	}
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

func testConfig() cable.Config {
	return cable.Config{Interface: testDev, MTU: 1420, RouteTable: testTable, ListenPort: 51820, PrivateKey: testKey}
}

func (f *fakes) open(t *testing.T) *Driver {
	t.Helper()
	d, err := Open(context.Background(), testConfig(), f.options())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return d
}

func set(t *testing.T, d *Driver, peers []cable.Peer) {
	t.Helper()
	if err := d.Set(context.Background(), peers); err != nil {
		t.Fatalf("set: %v", err)
	}
}

func diff(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n--- got\n%s--- want\n%s", what, got, want)
	}
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

var (
	peerB = cable.Peer{Name: "b", PublicKey: keyB, Endpoint: netip.MustParseAddrPort("192.0.2.2:51820"),
		Subnets: prefixes("10.2.0.0/16")}
	peerBv6 = cable.Peer{Name: "b", PublicKey: keyB, Endpoint: netip.MustParseAddrPort("192.0.2.2:51820"),
		Subnets: prefixes("10.2.0.0/16", "fd00:2::/64")}
	peerBMoved = cable.Peer{Name: "b", PublicKey: keyB, Endpoint: netip.MustParseAddrPort("192.0.2.20:51821"),
		Subnets: prefixes("10.22.1.0/16")} // not masked: the driver masks
	peerC = cable.Peer{Name: "c", PublicKey: keyC, Endpoint: netip.MustParseAddrPort("[2001:db8::3]:51820"),
		Subnets: prefixes("10.3.0.0/16"), Keepalive: 25 * time.Second}
	peerD = cable.Peer{Name: "d", PublicKey: keyD, Endpoint: netip.MustParseAddrPort("198.51.100.4:4500"),
		Subnets: prefixes("10.4.0.0/16", "10.5.0.0/16"), Keepalive: 10 * time.Second}
)

// goldenCases map desired peers to the whole fake kernel state after Set.
var goldenCases = []struct {
	name  string
	peers []cable.Peer
	want  string
}{
	{"no peers", nil, fixture + kernelDev},
	{"one peer", []cable.Peer{peerB}, fixture + kernelDev +
		"  wg peer " + keyB + " endpoint 192.0.2.2:51820 allowed-ips 10.2.0.0/16 keepalive off\n" +
		"  route 10.2.0.0/16 table 150 scope link\n"},
	{"IPv4 and IPv6", []cable.Peer{peerBv6, peerC}, fixture + kernelDev +
		"  wg peer " + keyB + " endpoint 192.0.2.2:51820 allowed-ips 10.2.0.0/16,fd00:2::/64 keepalive off\n" +
		"  wg peer " + keyC + " endpoint [2001:db8::3]:51820 allowed-ips 10.3.0.0/16 keepalive 25s\n" +
		"  route 10.2.0.0/16 table 150 scope link\n" +
		"  route 10.3.0.0/16 table 150 scope link\n" +
		"  route fd00:2::/64 table 150 scope link\n"},
	{"peer moved, other subnet", []cable.Peer{peerBMoved, peerD}, fixture + kernelDev +
		"  wg peer " + keyB + " endpoint 192.0.2.20:51821 allowed-ips 10.22.0.0/16 keepalive off\n" +
		"  wg peer " + keyD + " endpoint 198.51.100.4:4500 allowed-ips 10.4.0.0/16,10.5.0.0/16 keepalive 10s\n" +
		"  route 10.22.0.0/16 table 150 scope link\n" +
		"  route 10.4.0.0/16 table 150 scope link\n" +
		"  route 10.5.0.0/16 table 150 scope link\n"},
}

// With the kernel module, Open makes a kernel device, and Set makes its
// peers and routes those wanted; the same Set again changes nothing.
func TestKernelDeviceGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes(t)
			d := f.open(t)
			if d.Userspace() || len(f.userspace) > 0 {
				t.Fatalf("userspace device with the kernel module present (started %v)", f.userspace)
			}
			set(t, d, tc.peers)
			diff(t, "state", f.nl.String(), tc.want)

			logged, configures := len(f.nl.Log), f.wg.Configures
			set(t, d, tc.peers)
			if f.wg.Configures != configures || len(f.nl.Log) != logged {
				t.Errorf("the same Set again made %d ConfigureDevice calls and changed %q",
					f.wg.Configures-configures, f.nl.Log[logged:])
			}
		})
	}
}

// Desired states applied in any order converge on the last one's state.
func TestKernelDeviceConverges(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 0))
		f := newFakes(t)
		d := f.open(t)
		var names []string
		for range 1 + rng.IntN(8) {
			tc := goldenCases[rng.IntN(len(goldenCases))]
			names = append(names, tc.name)
			set(t, d, tc.peers)
		}
		last := names[len(names)-1]
		for _, tc := range goldenCases {
			if tc.name == last {
				diff(t, "state after "+strings.Join(names, ", "), f.nl.String(), tc.want)
			}
		}
	}
}

// A kernel device that an engine left when it was killed is adopted: its
// link, routes and matching peers carry on untouched.
func TestAdoptsKilledEnginesDevice(t *testing.T) {
	f := newFakes(t)
	peers := []cable.Peer{peerBv6, peerC}
	set(t, f.open(t), peers) // and never closed: kill -9
	before := f.nl.String()

	f.wg = cabletest.NewWGClient(f.nl) // the new engine's client
	f.nl.Log = nil
	d := f.open(t)
	set(t, d, peers)
	if d.Userspace() {
		t.Error("userspace device instead of the existing kernel one")
	}
	diff(t, "state after adoption", f.nl.String(), before)
	// Only the key and port are set again; no link, peer or route changes.
	diff(t, "changes", strings.Join(f.nl.Log, "\n"),
		"wg set stwg0 private-key\nwg set stwg0 listen-port 51820")
	if f.wg.PeerChanges != 0 {
		t.Errorf("adoption changed %d peers, want 0", f.wg.PeerChanges)
	}
}

// A device of our name but another type is not ours to adopt, nor to delete.
func TestExistingDeviceOfOtherType(t *testing.T) {
	f := newFakes(t)
	f.nl.AddLink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: testDev, MTU: 1500}})
	before := f.nl.String()
	_, err := Open(context.Background(), testConfig(), f.options())
	if !errors.Is(err, syscall.EEXIST) || !strings.Contains(err.Error(), "dummy") {
		t.Errorf("open over a dummy device: %v, want an EEXIST error naming its type", err)
	}
	if len(f.userspace) > 0 {
		t.Errorf("fell back to the userspace device %v", f.userspace)
	}
	diff(t, "state", f.nl.String(), before)
}

// Without the kernel module the driver runs the userspace device; any other
// failure to make the kernel device is an error.
func TestKernelDeviceErrors(t *testing.T) {
	userspaceDev := "link 2: stwg0 tuntap mtu 1420 up\n  wg public-key " + testPub + " listen-port 51820\n" +
		"  wg peer " + keyB + " endpoint 192.0.2.2:51820 allowed-ips 10.2.0.0/16 keepalive off\n" +
		"  route 10.2.0.0/16 table 150 scope link\n"
	for _, tc := range []struct {
		err       error
		userspace bool
	}{
		{syscall.EOPNOTSUPP, true},
		{syscall.ENODEV, true},
		{syscall.EINVAL, true},
		{syscall.EPERM, false},
		{syscall.ENOSPC, false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			f := newFakes(t)
			f.nl.LinkAddErr = tc.err
			d, err := Open(context.Background(), testConfig(), f.options())
			if !tc.userspace {
				if !errors.Is(err, tc.err) {
					t.Errorf("open: %v, want %v", err, tc.err)
				}
				if len(f.userspace) > 0 {
					t.Errorf("fell back to the userspace device on %v", tc.err)
				}
				diff(t, "state", f.nl.String(), fixture)
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !d.Userspace() || len(f.userspace) != 1 || f.userspace[0] != testDev {
				t.Fatalf("Userspace() %v, started %v; want the userspace device %s", d.Userspace(), f.userspace, testDev)
			}
			set(t, d, []cable.Peer{peerB})
			diff(t, "state", f.nl.String(), fixture+userspaceDev)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			diff(t, "state after Close", f.nl.String(), fixture)
		})
	}
}

// A failure after the device was made removes it again.
func TestOpenFailureRemovesDevice(t *testing.T) {
	f := newFakes(t)
	opts := f.options()
	opts.NewClient = func() (Client, error) { return nil, syscall.EACCES }
	if _, err := Open(context.Background(), testConfig(), opts); !errors.Is(err, syscall.EACCES) {
		t.Errorf("open: %v, want EACCES", err)
	}
	diff(t, "state", f.nl.String(), fixture)
}

// Close removes the kernel device with its routes, and closes the client.
func TestCloseKernelDevice(t *testing.T) {
	f := newFakes(t)
	d := f.open(t)
	set(t, d, []cable.Peer{peerBv6, peerC})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	diff(t, "state after Close", f.nl.String(), fixture)
	if !f.wg.Closed {
		t.Error("wgctrl client left open")
	}
}

// A peer behind NAT keeps the endpoint it roamed to while its handshakes are
// fresh, and is sent back to its published endpoint once they are stale.
func TestRoamedPeer(t *testing.T) {
	nat := netip.MustParseAddrPort("203.0.113.9:40001")
	for _, tc := range []struct {
		name    string
		age     time.Duration
		changes int
		want    string
	}{
		{"fresh handshake", time.Minute, 0, nat.String()},
		{"stale handshake", roamGrace + time.Minute, 1, peerB.Endpoint.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes(t)
			d := f.open(t)
			set(t, d, []cable.Peer{peerB})
			key, _ := wgtypes.ParseKey(keyB)
			if err := f.wg.Handshake(testDev, key, nat, time.Now().Add(-tc.age)); err != nil {
				t.Fatal(err)
			}
			changes := f.wg.PeerChanges
			set(t, d, []cable.Peer{peerB})
			if got := f.wg.PeerChanges - changes; got != tc.changes {
				t.Errorf("Set made %d peer changes, want %d", got, tc.changes)
			}
			if !strings.Contains(f.nl.String(), "endpoint "+tc.want+" ") {
				t.Errorf("want endpoint %s:\n%s", tc.want, f.nl.String())
			}
		})
	}
}

// A key that is not a WireGuard key is refused before anything is made, and
// the error does not carry it (errors end up in logs and status).
func TestMalformedKey(t *testing.T) {
	const secret = "c2VjcmV0LWJ1dC1ub3QtYS13aXJlZ3VhcmQta2V5"
	f := newFakes(t)
	cfg := testConfig()
	cfg.PrivateKey = secret
	_, err := Open(context.Background(), cfg, f.options())
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("open with a malformed key: %v, want an error without the key", err)
	}
	if len(f.nl.Log) > 0 || f.wg.Configures > 0 {
		t.Errorf("made %q before checking the key", f.nl.Log)
	}
}

// Reconfigure takes a new key, port and MTU on the open device: the link,
// its peers and routes stay (make before break). A new name or table is
// refused with cable.ErrReopen, changing nothing.
func TestReconfigureInPlace(t *testing.T) {
	f := newFakes(t)
	d := f.open(t)
	set(t, d, []cable.Peer{peerBv6, peerC})
	before := f.nl.String()
	f.nl.Log = nil
	peerChanges := f.wg.PeerChanges

	const key2 = "cHJpdmF0ZS1rZXktb2YtdGhlLWdhdGV3YXktMDAwMDE="
	k2, _ := wgtypes.ParseKey(key2)
	cfg := testConfig()
	cfg.PrivateKey, cfg.ListenPort, cfg.MTU = key2, 51821, 1380
	if err := d.Reconfigure(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer("listen-port 51820", "listen-port 51821", testPub, k2.PublicKey().String(),
		"stwg0 wireguard mtu 1420", "stwg0 wireguard mtu 1380").Replace(before)
	diff(t, "state after Reconfigure", f.nl.String(), want)
	diff(t, "changes", strings.Join(f.nl.Log, "\n"),
		"link set stwg0 mtu 1380\nwg set stwg0 private-key\nwg set stwg0 listen-port 51821")
	if f.wg.PeerChanges != peerChanges {
		t.Errorf("Reconfigure changed %d peers", f.wg.PeerChanges-peerChanges)
	}
	// The same settings again change nothing; Set still works.
	f.nl.Log = nil
	if err := d.Reconfigure(context.Background(), cfg); err != nil || len(f.nl.Log) > 0 {
		t.Errorf("the same Reconfigure again: %v, changed %q", err, f.nl.Log)
	}
	set(t, d, []cable.Peer{peerB})

	for _, mod := range []func(*cable.Config){
		func(c *cable.Config) { c.Interface = "stwg1" },
		func(c *cable.Config) { c.RouteTable = 151 },
	} {
		c := cfg
		mod(&c)
		state := f.nl.String()
		if err := d.Reconfigure(context.Background(), c); !errors.Is(err, cable.ErrReopen) {
			t.Errorf("Reconfigure to %+v: %v, want ErrReopen", c, err)
		}
		diff(t, "state after a refused Reconfigure", f.nl.String(), state)
	}
}

// A new peer across NAT (with a persistent keepalive) that has completed
// no handshake is added again each rushInterval, so that WireGuard
// initiates a handshake at once instead of after its own 5 s, until a
// handshake completes or rushWindow is up (bytes received are not enough:
// crossed initiations); a peer without keepalive is left to WireGuard.
func TestRushesHandshakesWithNewPeersAcrossNAT(t *testing.T) {
	f := newFakes(t)
	d := f.open(t)
	defer d.Close()
	// The rush is driven by hand here, with its clock.
	d.stopRush()
	<-d.rushDone
	set(t, d, []cable.Peer{peerB, peerD})
	start := d.rushing[mustKey(t, keyD)].since
	rush := func(at time.Duration) int {
		t.Helper()
		changes := f.wg.PeerChanges
		if err := d.rushHandshakes(start.Add(at)); err != nil {
			t.Fatal(err)
		}
		return f.wg.PeerChanges - changes
	}
	if got := rush(rushInterval / 2); got != 0 {
		t.Errorf("half an interval after Set: %d peer changes, want none", got)
	}
	if got := rush(rushInterval); got != 2 {
		t.Errorf("an interval after Set: %d peer changes, want 2 (peer d removed and added again)", got)
	}
	if !strings.Contains(f.nl.String(), "wg peer "+keyD+" endpoint 198.51.100.4:4500 allowed-ips 10.4.0.0/16,10.5.0.0/16 keepalive 10s") {
		t.Errorf("peer d not as Set made it:\n%s", f.nl.String())
	}
	if got := rush(rushInterval + rushInterval/2); got != 0 {
		t.Errorf("half an interval after the last initiation: %d peer changes, want none", got)
	}
	if got := rush(2 * rushInterval); got != 2 {
		t.Errorf("two intervals after Set: %d peer changes, want 2", got)
	}
	// Peer d's initiation crossed ours: it was received (148 bytes) and
	// answered, and no session came. Still rushed.
	if err := f.wg.Received(testDev, mustKey(t, keyD), 148); err != nil {
		t.Fatal(err)
	}
	if got := rush(3 * rushInterval); got != 2 {
		t.Errorf("after bytes received without a handshake: %d peer changes, want 2", got)
	}
	// Peer d answers: it leaves the rush.
	if err := f.wg.Handshake(testDev, mustKey(t, keyD), netip.MustParseAddrPort("203.0.113.9:40001"), start.Add(2*rushInterval)); err != nil {
		t.Fatal(err)
	}
	if got := rush(4 * rushInterval); got != 0 {
		t.Errorf("after a handshake: %d peer changes, want none", got)
	}
	// A new peer that never answers is rushed until rushWindow only, as
	// Set wants it now.
	set(t, d, []cable.Peer{peerB, peerC})
	start = d.rushing[mustKey(t, keyC)].since
	moved := peerC
	moved.Endpoint = netip.MustParseAddrPort("[2001:db8::33]:4500")
	set(t, d, []cable.Peer{peerB, moved})
	if got := rush(rushInterval); got != 2 {
		t.Errorf("peer c an interval after Set: %d peer changes, want 2", got)
	}
	if !strings.Contains(f.nl.String(), "wg peer "+keyC+" endpoint [2001:db8::33]:4500 ") {
		t.Errorf("peer c not added again where Set moved it:\n%s", f.nl.String())
	}
	if got := rush(rushWindow); got != 0 {
		t.Errorf("peer c after the rush window: %d peer changes, want none", got)
	}
	if got := rush(rushWindow + 2*rushInterval); got != 0 {
		t.Errorf("peer c well after the rush window: %d peer changes, want none", got)
	}
}

func mustKey(t *testing.T, s string) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
