package gateway

import (
	"fmt"
	"net/netip"

	"strait.dev/strait/pkg/nodenet"
)

// gatewayScope is what the gateway owns on its node: the rules at
// nodenet.GatewayPriority, the masquerade exemption chain of each family, and
// the addresses on the cable device (its health-check addresses; the driver
// owns the device itself and the routes through it in GatewayTable).
func gatewayScope() nodenet.Scope {
	return nodenet.Scope{
		AddrDevs:   []string{nodenet.CableDevice},
		Priorities: []int{nodenet.GatewayPriority},
		Chains:     gatewayChains(nil),
	}
}

// gatewayChains is nodenet.GatewayNATChain for both families, jumped to
// first from nat POSTROUTING, holding one ACCEPT per remote subnet of the
// family (an ACCEPT in nat ends NAT for the packet: no masquerade).
func gatewayChains(remoteSubnets []netip.Prefix) []nodenet.Chain {
	var out []nodenet.Chain
	for _, f := range nodenet.Families {
		c := nodenet.Chain{Family: f, Table: "nat", Name: nodenet.GatewayNATChain, From: "POSTROUTING", Comment: nodenet.GatewayJumpComment}
		for _, s := range remoteSubnets {
			if nodenet.FamilyOf(s.Addr()) == f {
				c.Rules = append(c.Rules, []string{"-d", s.Masked().String(), "-m", "comment", "--comment", "strait: cross-cluster, no masquerade", "-j", "ACCEPT"})
			}
		}
		out = append(out, c)
	}
	return out
}

// gatewayRules sends each remote subnet to the cable's table.
func gatewayRules(remoteSubnets []netip.Prefix) []nodenet.Rule {
	var out []nodenet.Rule
	for _, s := range remoteSubnets {
		out = append(out, nodenet.Rule{Priority: nodenet.GatewayPriority, Dst: s.Masked(), Table: nodenet.GatewayTable})
	}
	return out
}

// gatewaySlice is the gateway's share of its node's state: a rule per remote
// subnet into the cable's table, the masquerade exemption per family, and
// the health-check addresses (/32 or /128) on the cable device, so that
// probes leave and arrive through it.
func gatewaySlice(remoteSubnets []netip.Prefix, healthCheckIPs []netip.Addr) nodenet.State {
	s := nodenet.State{Rules: gatewayRules(remoteSubnets), Chains: gatewayChains(remoteSubnets)}
	for _, a := range healthCheckIPs {
		s.Addrs = append(s.Addrs, nodenet.HostAddr(nodenet.CableDevice, a))
	}
	return s
}

// applyGatewaySlice makes the gateway's share of the node state (see
// gatewaySlice) match, make-before-break, in the current network namespace.
// With health-check addresses, the cable device must exist.
func applyGatewaySlice(remoteSubnets []netip.Prefix, healthCheckIPs []netip.Addr) error {
	return applyGatewaySliceTo(nodenet.Host(), remoteSubnets, healthCheckIPs)
}

func applyGatewaySliceTo(k nodenet.Kernel, remoteSubnets []netip.Prefix, healthCheckIPs []netip.Addr) error {
	a := nodenet.Applier{Kernel: k, Scope: gatewayScope()}
	if err := a.Apply(gatewaySlice(remoteSubnets, healthCheckIPs)); err != nil {
		return fmt.Errorf("gateway node state: %w", err)
	}
	return nil
}

// removeGatewaySlice removes the gateway's rules, chains and health-check
// addresses (the cable device, with its routes, is the driver's to remove).
func removeGatewaySlice() error {
	return removeGatewaySliceFrom(nodenet.Host())
}

func removeGatewaySliceFrom(k nodenet.Kernel) error {
	a := nodenet.Applier{Kernel: k, Scope: gatewayScope()}
	if err := a.Remove(); err != nil {
		return fmt.Errorf("remove gateway node state: %w", err)
	}
	return nil
}
