package cable

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// RouteHandle is the part of netlink that SetRoutes uses. *netlink.Handle
// implements it (the zero Handle works in the current namespace, like the
// package-level functions); cabletest.Netlink is its fake.
type RouteHandle interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

var _ RouteHandle = (*netlink.Handle)(nil)

// SetRoutes keeps one route per peer subnet through link in table, and no
// other route through link there. Drivers share it: whatever the tunnel, a
// remote subnet is a link-scope route through the cable device.
func SetRoutes(h RouteHandle, link netlink.Link, table int, peers []Peer) error {
	want := map[string]netip.Prefix{}
	for _, p := range peers {
		for _, s := range p.Subnets {
			want[s.Masked().String()] = s.Masked()
		}
	}
	idx := link.Attrs().Index
	var cur []netlink.Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(family, &netlink.Route{Table: table, LinkIndex: idx},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
		if err != nil {
			return fmt.Errorf("list routes: %w", err)
		}
		cur = append(cur, rs...)
	}
	have := map[string]bool{}
	for _, r := range cur {
		if r.Dst == nil {
			continue
		}
		if _, ok := want[r.Dst.String()]; !ok {
			if err := h.RouteDel(&r); err != nil {
				return fmt.Errorf("remove route %s: %w", r.Dst, err)
			}
			continue
		}
		have[r.Dst.String()] = true
	}
	for s, p := range want {
		if have[s] {
			continue
		}
		dst := IPNets([]netip.Prefix{p})[0]
		if err := h.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &dst, Table: table, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route %s: %w", s, err)
		}
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
