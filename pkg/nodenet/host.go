package nodenet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host returns the real Kernel of the current network namespace: netlink,
// /proc/sys, and the iptables-save/iptables-restore binaries (and their ip6
// twins) of the iptables package.
func Host() Kernel {
	fams := nodeFamilies()
	return &host{NetlinkRoutes: NetlinkRoutes{NL: &netlink.Handle{}, Families: fams}, nl: &netlink.Handle{}, fams: fams}
}

// nodeFamilies are the node's address families, detected once: a kernel
// booted without IPv6 and the iptables package do not change while we run.
var nodeFamilies = sync.OnceValue(func() []Family {
	return detectFamilies(func(domain int) error {
		fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}, exec.LookPath)
})

// detectFamilies returns the families for which socket(domain) succeeds
// (EAFNOSUPPORT for IPv6 under ipv6.disable=1) and lookPath finds both
// packet-filter tools. The address family is a kernel-wide property, so the
// current namespace's answer holds for every namespace.
func detectFamilies(socket func(domain int) error, lookPath func(string) (string, error)) []Family {
	var out []Family
	for _, f := range Families {
		domain := unix.AF_INET
		if f == IPv6 {
			domain = unix.AF_INET6
		}
		if socket(domain) != nil {
			continue
		}
		if _, err := lookPath(iptablesBinary(f, "save")); err != nil {
			continue
		}
		if _, err := lookPath(iptablesBinary(f, "restore")); err != nil {
			continue
		}
		out = append(out, f)
	}
	return out
}

// HostAt returns the real Kernel of the named network namespace (as `ip
// netns` names it), for tests in throwaway namespaces. Close it when done.
func HostAt(name string) (Kernel, func(), error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	fams := nodeFamilies()
	k := &host{NetlinkRoutes: NetlinkRoutes{NL: h, Families: fams}, nl: h, ns: ns, nsName: name, fams: fams}
	return k, func() { h.Close(); ns.Close() }, nil
}

// host is the real Kernel: netlink plus exec'd iptables.
type host struct {
	NetlinkRoutes
	nl     *netlink.Handle
	ns     netns.NsHandle // with nsName; unused for the current namespace
	nsName string         // "" for the current namespace
	fams   []Family       // the node's (nodeFamilies)
}

// Families returns the node's address families, detected once per process.
func (h *host) Families() []Family { return h.fams }

var _ Kernel = (*host)(nil)

// NetlinkRouter is the part of netlink that routes need. *netlink.Handle
// implements it, and so does the cable drivers' fake (cabletest.Netlink).
type NetlinkRouter interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

// NetlinkRoutes is a RouteHandle over netlink. Devices are named in Routes
// and indexed in netlink; Index and Name translate (nil: ask the kernel of
// the current namespace).
type NetlinkRoutes struct {
	// NL reaches the routes: a *netlink.Handle, or a fake.
	NL NetlinkRouter
	// Index returns the interface index (ifindex, >0) of the named device,
	// an error wrapping ErrNoLink when there is none.
	Index func(dev string) (int, error)
	// Name returns the name of the device of interface index index.
	Name func(index int) (string, error)
	// Families are the families Routes lists (FamilyHandle.Families); nil
	// lists both. A family the kernel lacks must be left out: the kernel
	// answers a route dump of an unknown family with every family's routes.
	Families []Family
}

var _ RouteHandle = NetlinkRoutes{}

func (n NetlinkRoutes) index(dev string) (int, error) {
	if n.Index != nil {
		return n.Index(dev)
	}
	if h, ok := n.NL.(*netlink.Handle); ok {
		l, err := h.LinkByName(dev)
		if err != nil {
			return 0, linkErr(dev, err)
		}
		return l.Attrs().Index, nil
	}
	return 0, fmt.Errorf("device %s: no index function", dev)
}

func (n NetlinkRoutes) name(index int) (string, error) {
	if n.Name != nil {
		return n.Name(index)
	}
	if h, ok := n.NL.(*netlink.Handle); ok {
		l, err := h.LinkByIndex(index)
		if err != nil {
			return "", fmt.Errorf("link %d: %w", index, err)
		}
		return l.Attrs().Name, nil
	}
	return fmt.Sprintf("if%d", index), nil
}

// Routes lists table's routes of n.Families (both when nil): none, not an
// error, for a table that holds nothing.
func (n NetlinkRoutes) Routes(table int) ([]Route, error) {
	fams := n.Families
	if fams == nil {
		fams = Families
	}
	var out []Route
	for _, f := range fams {
		fam := netlinkFamily(f)
		rs, err := n.NL.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list %s routes: %w", f, err)
		}
		for _, r := range rs {
			// A fake may leave Family zero; the kernel sets it, and a dump
			// that fell back to all families is filtered here.
			if r.Dst == nil || r.Table != table || (r.Family != 0 && r.Family != fam) {
				continue
			}
			x := Route{Table: r.Table, Dst: prefixOf(r.Dst), MTU: r.MTU, Unreachable: r.Type == unix.RTN_UNREACHABLE,
				Via: addrOf(r.Gw), Src: addrOf(r.Src)}
			if fam == netlink.FAMILY_V6 && !r.MTULock {
				// Not in force for forwarded packets (see netlinkRoute):
				// reported as the device's, so a sync locks it.
				x.MTU = 0
			}
			if r.LinkIndex != 0 && !x.Unreachable {
				if x.Dev, err = n.name(r.LinkIndex); err != nil {
					return nil, err
				}
			}
			out = append(out, x)
		}
	}
	return out, nil
}

// netlinkFamily is f as netlink numbers it (AF_INET, AF_INET6).
func netlinkFamily(f Family) int {
	if f == IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

func (n NetlinkRoutes) netlinkRoute(r Route) (*netlink.Route, error) {
	nr := &netlink.Route{Table: r.Table, Dst: ipNet(r.Dst), MTU: r.MTU, Family: netlinkFamily(r.Family())}
	// IPv6 forwarding checks a packet against the device's MTU unless the
	// route's is locked (the kernel's ip6_dst_mtu_maybe_forward; IPv4
	// takes the route's either way), and against the route's only when
	// it comes to fragment it. Unlocked, a node answered a pod's
	// 1500-byte packet toward a 1430-byte path with a Packet Too Big of
	// the overlay device's 1450, and only the next one with 1430: each
	// sender learnt the path MTU in two steps. Locked, the route also
	// ignores Packet Too Bigs for the node's own traffic: its MTU is the
	// path's, measured by the gateways.
	nr.MTULock = r.MTU != 0 && r.Family() == IPv6
	if r.Unreachable {
		nr.Type = unix.RTN_UNREACHABLE
		return nr, nil
	}
	if r.Dev != "" {
		idx, err := n.index(r.Dev)
		if err != nil {
			return nil, err
		}
		nr.LinkIndex = idx
	}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	return nr, nil
}

// ReplaceRoute is `ip route replace`.
func (n NetlinkRoutes) ReplaceRoute(r Route) error {
	nr, err := n.netlinkRoute(r)
	if err != nil {
		return err
	}
	return n.NL.RouteReplace(nr)
}

// DelRoute is `ip route del`.
func (n NetlinkRoutes) DelRoute(r Route) error {
	nr, err := n.netlinkRoute(r)
	if err != nil {
		return err
	}
	return n.NL.RouteDel(nr)
}

func linkErr(name string, err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%s: %w", name, ErrNoLink)
	}
	return fmt.Errorf("%s: %w", name, err)
}

func (h *host) link(name string) (netlink.Link, error) {
	l, err := h.nl.LinkByName(name)
	if err != nil {
		return nil, linkErr(name, err)
	}
	return l, nil
}

// Link returns the named link.
func (h *host) Link(name string) (Link, bool, error) {
	l, err := h.link(name)
	if errors.Is(err, ErrNoLink) {
		return Link{}, false, nil
	}
	if err != nil {
		return Link{}, false, err
	}
	out := Link{Name: name, MTU: l.Attrs().MTU, MAC: l.Attrs().HardwareAddr.String()}
	if v, ok := l.(*netlink.Vxlan); ok {
		out.VNI, out.Port = v.VxlanId, v.Port
		out.Local, _ = netip.AddrFromSlice(v.SrcAddr)
		out.Local = out.Local.Unmap()
	}
	out.Down = l.Attrs().Flags&net.FlagUp == 0
	return out, true, nil
}

// AddLink creates a VXLAN link, up.
func (h *host) AddLink(l Link) error {
	mac, err := net.ParseMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("MAC %q: %w", l.MAC, err)
	}
	v := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: l.Name, MTU: l.MTU, HardwareAddr: mac},
		VxlanId:   l.VNI,
		Port:      l.Port,
		SrcAddr:   l.Local.AsSlice(),
		Learning:  false,
	}
	if err := h.nl.LinkAdd(v); err != nil {
		return err
	}
	return h.SetLink(l)
}

// SetLink sets an existing link's MTU and MAC and brings it up.
func (h *host) SetLink(l Link) error {
	cur, err := h.link(l.Name)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(l.MAC)
	if err != nil {
		return fmt.Errorf("MAC %q: %w", l.MAC, err)
	}
	if cur.Attrs().MTU != l.MTU {
		if err := h.nl.LinkSetMTU(cur, l.MTU); err != nil {
			return fmt.Errorf("MTU: %w", err)
		}
	}
	if cur.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.nl.LinkSetHardwareAddr(cur, mac); err != nil {
			return fmt.Errorf("MAC: %w", err)
		}
	}
	if cur.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(cur); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	return nil
}

// DelLink deletes the named link.
func (h *host) DelLink(name string) error {
	l, err := h.link(name)
	if err != nil {
		return err
	}
	return h.nl.LinkDel(l)
}

// Addrs lists dev's addresses but IPv6 link-local ones.
func (h *host) Addrs(dev string) ([]Addr, error) {
	l, err := h.link(dev)
	if err != nil {
		return nil, err
	}
	as, err := h.nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []Addr
	for _, a := range as {
		ip := addrOf(a.IP)
		if ip.Is6() && ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, Addr{Dev: dev, Prefix: netip.PrefixFrom(ip, ones)})
	}
	return out, nil
}

func (h *host) netlinkAddr(a Addr) (netlink.Link, *netlink.Addr, error) {
	l, err := h.link(a.Dev)
	if err != nil {
		return nil, nil, err
	}
	// The address itself, not the network: ipNet would mask it.
	p := a.Prefix
	na := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if FamilyOf(p.Addr()) == IPv6 {
		// No duplicate address detection: our addresses are unique by
		// construction (derived from the node's), and while DAD runs
		// (a second or more) the address is tentative and the kernel refuses
		// routes with it as their source, so Apply would fail.
		na.Flags |= unix.IFA_F_NODAD
	}
	return l, na, nil
}

// AddAddr is `ip addr replace`, with nodad for an IPv6 address.
func (h *host) AddAddr(a Addr) error {
	l, na, err := h.netlinkAddr(a)
	if err != nil {
		return err
	}
	return h.nl.AddrReplace(l, na)
}

// DelAddr is `ip addr del`.
func (h *host) DelAddr(a Addr) error {
	l, na, err := h.netlinkAddr(a)
	if err != nil {
		return err
	}
	return h.nl.AddrDel(l, na)
}

// Rules lists family f's rules.
func (h *host) Rules(f Family) ([]Rule, error) {
	rs, err := h.nl.RuleList(netlinkFamily(f))
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		out = append(out, Rule{Priority: r.Priority, Family: f, Dst: prefixOf(r.Dst), IIF: r.IifName, Table: r.Table})
	}
	return out, nil
}

func netlinkRule(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Priority, nr.Table = r.Priority, r.Table
	nr.Family = netlink.FAMILY_V4
	if r.family() == IPv6 {
		nr.Family = netlink.FAMILY_V6
	}
	if r.IIF != "" {
		nr.IifName = r.IIF
	}
	if r.Dst.IsValid() {
		nr.Dst = ipNet(r.Dst)
	}
	return nr
}

// AddRule is `ip rule add`.
func (h *host) AddRule(r Rule) error { return h.nl.RuleAdd(netlinkRule(r)) }

// DelRule is `ip rule del` with every selector of r.
func (h *host) DelRule(r Rule) error { return h.nl.RuleDel(netlinkRule(r)) }

// Neighs lists dev's permanent and proxy neighbours, both families.
func (h *host) Neighs(dev string) ([]Neigh, error) {
	l, err := h.link(dev)
	if err != nil {
		return nil, err
	}
	var out []Neigh
	for _, f := range h.fams {
		fam := netlinkFamily(f)
		ns, err := h.nl.NeighList(l.Attrs().Index, fam)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			if n.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			out = append(out, Neigh{Dev: dev, IP: addrOf(n.IP), MAC: n.HardwareAddr.String()})
		}
		ps, err := h.nl.NeighProxyList(l.Attrs().Index, fam)
		if err != nil {
			return nil, err
		}
		for _, n := range ps {
			out = append(out, Neigh{Dev: dev, IP: addrOf(n.IP), Proxy: true})
		}
	}
	return out, nil
}

func (h *host) netlinkNeigh(n Neigh) (*netlink.Neigh, error) {
	l, err := h.link(n.Dev)
	if err != nil {
		return nil, err
	}
	nn := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, IP: n.IP.AsSlice(), State: netlink.NUD_PERMANENT}
	if FamilyOf(n.IP) == IPv6 {
		nn.Family = netlink.FAMILY_V6
	}
	if n.Proxy {
		nn.Flags = netlink.NTF_PROXY
		nn.State = 0
		return nn, nil
	}
	if nn.HardwareAddr, err = net.ParseMAC(n.MAC); err != nil {
		return nil, fmt.Errorf("MAC %q: %w", n.MAC, err)
	}
	return nn, nil
}

// SetNeigh is `ip neigh replace ... nud permanent` (or `ip neigh add proxy`).
func (h *host) SetNeigh(n Neigh) error {
	nn, err := h.netlinkNeigh(n)
	if err != nil {
		return err
	}
	return h.nl.NeighSet(nn)
}

// DelNeigh is `ip neigh del`.
func (h *host) DelNeigh(n Neigh) error {
	nn, err := h.netlinkNeigh(n)
	if err != nil {
		return err
	}
	return h.nl.NeighDel(nn)
}

// FDB lists dev's FDB entries that have a destination.
func (h *host) FDB(dev string) ([]FDBEntry, error) {
	l, err := h.link(dev)
	if err != nil {
		return nil, err
	}
	ns, err := h.nl.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, err
	}
	var out []FDBEntry
	for _, n := range ns {
		if n.IP == nil {
			continue // the device's own entries
		}
		out = append(out, FDBEntry{Dev: dev, MAC: n.HardwareAddr.String(), Dst: addrOf(n.IP)})
	}
	return out, nil
}

func (h *host) netlinkFDB(e FDBEntry) (*netlink.Neigh, error) {
	l, err := h.link(e.Dev)
	if err != nil {
		return nil, err
	}
	mac, err := net.ParseMAC(e.MAC)
	if err != nil {
		return nil, fmt.Errorf("MAC %q: %w", e.MAC, err)
	}
	return &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT | netlink.NUD_NOARP,
		Flags: netlink.NTF_SELF, HardwareAddr: mac, IP: e.Dst.AsSlice()}, nil
}

// AppendFDB is `bridge fdb append`.
func (h *host) AppendFDB(e FDBEntry) error {
	n, err := h.netlinkFDB(e)
	if err != nil {
		return err
	}
	return h.nl.NeighAppend(n)
}

// DelFDB is `bridge fdb del`.
func (h *host) DelFDB(e FDBEntry) error {
	n, err := h.netlinkFDB(e)
	if err != nil {
		return err
	}
	return h.nl.NeighDel(n)
}

// inNS runs f on a thread in the handle's namespace: /proc/sys/net resolves
// by the namespace of the thread that opens it.
func (h *host) inNS(f func() error) error {
	if h.nsName == "" {
		return f()
	}
	return InNamespace(h.ns, f)
}

// InNetns runs f on an OS thread switched into the named network namespace
// (one "ip netns add" made, /run/netns/<name>): sockets f opens live there,
// and commands it starts run there. Errors: the namespace cannot be opened
// or entered, or f's.
func InNetns(name string, f func() error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	return InNamespace(ns, f)
}

// InNamespace runs f on an OS thread switched into network namespace ns,
// and switches the thread back after. Errors: the thread's own namespace
// cannot be read, ns cannot be entered, or f's. A thread that cannot be
// switched back is never reused: it stays locked, and Go retires it with
// the goroutine.
func InNamespace(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer func() {
		if netns.Set(orig) != nil {
			runtime.LockOSThread() // never reuse a thread left in ns
		}
	}()
	return f()
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// GetSysctl reads /proc/sys. Keys with a dot in a device name are not
// supported (our devices have none).
func (h *host) GetSysctl(key string) (string, error) {
	var v []byte
	err := h.inNS(func() (err error) {
		v, err = os.ReadFile(sysctlPath(key))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

// SetSysctl writes /proc/sys.
func (h *host) SetSysctl(key, value string) error {
	return h.inNS(func() error { return os.WriteFile(sysctlPath(key), []byte(value), 0o644) })
}

func (h *host) command(name string, args ...string) *exec.Cmd {
	if h.nsName != "" {
		return exec.Command("ip", append([]string{"netns", "exec", h.nsName, name}, args...)...)
	}
	return exec.Command(name, args...)
}

func iptablesBinary(f Family, what string) string {
	if f == IPv6 {
		return "ip6tables-" + what
	}
	return "iptables-" + what
}

// Save runs iptables-save -t table.
func (h *host) Save(f Family, table string) (string, error) {
	cmd := h.command(iptablesBinary(f, "save"), "-t", table)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", cmd, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

// Restore runs iptables-restore --noflush with script on stdin: one
// atomic commit. -w waits for the xtables lock (legacy iptables).
func (h *host) Restore(f Family, script string) error {
	cmd := h.command(iptablesBinary(f, "restore"), "--noflush", "-w")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s\ninput:\n%s", cmd, err, bytes.TrimSpace(out), script)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
