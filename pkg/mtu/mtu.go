// Package mtu holds the sizes that path MTUs are computed from, so that the
// gateway (which sizes the cable) and the route agent (which sizes the
// overlay and the path through the cable) compute from the same numbers.
// What each cable driver adds comes from its descriptor (pkg/cabledriver).
package mtu

import (
	"net/netip"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// Header sizes in bytes.
const (
	IPv4Header = cabledriver.IPv4Header
	IPv6Header = cabledriver.IPv6Header
	UDPHeader  = cabledriver.UDPHeader
	TCPHeader  = 20
	// VXLANHeader is VXLAN's own header plus the inner Ethernet header it
	// carries (also the route agent's overlay).
	VXLANHeader = cabledriver.VXLANHeader
	// WireGuardHeader is WireGuard's data message header and tag.
	WireGuardHeader = cabledriver.WireGuardHeader
)

// IPHeader is the IP header size of addr's family.
func IPHeader(addr netip.Addr) int {
	return cabledriver.FamilyOf(addr).IPHeader()
}

// Overhead is what the named driver adds over an underlay whose outer IP
// header is ipHeader bytes (IPv4Header or IPv6Header), in bytes. For a
// driver no descriptor describes it is the largest any driver adds, the
// safe figure.
func Overhead(driver string, ipHeader int) int {
	if d, ok := cabledriver.Lookup(v1.CableDriver(driver)); ok {
		return ipHeader + d.Encapsulation
	}
	f := cabledriver.IPv6
	if ipHeader == IPv4Header {
		f = cabledriver.IPv4
	}
	return cabledriver.MaxOverhead(f) - f.IPHeader() + ipHeader
}

// Cable is the MTU of a cable device over an underlay of the given MTU. It
// is sized for an IPv6 outer header, the larger, so that one MTU fits
// whichever family the peer is reached over.
func Cable(driver string, underlay int) int {
	return underlay - Overhead(driver, IPv6Header)
}
