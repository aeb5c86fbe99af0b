// Package vxlan is the plain VXLAN cable driver, for networks that are
// trusted (no encryption) and where the gateways reach each other without
// NAT. It makes one kernel VXLAN device with learning off and, per remote
// gateway, an all-zero FDB entry pointing at it: broadcasts (ARP) go to every
// remote gateway, and each answers, by proxy ARP without the kernel's
// random delay, for the addresses of its own cluster.
package vxlan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/pkg/cabledriver"
)

// The driver registers under its descriptor's name.
func init() {
	cable.Register(string(cabledriver.VXLAN.Name), func(ctx context.Context, cfg cable.Config) (cable.Driver, error) {
		return Open(ctx, cfg)
	})
}

// zeroMAC in an FDB entry means "all unknown destinations": with one such
// entry per remote gateway, the device replicates broadcasts to all of them.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// Driver is an open VXLAN device.
type Driver struct {
	cfg  cable.Config
	link netlink.Link
}

var (
	_ cable.Driver       = (*Driver)(nil)
	_ cable.Reconfigurer = (*Driver)(nil)
)

// Open creates the device (or adopts one of the same name and settings) and
// turns on proxy ARP on it. A VNI out of range or a missing route table
// (cfg.RouteTable 0) is an error before anything is made.
func Open(_ context.Context, cfg cable.Config) (*Driver, error) {
	if cfg.RouteTable <= 0 {
		return nil, fmt.Errorf("vxlan: no route table in the configuration")
	}
	if cfg.VNI <= 0 || cfg.VNI >= 1<<24 {
		return nil, fmt.Errorf("vxlan: VNI %d out of range 1..16777215", cfg.VNI)
	}
	want := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: cfg.Interface, MTU: cfg.MTU},
		VxlanId:   cfg.VNI,
		Port:      cfg.ListenPort,
		Learning:  false,
	}
	if cfg.IPv6Underlay {
		// The unspecified local address makes an IPv6 device that sends
		// from whatever address routing picks, as the IPv4 one does.
		want.SrcAddr = net.IPv6unspecified
	}
	if cur, err := netlink.LinkByName(cfg.Interface); err == nil {
		v, ok := cur.(*netlink.Vxlan)
		if !ok || v.VxlanId != cfg.VNI || v.Port != cfg.ListenPort || !ofFamily(cur, cfg.IPv6Underlay) {
			// Ours (the name is ours) but with other settings: make it anew.
			if err := netlink.LinkDel(cur); err != nil {
				return nil, fmt.Errorf("vxlan: replace %s: %w", cfg.Interface, err)
			}
		}
	}
	if err := netlink.LinkAdd(want); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("vxlan: create %s: %w", cfg.Interface, err)
	}
	link, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vxlan: find %s: %w", cfg.Interface, err)
	}
	d := &Driver{cfg: cfg, link: link}
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		d.Close()
		return nil, fmt.Errorf("vxlan: MTU of %s: %w", cfg.Interface, err)
	}
	// The remote gateway answers ARP for its cluster's addresses, at once:
	// the kernel delays a proxy ARP answer to a broadcast request by a
	// random time up to the device's proxy_delay (0.8 s by default,
	// ip-sysctl.rst "proxy_delay"; arp_process queues it with
	// pneigh_enqueue unless it is 0), and after a failover both gateways
	// ask anew (Set flushes the addresses learned behind the old one).
	//
	// IPv6 inside the cable resolves its next hops (Peer.NextHops) by
	// neighbour discovery, and the kernel sends no neighbour solicitation
	// from a device until its link-local address has passed duplicate
	// address detection (ndisc_send_ns takes a non-tentative link-local
	// as the source or sends nothing): 1–2 s after the device comes up,
	// which was all of a VXLAN failover's gap over IPv6 (2046–2083 ms in
	// 16 of 16 kills, make bench-dataplane). The link-local is derived
	// from the device's random MAC, alone on a point-to-multipoint cable:
	// no DAD (accept_dad 0, set before the device goes up, when DAD would
	// start). Without IPv6 on the node the IPv6 settings do not exist and
	// are not needed.
	//
	// A solicitation sent in the moments of a failover before the remote
	// gateway has moved its FDB entry to the new gateway is answered
	// towards the old one and lost; the kernel asks again only after the
	// device's retrans_time (1 s), which gave about one failover in six a
	// gap of 1.05 s (make bench-dataplane, both families). The cable asks
	// again every 100 ms, 10 times, before it gives a neighbour up (the
	// kernel: every 1 s, 3 times; ip-sysctl.rst "neigh/default/*"): a
	// sender whose remote gateway is gone hears "host unreachable" after
	// 1 s instead of 3, and its next packet asks again.
	for _, f := range []struct {
		path, value, what string
		optional          bool
	}{
		{"/proc/sys/net/ipv4/conf/" + cfg.Interface + "/proxy_arp", "1", "proxy ARP", false},
		{"/proc/sys/net/ipv4/neigh/" + cfg.Interface + "/proxy_delay", "0", "proxy ARP delay", false},
		{"/proc/sys/net/ipv4/neigh/" + cfg.Interface + "/retrans_time_ms", "100", "ARP retransmit time", false},
		{"/proc/sys/net/ipv4/neigh/" + cfg.Interface + "/mcast_solicit", "10", "ARP requests per resolution", false},
		{"/proc/sys/net/ipv6/conf/" + cfg.Interface + "/accept_dad", "0", "IPv6 duplicate address detection", true},
		{"/proc/sys/net/ipv6/neigh/" + cfg.Interface + "/retrans_time_ms", "100", "neighbour solicitation retransmit time", true},
		{"/proc/sys/net/ipv6/neigh/" + cfg.Interface + "/mcast_solicit", "10", "neighbour solicitations per resolution", true},
	} {
		if err := os.WriteFile(f.path, []byte(f.value), 0o644); err != nil && !(f.optional && errors.Is(err, fs.ErrNotExist)) {
			d.Close()
			return nil, fmt.Errorf("vxlan: %s on %s: %w", f.what, cfg.Interface, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		d.Close()
		return nil, fmt.Errorf("vxlan: bring %s up: %w", cfg.Interface, err)
	}
	return d, nil
}

// ofFamily reports whether an existing device sends over the family
// wanted (IPv6 when ipv6). The kernel does not report the family of a
// device without a local address, so it goes by the device's FDB
// entries: adopted when they are of that family, or when it has none and
// IPv4 is wanted (a device made before IPv6Underlay existed); an IPv6
// device without entries is made anew.
func ofFamily(l netlink.Link, ipv6 bool) bool {
	fdb, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return false
	}
	for _, n := range fdb {
		if a, ok := netip.AddrFromSlice(n.IP); ok {
			return a.Unmap().Is6() == ipv6
		}
	}
	return !ipv6
}

// Set keeps one FDB entry per peer and the peers' subnets routed through the
// device; entries that already match stay.
func (d *Driver) Set(_ context.Context, peers []cable.Peer) error {
	want := map[netip.Addr]bool{}
	for _, p := range peers {
		want[p.Endpoint.Addr().Unmap()] = true
	}
	cur, err := netlink.NeighList(d.link.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("vxlan: list FDB of %s: %w", d.cfg.Interface, err)
	}
	for _, n := range cur {
		if n.HardwareAddr.String() != zeroMAC.String() || n.IP == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(n.IP)
		if want[a.Unmap()] {
			delete(want, a.Unmap())
			continue
		}
		if err := netlink.NeighDel(&n); err != nil {
			return fmt.Errorf("vxlan: remove FDB entry %s: %w", n.IP, err)
		}
	}
	if len(want) > 0 {
		// A peer moved (a remote failover): the addresses behind it were
		// learned, by proxy ARP, at the old gateway's MAC. Forget them, so
		// that they are asked again and the new gateway answers.
		if err := d.flushNeighbors(); err != nil {
			return err
		}
	}
	for a := range want {
		n := &netlink.Neigh{
			LinkIndex:    d.link.Attrs().Index,
			Family:       unix.AF_BRIDGE,
			State:        netlink.NUD_PERMANENT | netlink.NUD_NOARP,
			Flags:        netlink.NTF_SELF,
			HardwareAddr: zeroMAC,
			IP:           a.AsSlice(),
		}
		if err := netlink.NeighAppend(n); err != nil {
			return fmt.Errorf("vxlan: FDB entry for %s: %w", a, err)
		}
	}
	// The zero Handle works in the current namespace, like the calls above.
	return cable.SetRoutes(&netlink.Handle{}, d.link, d.cfg.RouteTable, peers)
}

// Reconfigure changes the open device's MTU in place. A new port, VNI,
// name, table or underlay family needs a new device: it returns
// cable.ErrReopen, having changed nothing.
func (d *Driver) Reconfigure(_ context.Context, cfg cable.Config) error {
	c := cfg
	c.MTU = d.cfg.MTU
	if c != d.cfg {
		return cable.ErrReopen
	}
	if cfg.MTU != d.cfg.MTU {
		if err := netlink.LinkSetMTU(d.link, cfg.MTU); err != nil {
			return fmt.Errorf("vxlan: MTU of %s: %w", cfg.Interface, err)
		}
	}
	d.cfg = cfg
	return nil
}

// flushNeighbors removes the learned (not permanent) neighbors of the device.
func (d *Driver) flushNeighbors() error {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := netlink.NeighList(d.link.Attrs().Index, fam)
		if err != nil {
			return fmt.Errorf("vxlan: neighbors of %s: %w", d.cfg.Interface, err)
		}
		for _, n := range ns {
			if n.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) == 0 {
				_ = netlink.NeighDel(&n)
			}
		}
	}
	return nil
}

// Close removes the device with its FDB entries and routes.
func (d *Driver) Close() error {
	if l, err := netlink.LinkByName(d.cfg.Interface); err == nil {
		return netlink.LinkDel(l)
	}
	return nil
}
