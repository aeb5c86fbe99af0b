package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	_ "strait.dev/strait/gateway/cable/vxlan"     // registers the vxlan driver
	_ "strait.dev/strait/gateway/cable/wireguard" // registers the wireguard driver
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/iptchain"
	"strait.dev/strait/pkg/mtu"
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
	underlay := d.UnderlayMTU
	if underlay == 0 {
		underlay = 1500
	}
	cfg := cable.Config{Interface: CableInterface, PrivateKey: local.PrivateKey}
	switch local.Spec.CableDriver {
	case v1.CableDriverWireGuard:
		if local.Spec.WireGuard == nil {
			return errors.New("local endpoint has no WireGuard configuration")
		}
		cfg.ListenPort = int(local.Spec.WireGuard.Port)
	case v1.CableDriverVXLAN:
		if local.Spec.VXLAN == nil {
			return errors.New("local endpoint has no VXLAN configuration")
		}
		cfg.ListenPort, cfg.VNI = int(local.Spec.VXLAN.Port), int(local.Spec.VXLAN.VNI)
	default:
		return fmt.Errorf("cable driver %q is not available yet (have %v)", local.Spec.CableDriver, cable.Names())
	}
	// Sized for an IPv6 outer header, so the MTU fits either family.
	cfg.MTU = mtu.Cable(string(local.Spec.CableDriver), underlay)
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
