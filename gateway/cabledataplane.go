package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	_ "strait.dev/strait/gateway/cable/vxlan"     // registers the vxlan driver
	_ "strait.dev/strait/gateway/cable/wireguard" // registers the wireguard driver
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

const (
	// CableInterface is the cable device's name on gateway nodes.
	CableInterface = "strait-cable"
	// RouteTable holds the routes to remote subnets (the drivers fill it).
	RouteTable = 150
	// RulePriority is the priority of the rules that send remote subnets to
	// RouteTable: before the main table (32766), after the local one (0).
	RulePriority = 150
	// natChain exempts cross-cluster traffic from the node's masquerade: it
	// is jumped to first from nat POSTROUTING and accepts (ends NAT for)
	// packets to remote subnets.
	natChain = "STRAIT-GW-POSTROUTING"
	// natKeepalive holds a NAT mapping open; 25 s is WireGuard's usual.
	natKeepalive = 25 * time.Second
	// What each cable adds to a packet over an IPv6 underlay, the larger of
	// the families, so the cable MTU fits either: outer IPv6 (40) + UDP (8) +
	// WireGuard (32) = 80; outer IPv6 (40) + UDP (8) + VXLAN (8) + inner
	// Ethernet (14) = 70.
	wireGuardOverhead = 80
	vxlanOverhead     = 70
)

// CableDataplane builds the cables with a registered cable driver and routes
// the remote subnets into them.
type CableDataplane struct {
	// UnderlayMTU is the MTU of the node's network (default 1500).
	UnderlayMTU int
	Log         *slog.Logger

	driver cable.Driver
}

var _ Dataplane = (*CableDataplane)(nil)

// Set opens the driver on first use, gives it the peers, and keeps the
// routing rules and masquerade exemption for their subnets.
func (d *CableDataplane) Set(ctx context.Context, local Local, remotes []v1.Endpoint) error {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.driver == nil {
		if err := d.open(ctx, local); err != nil {
			return err
		}
	}
	var peers []cable.Peer
	var subnets []netip.Prefix
	for _, r := range remotes {
		p, err := peerFor(local.Spec, r, local.Reach[r.Name])
		if err != nil {
			d.Log.Warn("skipping remote endpoint", "endpoint", r.Name, "err", err)
			continue
		}
		peers = append(peers, p)
		subnets = append(subnets, p.Subnets...)
	}
	if err := d.driver.Set(ctx, peers); err != nil {
		return err
	}
	if err := setRules(subnets); err != nil {
		return err
	}
	if err := setNATExemption(subnets); err != nil {
		return err
	}
	return nil
}

func (d *CableDataplane) open(ctx context.Context, local Local) error {
	mtu := d.UnderlayMTU
	if mtu == 0 {
		mtu = 1500
	}
	cfg := cable.Config{Interface: CableInterface, PrivateKey: local.PrivateKey}
	switch local.Spec.CableDriver {
	case v1.CableDriverWireGuard:
		if local.Spec.WireGuard == nil {
			return errors.New("local endpoint has no WireGuard configuration")
		}
		cfg.ListenPort, cfg.MTU = int(local.Spec.WireGuard.Port), mtu-wireGuardOverhead
	case v1.CableDriverVXLAN:
		if local.Spec.VXLAN == nil {
			return errors.New("local endpoint has no VXLAN configuration")
		}
		cfg.ListenPort, cfg.VNI, cfg.MTU = int(local.Spec.VXLAN.Port), int(local.Spec.VXLAN.VNI), mtu-vxlanOverhead
	default:
		return fmt.Errorf("cable driver %q is not available yet (have %v)", local.Spec.CableDriver, cable.Names())
	}
	drv, err := cable.Open(ctx, string(local.Spec.CableDriver), cfg)
	if err != nil {
		return err
	}
	d.driver = drv
	// The health-check addresses live on the cable device, so that probes
	// leave and arrive through it.
	link, err := netlink.LinkByName(CableInterface)
	if err != nil {
		return err
	}
	for _, a := range local.HealthCheckIPs {
		bits := a.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("health-check address %s: %w", a, err)
		}
	}
	return nil
}

// peerFor turns a remote Endpoint into a cable peer, reached at addr (NAT
// discovery's choice) or, without one, at its public address. Keepalives run
// when either side sits behind NAT, so that the side behind it opens the path
// and keeps the mapping.
func peerFor(local v1.EndpointSpec, r v1.Endpoint, addr netip.Addr) (cable.Peer, error) {
	if r.Spec.CableDriver != local.CableDriver {
		return cable.Peer{}, fmt.Errorf("it uses %s, this gateway %s", r.Spec.CableDriver, local.CableDriver)
	}
	if !addr.IsValid() {
		var err error
		if addr, err = reachAddress(r.Spec); err != nil {
			return cable.Peer{}, err
		}
	}
	p := cable.Peer{Name: r.Name}
	for _, s := range r.Spec.Subnets {
		pfx, err := netip.ParsePrefix(string(s))
		if err != nil {
			return cable.Peer{}, err
		}
		p.Subnets = append(p.Subnets, pfx)
	}
	switch r.Spec.CableDriver {
	case v1.CableDriverWireGuard:
		if r.Spec.WireGuard == nil {
			return cable.Peer{}, errors.New("no WireGuard configuration")
		}
		p.PublicKey = r.Spec.WireGuard.PublicKey
		p.Endpoint = netip.AddrPortFrom(addr, uint16(r.Spec.WireGuard.Port))
	case v1.CableDriverVXLAN:
		if r.Spec.VXLAN == nil {
			return cable.Peer{}, errors.New("no VXLAN configuration")
		}
		if local.VXLAN != nil && r.Spec.VXLAN.VNI != local.VXLAN.VNI {
			return cable.Peer{}, fmt.Errorf("VNI %d differs from this gateway's %d", r.Spec.VXLAN.VNI, local.VXLAN.VNI)
		}
		p.Endpoint = netip.AddrPortFrom(addr, uint16(r.Spec.VXLAN.Port))
	}
	if behindNAT(local) || behindNAT(r.Spec) {
		p.Keepalive = natKeepalive
	}
	return p, nil
}

func reachAddress(e v1.EndpointSpec) (netip.Addr, error) {
	ips := e.PublicIPs
	if len(ips) == 0 {
		ips = e.PrivateIPs
	}
	if len(ips) == 0 {
		return netip.Addr{}, errors.New("no address")
	}
	return netip.ParseAddr(string(ips[0]))
}

// behindNAT: the gateway published that its public address is not one of
// its own (NATTraversal).
func behindNAT(e v1.EndpointSpec) bool { return e.NATTraversal }

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

// setNATExemption keeps natChain holding one ACCEPT per remote subnet, and
// nat POSTROUTING jumping to it first.
func setNATExemption(subnets []netip.Prefix) error {
	for _, proto := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		var dsts []string
		for _, s := range subnets {
			if s.Addr().Is4() == (proto == iptables.ProtocolIPv4) {
				dsts = append(dsts, s.Masked().String())
			}
		}
		if err := ensureExemptions(ipt, dsts); err != nil {
			return err
		}
		jump := []string{"-m", "comment", "--comment", "strait gateway", "-j", natChain}
		ok, err := ipt.Exists("nat", "POSTROUTING", jump...)
		if err != nil {
			return err
		}
		if !ok {
			if err := ipt.Insert("nat", "POSTROUTING", 1, jump...); err != nil {
				return fmt.Errorf("jump to %s: %w", natChain, err)
			}
		}
	}
	return nil
}

// ensureExemptions makes natChain accept exactly dsts, in order, and rewrites
// it only when it differs, so that repeated calls leave the rules alone.
func ensureExemptions(ipt *iptables.IPTables, dsts []string) error {
	exists, err := ipt.ChainExists("nat", natChain)
	if err != nil {
		return err
	}
	if !exists {
		if err := ipt.NewChain("nat", natChain); err != nil {
			return fmt.Errorf("create %s: %w", natChain, err)
		}
	}
	cur, err := ipt.List("nat", natChain)
	if err != nil {
		return err
	}
	var have []string
	for _, rule := range cur {
		f := strings.Fields(rule)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "-d" {
				have = append(have, f[i+1])
			}
		}
	}
	if slices.Equal(have, dsts) && len(cur) == len(dsts)+1 { // List starts with "-N chain"
		return nil
	}
	if err := ipt.ClearChain("nat", natChain); err != nil {
		return err
	}
	for _, d := range dsts {
		if err := ipt.Append("nat", natChain, "-d", d, "-m", "comment", "--comment", "strait: cross-cluster, no masquerade", "-j", "ACCEPT"); err != nil {
			return fmt.Errorf("%s: %w", natChain, err)
		}
	}
	return nil
}

// Traffic returns the cable's per-peer counters, when the driver keeps them.
func (d *CableDataplane) Traffic() map[string]cable.Traffic {
	if tc, ok := d.driver.(cable.TrafficCounter); ok {
		if t, err := tc.Traffic(); err == nil {
			return t
		}
	}
	return nil
}

// Close removes the device, the rules and the chain.
func (d *CableDataplane) Close() error {
	var errs []error
	if d.driver != nil {
		errs = append(errs, d.driver.Close())
		d.driver = nil
	} else if l, err := netlink.LinkByName(CableInterface); err == nil {
		// Left by a predecessor that was killed.
		errs = append(errs, netlink.LinkDel(l))
	}
	errs = append(errs, setRules(nil))
	for _, proto := range []iptables.Protocol{iptables.ProtocolIPv4, iptables.ProtocolIPv6} {
		ipt, err := iptables.NewWithProtocol(proto)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_ = ipt.DeleteIfExists("nat", "POSTROUTING", "-m", "comment", "--comment", "strait gateway", "-j", natChain)
		if ok, _ := ipt.ChainExists("nat", natChain); ok {
			errs = append(errs, ipt.ClearAndDeleteChain("nat", natChain))
		}
	}
	return errors.Join(errs...)
}
