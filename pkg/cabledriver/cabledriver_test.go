package cabledriver

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// The overheads are the encapsulations' header sizes: outer IP, UDP, and
// the driver's own (WireGuard's 32-byte header and tag; VXLAN's 8 bytes
// with the 14-byte inner Ethernet header).
func TestOverhead(t *testing.T) {
	for _, tc := range []struct {
		d    Descriptor
		f    Family
		want int
	}{
		{WireGuard, IPv4, 20 + 8 + 32},
		{WireGuard, IPv6, 40 + 8 + 32},
		{VXLAN, IPv4, 20 + 8 + 8 + 14},
		{VXLAN, IPv6, 40 + 8 + 8 + 14},
	} {
		if got := tc.d.Overhead(tc.f); got != tc.want {
			t.Errorf("%s over IPv%d: %d, want %d", tc.d.Name, tc.f, got, tc.want)
		}
	}
	if got := MaxOverhead(IPv6); got != 80 {
		t.Errorf("MaxOverhead(IPv6) = %d, want 80 (WireGuard's)", got)
	}
	if FamilyOf(netip.MustParseAddr("::ffff:192.0.2.1")) != IPv4 || FamilyOf(netip.MustParseAddr("2001:db8::1")) != IPv6 {
		t.Error("FamilyOf")
	}
}

func TestRegistry(t *testing.T) {
	if got := strings.Join(Names(), ","); got != "vxlan,wireguard" {
		t.Errorf("Names() = %s", got)
	}
	if _, err := Get("ipsec"); err == nil || err.Error() != `unknown cable driver "ipsec": use vxlan or wireguard` {
		t.Errorf("Get(ipsec): %v", err)
	}
	for _, d := range []Descriptor{WireGuard, {Name: "half"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("registering %q again or incomplete did not panic", d.Name)
				}
			}()
			Register(d)
		}()
	}
}

// Each driver fills its part of the local Endpoint from its settings, and
// reads a remote's into a peer, refusing what cannot be a peer.
func TestFillAndReadPeer(t *testing.T) {
	const pub = "c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	addr := netip.MustParseAddrPort("[2001:db8::2]:0")
	for _, tc := range []struct {
		name   string
		d      Descriptor
		s      Settings
		remote func(*v1.EndpointSpec)
		want   string // the peer's endpoint and key, or the error
	}{
		{"wireguard", WireGuard, Settings{Port: 4500}, func(r *v1.EndpointSpec) {
			r.WireGuard = &v1.WireGuardConfig{PublicKey: pub, Port: 4501}
		}, "[2001:db8::2]:4501 " + pub},
		{"wireguard without config", WireGuard, Settings{Port: 4500}, func(*v1.EndpointSpec) {}, "no WireGuard configuration"},
		{"wireguard bad key", WireGuard, Settings{Port: 4500}, func(r *v1.EndpointSpec) {
			r.WireGuard = &v1.WireGuardConfig{PublicKey: "short", Port: 4501}
		}, "WireGuard public key: not 32 bytes in base64"},
		{"wireguard bad port", WireGuard, Settings{Port: 4500}, func(r *v1.EndpointSpec) {
			r.WireGuard = &v1.WireGuardConfig{PublicKey: pub, Port: 70000}
		}, "WireGuard port 70000 out of range 1..65535"},
		{"vxlan", VXLAN, Settings{Port: 4800, VNI: 100}, func(r *v1.EndpointSpec) {
			r.VXLAN = &v1.VXLANConfig{VNI: 100, Port: 4801}
		}, "[2001:db8::2]:4801 "},
		{"vxlan VNI mismatch", VXLAN, Settings{Port: 4800, VNI: 100}, func(r *v1.EndpointSpec) {
			r.VXLAN = &v1.VXLANConfig{VNI: 101, Port: 4800}
		}, "VNI 101 differs from this gateway's 100"},
		{"vxlan without config", VXLAN, Settings{Port: 4800, VNI: 100}, func(*v1.EndpointSpec) {}, "no VXLAN configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var local, remote v1.EndpointSpec
			tc.d.Fill(&local, tc.s, pub)
			tc.remote(&remote)
			p := Peer{Name: "r", Endpoint: addr}
			got := ""
			if err := tc.d.ReadPeer(&local, &remote, &p); err != nil {
				got = err.Error()
			} else {
				got = p.Endpoint.String() + " " + p.PublicKey
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	var spec v1.EndpointSpec
	WireGuard.Fill(&spec, Settings{Port: 4500, PrivateKey: "x"}, pub)
	if spec.WireGuard == nil || spec.WireGuard.Port != 4500 || spec.WireGuard.PublicKey != pub {
		t.Errorf("WireGuard.Fill: %+v", spec.WireGuard)
	}
	VXLAN.Fill(&spec, Settings{Port: 4800, VNI: 7}, "")
	if spec.VXLAN == nil || *spec.VXLAN != (v1.VXLANConfig{VNI: 7, Port: 4800}) {
		t.Errorf("VXLAN.Fill: %+v", spec.VXLAN)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		d    Descriptor
		s    Settings
		want string
	}{
		{WireGuard, WireGuard.Defaults(), ""},
		{WireGuard, Settings{Port: 0}, "WireGuard port 0 out of range 1..65535"},
		{VXLAN, VXLAN.Defaults(), ""},
		{VXLAN, Settings{Port: 4800, VNI: 1 << 24}, "VNI 16777216 out of range 1..16777215"},
		{VXLAN, Settings{Port: 4800, VNI: 0}, "VNI 0 out of range 1..16777215"},
		{VXLAN, Settings{Port: 65536, VNI: 1}, "VXLAN port 65536 out of range 1..65535"},
	} {
		got := ""
		if err := tc.d.Validate(tc.s); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.d.Name, tc.s, got, tc.want)
		}
	}
}

// The key scheme is WireGuard's: wgtypes reads the generated key and
// derives the same public key.
func TestWireGuardKeys(t *testing.T) {
	ks := WireGuard.Key
	priv, err := ks.Generate()
	if err != nil {
		t.Fatal(err)
	}
	wk, err := wgtypes.ParseKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ks.Public(priv)
	if err != nil || pub != wk.PublicKey().String() {
		t.Errorf("Public() = %q, %v; wgtypes says %s", pub, err, wk.PublicKey())
	}
	const secret = "c2VjcmV0LWJ1dC1ub3QtYS13aXJlZ3VhcmQta2V5"
	if _, err := ks.Public(secret); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("Public(malformed): %v, want an error without the key", err)
	}
	if s := (Settings{PrivateKey: priv}).String(); strings.Contains(s, priv) {
		t.Errorf("Settings.String shows the key: %s", s)
	}
}

// Each driver's tunables are flags with their defaults.
func TestAddFlags(t *testing.T) {
	fs := flag.NewFlagSet("gw", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var wg, vx Settings
	WireGuard.AddFlags(fs, &wg)
	VXLAN.AddFlags(fs, &vx)
	if wg != (Settings{Port: 4500}) || vx != (Settings{Port: 4800, VNI: 100}) {
		t.Errorf("defaults: %v, %v", wg, vx)
	}
	if err := fs.Parse([]string{"--wireguard-port=51820", "--vxlan-vni=7"}); err != nil {
		t.Fatal(err)
	}
	if wg.Port != 51820 || vx.VNI != 7 || vx.Port != 4800 {
		t.Errorf("after parsing: %v, %v", wg, vx)
	}
	if err := fs.Parse([]string{"--vxlan-vni=x"}); err == nil {
		t.Error("--vxlan-vni=x accepted")
	}
}
