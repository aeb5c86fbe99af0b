// Package mtu holds what each encapsulation adds to a packet, so that the
// gateway (which sizes the cable) and the route agent (which sizes the
// overlay and the path through the cable) compute from the same numbers.
package mtu

import "net/netip"

// Header sizes in bytes.
const (
	IPv4Header = 20
	IPv6Header = 40
	UDPHeader  = 8
	TCPHeader  = 20
	// VXLAN's own header plus the inner Ethernet header it carries.
	VXLANHeader = 8 + 14
	// WireGuard's data message header (16) and authentication tag (16).
	WireGuardHeader = 32
)

// IPHeader is the IP header size of addr's family.
func IPHeader(addr netip.Addr) int {
	if addr.Is4() {
		return IPv4Header
	}
	return IPv6Header
}

// Overhead is what a driver ("wireguard" or "vxlan") adds over an underlay
// whose outer IP header is ipHeader bytes.
func Overhead(driver string, ipHeader int) int {
	if driver == "wireguard" {
		return ipHeader + UDPHeader + WireGuardHeader
	}
	return ipHeader + UDPHeader + VXLANHeader
}

// Cable is the MTU of a cable device over an underlay of the given MTU. It
// is sized for an IPv6 outer header, the larger, so that one MTU fits
// whichever family the peer is reached over.
func Cable(driver string, underlay int) int {
	return underlay - Overhead(driver, IPv6Header)
}
