package cabletest

import (
	"fmt"
	"net"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Netlink is a fake of the links and routes a cable driver makes, for unit
// tests of driver logic that a real namespace cannot reach (a kernel module
// the machine lacks, a device left by a killed engine). It implements the
// drivers' netlink seams (cable.RouteHandle, wireguard.Netlink) and, like the
// kernel, deletes a link's routes with the link. String renders its state.
type Netlink struct {
	// LinkAddErr, when set, is what LinkAdd answers instead of adding
	// (syscall.EOPNOTSUPP is a kernel without the device type's module).
	LinkAddErr error
	// Log lists the calls that changed something, in order ("route replace
	// 10.1.0.0/16 table 150 dev wg0"), so a test can assert that a repeated
	// call changed nothing.
	Log []string

	mu        sync.Mutex
	links     []*fakeLink
	routes    []netlink.Route
	lastIndex int
}

type fakeLink struct {
	link netlink.Link
	wg   *wgtypes.Device // the WireGuard device on it, once a WGClient touched it
}

func (l *fakeLink) attrs() *netlink.LinkAttrs { return l.link.Attrs() }

// AddLink adds a link as if something other than the code under test had
// made it (a killed engine, the userspace device's TUN), without LinkAddErr
// or the Log. It returns the link's index.
func (n *Netlink) AddLink(l netlink.Link) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.add(l)
}

func (n *Netlink) add(l netlink.Link) int {
	n.lastIndex++
	c := clone(l)
	c.Attrs().Index = n.lastIndex
	n.links = append(n.links, &fakeLink{link: c})
	return n.lastIndex
}

// clone copies the struct behind l, so that neither the caller's value nor
// the fake's state changes behind the other's back, as across netlink.
func clone(l netlink.Link) netlink.Link {
	v := reflect.New(reflect.TypeOf(l).Elem())
	v.Elem().Set(reflect.ValueOf(l).Elem())
	return v.Interface().(netlink.Link)
}

// DelLink removes the named link (and its routes), as a TUN device goes away
// when its process closes it; it reports whether there was one.
func (n *Netlink) DelLink(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.byName(name)
	if l != nil {
		n.del(l)
	}
	return l != nil
}

func (n *Netlink) byName(name string) *fakeLink {
	for _, l := range n.links {
		if l.attrs().Name == name {
			return l
		}
	}
	return nil
}

// byIndex finds the link a call names: netlink addresses links by index,
// not by name.
func (n *Netlink) byIndex(idx int) (*fakeLink, error) {
	for _, l := range n.links {
		if l.attrs().Index == idx {
			return l, nil
		}
	}
	return nil, fmt.Errorf("link index %d: %w", idx, syscall.ENODEV)
}

func (n *Netlink) del(l *fakeLink) {
	idx := l.attrs().Index
	n.links = slices.DeleteFunc(n.links, func(x *fakeLink) bool { return x == l })
	n.routes = slices.DeleteFunc(n.routes, func(r netlink.Route) bool { return r.LinkIndex == idx })
}

func (n *Netlink) logf(format string, args ...any) {
	n.Log = append(n.Log, fmt.Sprintf(format, args...))
}

// LinkAdd adds the link, or fails with EEXIST if its name is taken.
func (n *Netlink) LinkAdd(l netlink.Link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.LinkAddErr != nil {
		return n.LinkAddErr
	}
	if n.byName(l.Attrs().Name) != nil {
		return syscall.EEXIST
	}
	n.add(l)
	n.logf("link add %s type %s", l.Attrs().Name, l.Type())
	return nil
}

// LinkByName returns a copy of the named link.
func (n *Netlink) LinkByName(name string) (netlink.Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.byName(name)
	if l == nil {
		return nil, fmt.Errorf("link %s not found: %w", name, syscall.ENODEV)
	}
	return clone(l.link), nil
}

// LinkSetMTU sets the link's MTU.
func (n *Netlink) LinkSetMTU(l netlink.Link, mtu int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	fl, err := n.byIndex(l.Attrs().Index)
	if err != nil {
		return err
	}
	if fl.attrs().MTU != mtu {
		fl.attrs().MTU = mtu
		n.logf("link set %s mtu %d", fl.attrs().Name, mtu)
	}
	return nil
}

// LinkSetUp brings the link up.
func (n *Netlink) LinkSetUp(l netlink.Link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	fl, err := n.byIndex(l.Attrs().Index)
	if err != nil {
		return err
	}
	if fl.attrs().Flags&net.FlagUp == 0 {
		fl.attrs().Flags |= net.FlagUp
		n.logf("link set %s up", fl.attrs().Name)
	}
	return nil
}

// LinkDel deletes the link and its routes.
func (n *Netlink) LinkDel(l netlink.Link) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	fl, err := n.byIndex(l.Attrs().Index)
	if err != nil {
		return err
	}
	n.del(fl)
	n.logf("link del %s", fl.attrs().Name)
	return nil
}

// RouteListFiltered lists routes as netlink does: of one family, from the
// main table unless RT_FILTER_TABLE is set, filtered by table and link. Other
// filters are not faked and fail the call rather than be ignored.
func (n *Netlink) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	if mask&^(netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF) != 0 {
		return nil, fmt.Errorf("cabletest: route filter %#x not faked", mask)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []netlink.Route
	for _, r := range n.routes {
		switch {
		case family != netlink.FAMILY_ALL && routeFamily(r) != family:
		case mask&netlink.RT_FILTER_TABLE == 0 && r.Table != unix.RT_TABLE_MAIN:
		case mask&netlink.RT_FILTER_TABLE != 0 && filter.Table != unix.RT_TABLE_UNSPEC && r.Table != filter.Table:
		case mask&netlink.RT_FILTER_OIF != 0 && r.LinkIndex != filter.LinkIndex:
		default:
			out = append(out, r)
		}
	}
	return out, nil
}

func routeFamily(r netlink.Route) int {
	if r.Dst.IP.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// RouteReplace adds the route or replaces the one to the same destination in
// the same table.
func (n *Netlink) RouteReplace(r *netlink.Route) error {
	if r.Dst == nil {
		return fmt.Errorf("cabletest: routes without a destination are not faked")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.byIndex(r.LinkIndex); err != nil {
		return err
	}
	c := *r
	if c.Table == unix.RT_TABLE_UNSPEC {
		c.Table = unix.RT_TABLE_MAIN
	}
	n.routes = slices.DeleteFunc(n.routes, func(x netlink.Route) bool { return sameRoute(x, c) })
	n.routes = append(n.routes, c)
	n.logf("route replace %s", n.routeString(c))
	return nil
}

// RouteDel deletes the route to the destination in the table (through the
// link, if given), or fails with ESRCH as the kernel does.
func (n *Netlink) RouteDel(r *netlink.Route) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := *r
	if c.Table == unix.RT_TABLE_UNSPEC {
		c.Table = unix.RT_TABLE_MAIN
	}
	for i, x := range n.routes {
		if sameRoute(x, c) && (c.LinkIndex == 0 || x.LinkIndex == c.LinkIndex) {
			n.routes = slices.Delete(n.routes, i, i+1)
			n.logf("route del %s", n.routeString(x))
			return nil
		}
	}
	return syscall.ESRCH
}

func sameRoute(a, b netlink.Route) bool {
	return a.Table == b.Table && a.Dst != nil && b.Dst != nil && a.Dst.String() == b.Dst.String()
}

func (n *Netlink) routeString(r netlink.Route) string {
	dev := fmt.Sprintf("if%d", r.LinkIndex)
	if l, err := n.byIndex(r.LinkIndex); err == nil {
		dev = l.attrs().Name
	}
	if r.Gw != nil {
		dev += " via " + r.Gw.String()
	}
	return fmt.Sprintf("%s table %d dev %s scope %s", r.Dst, r.Table, dev, r.Scope)
}

// String renders the whole state in the spirit of `ip link`, `wg show` and
// `ip route show table all`, each link (by index) with its WireGuard device
// and its routes (by table, then destination):
//
//	link 2: wg0 wireguard mtu 1420 up
//	  wg public-key … listen-port 51820
//	  wg peer … endpoint 192.0.2.2:51820 allowed-ips 10.1.0.0/16 keepalive 25s
//	  route 10.1.0.0/16 table 150 scope link
func (n *Netlink) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	links := slices.Clone(n.links)
	sort.Slice(links, func(i, j int) bool { return links[i].attrs().Index < links[j].attrs().Index })
	for _, l := range links {
		a := l.attrs()
		state := "down"
		if a.Flags&net.FlagUp != 0 {
			state = "up"
		}
		fmt.Fprintf(&b, "link %d: %s %s mtu %d %s\n", a.Index, a.Name, l.link.Type(), a.MTU, state)
		if l.wg != nil {
			writeDevice(&b, l.wg)
		}
		var routes []netlink.Route
		for _, r := range n.routes {
			if r.LinkIndex == a.Index {
				routes = append(routes, r)
			}
		}
		sort.Slice(routes, func(i, j int) bool {
			if routes[i].Table != routes[j].Table {
				return routes[i].Table < routes[j].Table
			}
			return routes[i].Dst.String() < routes[j].Dst.String()
		})
		for _, r := range routes {
			fmt.Fprintf(&b, "  route %s table %d scope %s\n", r.Dst, r.Table, r.Scope)
		}
	}
	return b.String()
}
