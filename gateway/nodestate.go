package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"strait.dev/strait/pkg/iptchain"
)

// setRules keeps exactly one rule "to <subnet> lookup RouteTable" at
// RulePriority per remote subnet, and no other rule at that priority.
func setRules(subnets []netip.Prefix) error {
	want := map[string]netip.Prefix{}
	for _, s := range subnets {
		want[s.Masked().String()] = s.Masked()
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := netlink.RuleList(family)
		if err != nil {
			return fmt.Errorf("list rules: %w", err)
		}
		for _, r := range rules {
			if r.Priority != RulePriority {
				continue
			}
			if r.Dst != nil && r.Table == RouteTable {
				if _, ok := want[r.Dst.String()]; ok {
					delete(want, r.Dst.String())
					continue
				}
			}
			if err := netlink.RuleDel(&r); err != nil {
				return fmt.Errorf("remove rule %v: %w", r, err)
			}
		}
	}
	for _, p := range want {
		r := netlink.NewRule()
		r.Priority, r.Table = RulePriority, RouteTable
		r.Family = netlink.FAMILY_V4
		if p.Addr().Is6() {
			r.Family = netlink.FAMILY_V6
		}
		r.Dst = &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
		if err := netlink.RuleAdd(r); err != nil {
			return fmt.Errorf("add rule to %s: %w", p, err)
		}
	}
	return nil
}

// natExemption is natChain holding one ACCEPT per remote subnet of the
// family, jumped to first from nat POSTROUTING.
func natExemption(subnets []netip.Prefix, v6 bool) iptchain.Chain {
	c := iptchain.Chain{Table: "nat", Name: natChain, From: "POSTROUTING", Comment: "strait gateway"}
	for _, s := range subnets {
		if s.Addr().Is6() == v6 {
			c.Rules = append(c.Rules, []string{"-d", s.Masked().String(), "-m", "comment", "--comment", "strait: cross-cluster, no masquerade", "-j", "ACCEPT"})
		}
	}
	return c
}

// setNATExemption keeps natChain for both families.
func setNATExemption(subnets []netip.Prefix) error {
	for _, v6 := range []bool{false, true} {
		ipt, err := newIPTables(v6)
		if err != nil {
			return err
		}
		if err := iptchain.Ensure(ipt, natExemption(subnets, v6)); err != nil {
			return err
		}
	}
	return nil
}

func newIPTables(v6 bool) (*iptables.IPTables, error) {
	proto := iptables.ProtocolIPv4
	if v6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.NewWithProtocol(proto)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

// applyGatewaySlice makes the gateway's share of the node state match: a rule
// per remote subnet into the cable's table, the masquerade exemption, and
// the health-check addresses on the cable device.
func applyGatewaySlice(remoteSubnets []netip.Prefix, healthCheckIPs []netip.Addr) error {
	if err := setRules(remoteSubnets); err != nil {
		return err
	}
	if err := setNATExemption(remoteSubnets); err != nil {
		return err
	}
	if len(healthCheckIPs) == 0 {
		return nil
	}
	link, err := netlink.LinkByName(CableInterface)
	if err != nil {
		return err
	}
	for _, a := range healthCheckIPs {
		bits := a.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("health-check address %s: %w", a, err)
		}
	}
	return nil
}

// removeGatewaySlice removes the gateway's rules and chains (the cable
// device, with its addresses and routes, is the driver's to remove).
func removeGatewaySlice() error {
	errs := []error{setRules(nil)}
	for _, v6 := range []bool{false, true} {
		ipt, err := newIPTables(v6)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, iptchain.Remove(ipt, natExemption(nil, v6)))
	}
	return errors.Join(errs...)
}
