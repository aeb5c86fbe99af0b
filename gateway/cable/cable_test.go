package cable

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"strait.dev/strait/pkg/cabledriver"
)

// A driver registers only under a descriptor's name: a driver the rest of
// Strait knows nothing about is a programming error found at start.
func TestRegisterNeedsDescriptor(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "no descriptor") {
			t.Errorf("Register without a descriptor: %v, want a panic naming the missing descriptor", r)
		}
	}()
	Register("ipsec", func(context.Context, Config) (Driver, error) { return nil, nil })
}

func TestOpenUnknown(t *testing.T) {
	if _, err := Open(context.Background(), "ipsec", Config{}); err == nil || !strings.Contains(err.Error(), `"ipsec"`) {
		t.Errorf("Open(ipsec): %v", err)
	}
}

// ConfigFor carries a gateway's settings into the driver's Config.
func TestConfigFor(t *testing.T) {
	got := ConfigFor("strait-cable", 1420, 150, cabledriver.Settings{Port: 4800, VNI: 7, PrivateKey: "k"})
	want := Config{Interface: "strait-cable", MTU: 1420, RouteTable: 150, ListenPort: 4800, VNI: 7, PrivateKey: "k"}
	if got != want {
		t.Errorf("ConfigFor: %+v, want %+v", got, want)
	}
}

// The underlay family follows the peers' endpoints; without peers the
// cable keeps the family it had.
func TestUnderlayIPv6(t *testing.T) {
	peer := func(ep string) Peer { return Peer{Name: ep, Endpoint: netip.MustParseAddrPort(ep)} }
	for _, tc := range []struct {
		name  string
		peers []Peer
		prev  bool
		want  bool
	}{
		{"no peers keeps IPv4", nil, false, false},
		{"no peers keeps IPv6", nil, true, true},
		{"IPv4 peer", []Peer{peer("198.18.3.11:4800")}, true, false},
		{"IPv4-mapped peer", []Peer{peer("[::ffff:198.18.3.11]:4800")}, true, false},
		{"IPv6 peer", []Peer{peer("[2001:2::3:11]:4800")}, false, true},
		{"the first peer's family", []Peer{peer("[2001:2::3:11]:4800"), peer("198.18.2.1:4800")}, false, true},
	} {
		if got := UnderlayIPv6(tc.peers, tc.prev); got != tc.want {
			t.Errorf("%s: UnderlayIPv6 = %v, want %v", tc.name, got, tc.want)
		}
	}
}
