package mtu

import (
	"net/netip"
	"testing"
)

// The figures are those before the descriptors carried them: a 1500-byte
// underlay gives a 1420-byte WireGuard cable and a 1430-byte VXLAN one.
func TestCableAndOverhead(t *testing.T) {
	for _, tc := range []struct {
		driver   string
		underlay int
		cable    int
		over4    int
	}{
		{"wireguard", 1500, 1420, 60},
		{"vxlan", 1500, 1430, 50},
		{"wireguard", 9000, 8920, 60},
		// An unknown driver gets the largest overhead, the safe one.
		{"ipsec", 1500, 1420, 60},
	} {
		if got := Cable(tc.driver, tc.underlay); got != tc.cable {
			t.Errorf("Cable(%s, %d) = %d, want %d", tc.driver, tc.underlay, got, tc.cable)
		}
		if got := Overhead(tc.driver, IPHeader(netip.MustParseAddr("192.0.2.1"))); got != tc.over4 {
			t.Errorf("Overhead(%s, IPv4) = %d, want %d", tc.driver, got, tc.over4)
		}
	}
}
