package cable

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/pkg/nodenet"
)

// RouteHandle is the part of netlink that SetRoutes uses. *netlink.Handle
// implements it (the zero Handle works in the current namespace, like the
// package-level functions); cabletest.Netlink is its fake.
type RouteHandle interface {
	nodenet.NetlinkRouter
}

var _ RouteHandle = (*netlink.Handle)(nil)

// SetRoutes keeps one route per peer subnet through link in table, and no
// other route through link there. Drivers share it: whatever the tunnel, a
// remote subnet is a link-scope route through the cable device, except the
// IPv6 subnets of a peer with an IPv6 next hop (Peer.NextHops), which go via
// it, after a host route to it. New and
// changed routes are replaced in before stale ones are deleted
// (nodenet.SyncRoutes), so a subnet that stays is never without its route;
// routes of table through other devices are not touched.
func SetRoutes(h RouteHandle, link netlink.Link, table int, peers []Peer) error {
	name, idx := link.Attrs().Name, link.Attrs().Index
	routes := nodenet.NetlinkRoutes{
		NL: h,
		Index: func(dev string) (int, error) {
			if dev != name {
				return 0, fmt.Errorf("device %s: %w", dev, nodenet.ErrNoLink)
			}
			return idx, nil
		},
		Name: func(i int) (string, error) {
			if i != idx {
				// Another device's route: outside this scope.
				return fmt.Sprintf("if%d", i), nil
			}
			return name, nil
		},
	}
	var want []nodenet.Route
	for _, p := range peers {
		// A peer's IPv6 next hop (Peer.NextHops): a host route to it
		// through the device first, so that the routes via it are valid.
		var hop6 netip.Addr
		for _, h := range p.NextHops {
			if h.Is6() && !h.Is4In6() {
				hop6 = h
				want = append(want, nodenet.Route{Table: table, Dst: netip.PrefixFrom(h, 128), Dev: name})
				break
			}
		}
		for _, s := range p.Subnets {
			r := nodenet.Route{Table: table, Dst: s.Masked(), Dev: name}
			if s.Addr().Is6() && hop6.IsValid() {
				r.Via = hop6
			}
			want = append(want, r)
		}
	}
	if err := nodenet.SyncRoutes(routes, []nodenet.TableScope{{Table: table, Dev: name}}, want); err != nil {
		return fmt.Errorf("cable routes: %w", err)
	}
	return nil
}

// IPNets converts prefixes to the net package's form.
func IPNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, len(ps))
	for i, p := range ps {
		p = p.Masked()
		out[i] = net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	return out
}
