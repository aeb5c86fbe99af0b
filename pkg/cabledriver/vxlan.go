package cabledriver

import (
	"errors"
	"fmt"
	"net/netip"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// VXLAN's figures.
const (
	// VXLANHeader is VXLAN's own header (8 bytes) and the inner Ethernet
	// header it carries (14).
	VXLANHeader = 8 + 14
	// DefaultVXLANPort is IANA's VXLAN port 4789 moved to our own range,
	// so that it never collides with a CNI's VXLAN (4789, 8472).
	DefaultVXLANPort = 4800
	// DefaultVXLANVNI is the cable's network identifier; any value works as
	// long as every cluster's gateways use the same.
	DefaultVXLANVNI = 100
	// maxVNI: VNIs are 24 bits; 0 is not used.
	maxVNI = 1<<24 - 1
)

// VXLAN describes the plain (unencrypted) VXLAN cable for trusted networks.
var VXLAN = Descriptor{
	Name:          v1.CableDriverVXLAN,
	Summary:       "plain VXLAN tunnel, for trusted networks",
	Encapsulation: UDPHeader + VXLANHeader,
	Params: []Param{
		{Flag: "vxlan-port", Default: DefaultVXLANPort, Usage: "VXLAN UDP `port`",
			Field: func(s *Settings) *int32 { return &s.Port }},
		{Flag: "vxlan-vni", Default: DefaultVXLANVNI, Usage: "VXLAN network identifier (`vni`)",
			Field: func(s *Settings) *int32 { return &s.VNI }},
	},
	Validate: func(s Settings) error {
		if s.VNI < 1 || s.VNI > maxVNI {
			return fmt.Errorf("VNI %d out of range 1..%d", s.VNI, maxVNI)
		}
		return validPort("VXLAN port", s.Port)
	},
	Fill: func(spec *v1.EndpointSpec, s Settings, _ string) {
		spec.VXLAN = &v1.VXLANConfig{VNI: s.VNI, Port: s.Port}
	},
	ReadPeer: func(local, remote *v1.EndpointSpec, p *Peer) error {
		if remote.VXLAN == nil {
			return errors.New("no VXLAN configuration")
		}
		if local.VXLAN != nil && remote.VXLAN.VNI != local.VXLAN.VNI {
			return fmt.Errorf("VNI %d differs from this gateway's %d", remote.VXLAN.VNI, local.VXLAN.VNI)
		}
		if err := validPort("VXLAN port", remote.VXLAN.Port); err != nil {
			return err
		}
		p.Endpoint = withPort(p, remote.VXLAN.Port)
		// The remote gateway's health-check addresses sit on its cable
		// device: it answers neighbour solicitations for them, not for
		// its cluster's IPv6 addresses (no proxy NDP per subnet).
		p.NextHops = nil
		for _, ip := range remote.HealthCheckIPs {
			if a, err := netip.ParseAddr(string(ip)); err == nil {
				p.NextHops = append(p.NextHops, a)
			}
		}
		return nil
	},
}

func init() { Register(VXLAN) }

// withPort is p's endpoint address at port.
func withPort(p *Peer, port int32) netip.AddrPort {
	return netip.AddrPortFrom(p.Endpoint.Addr(), uint16(port))
}
