package routeagent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"strait.dev/strait/pkg/iptchain"
)

// Apply makes the node's kernel state match s. It changes only what differs,
// so calling it again with the same state changes nothing: established
// flows, neighbor entries and rule counters stay.
func Apply(s State, nodeIP netip.Addr) error {
	link, err := ensureOverlay(s, nodeIP)
	if err != nil {
		return err
	}
	if err := ensureAddrs(link, s); err != nil {
		return err
	}
	if err := ensureNeighbors(link, s.Neighbors); err != nil {
		return err
	}
	for _, t := range []int{RemoteTable, ReturnTable} {
		if err := ensureRoutes(link, t, s.Routes); err != nil {
			return err
		}
	}
	if err := ensureRules(s.Rules); err != nil {
		return err
	}
	if err := ensureSysctls(s); err != nil {
		return err
	}
	return ensureChains(s.Chains)
}

// Cleanup removes everything Apply made.
func Cleanup() error {
	var errs []error
	if l, err := netlink.LinkByName(OverlayInterface); err == nil {
		errs = append(errs, netlink.LinkDel(l))
	}
	for _, t := range []int{RemoteTable, ReturnTable} {
		errs = append(errs, ensureRoutes(nil, t, nil))
	}
	errs = append(errs, ensureRules(nil))
	for _, c := range chains(nil, nil, 0) {
		ipt, err := newIPTables(c.IPv6)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, iptchain.Remove(ipt, iptChain(c)))
	}
	return errors.Join(errs...)
}

func ensureOverlay(s State, nodeIP netip.Addr) (netlink.Link, error) {
	mac, err := net.ParseMAC(s.OverlayMAC)
	if err != nil {
		return nil, err
	}
	if cur, err := netlink.LinkByName(OverlayInterface); err == nil {
		v, ok := cur.(*netlink.Vxlan)
		if !ok || v.VxlanId != OverlayVNI || v.Port != OverlayPort || !v.SrcAddr.Equal(nodeIP.AsSlice()) {
			// Ours by name, but other settings (the node's address moved):
			// make it anew.
			if err := netlink.LinkDel(cur); err != nil {
				return nil, fmt.Errorf("replace %s: %w", OverlayInterface, err)
			}
		}
	}
	want := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: OverlayInterface, MTU: s.OverlayMTU, HardwareAddr: mac},
		VxlanId:   OverlayVNI,
		Port:      OverlayPort,
		SrcAddr:   nodeIP.AsSlice(),
		Learning:  false,
	}
	if err := netlink.LinkAdd(want); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("create %s: %w", OverlayInterface, err)
	}
	link, err := netlink.LinkByName(OverlayInterface)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", OverlayInterface, err)
	}
	if link.Attrs().MTU != s.OverlayMTU {
		if err := netlink.LinkSetMTU(link, s.OverlayMTU); err != nil {
			return nil, fmt.Errorf("MTU of %s: %w", OverlayInterface, err)
		}
	}
	if link.Attrs().HardwareAddr.String() != mac.String() {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("MAC of %s: %w", OverlayInterface, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bring %s up: %w", OverlayInterface, err)
		}
	}
	return link, nil
}

func ensureAddrs(link netlink.Link, s State) error {
	want := map[string]netip.Prefix{s.OverlayAddr.String(): s.OverlayAddr}
	for _, a := range s.SourceAddrs {
		p := netip.PrefixFrom(a, a.BitLen())
		want[p.String()] = p
	}
	cur, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", OverlayInterface, err)
	}
	for _, a := range cur {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		k := netip.PrefixFrom(ip.Unmap(), ones).String()
		if _, ok := want[k]; ok {
			delete(want, k)
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove %s from %s: %w", k, OverlayInterface, err)
		}
	}
	for _, p := range want {
		// The address itself, not the network: ipNet would mask it.
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if err := netlink.AddrAdd(link, addr); err != nil && !os.IsExist(err) {
			return fmt.Errorf("add %s to %s: %w", p, OverlayInterface, err)
		}
	}
	return nil
}

// ensureNeighbors keeps one permanent neighbor and one FDB entry per wanted
// node: the overlay never asks (no ARP, no flooding).
func ensureNeighbors(link netlink.Link, want []Neighbor) error {
	idx := link.Attrs().Index
	wantN := map[string]Neighbor{}
	wantF := map[string]Neighbor{}
	for _, n := range want {
		wantN[n.IP.String()+"/"+n.MAC] = n
		wantF[n.MAC+"/"+n.Remote.String()] = n
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		cur, err := netlink.NeighList(idx, fam)
		if err != nil {
			return fmt.Errorf("neighbors of %s: %w", OverlayInterface, err)
		}
		for _, n := range cur {
			ip, _ := netip.AddrFromSlice(n.IP)
			k := ip.Unmap().String() + "/" + n.HardwareAddr.String()
			if _, ok := wantN[k]; ok && n.State&netlink.NUD_PERMANENT != 0 {
				delete(wantN, k)
				continue
			}
			if ip.IsLinkLocalMulticast() || ip.IsMulticast() {
				continue
			}
			_ = netlink.NeighDel(&n)
		}
	}
	cur, err := netlink.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("FDB of %s: %w", OverlayInterface, err)
	}
	for _, n := range cur {
		if n.IP == nil {
			continue // the device's own entries
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		k := n.HardwareAddr.String() + "/" + ip.Unmap().String()
		if _, ok := wantF[k]; ok {
			delete(wantF, k)
			continue
		}
		if err := netlink.NeighDel(&n); err != nil {
			return fmt.Errorf("remove FDB entry %s: %w", k, err)
		}
	}
	for _, n := range wantN {
		mac, _ := net.ParseMAC(n.MAC)
		nb := &netlink.Neigh{LinkIndex: idx, Family: family(n.IP), State: netlink.NUD_PERMANENT, IP: n.IP.AsSlice(), HardwareAddr: mac}
		if err := netlink.NeighSet(nb); err != nil {
			return fmt.Errorf("neighbor %s: %w", n.IP, err)
		}
	}
	for _, n := range wantF {
		mac, _ := net.ParseMAC(n.MAC)
		fdb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT | netlink.NUD_NOARP,
			Flags: netlink.NTF_SELF, HardwareAddr: mac, IP: n.Remote.AsSlice()}
		if err := netlink.NeighAppend(fdb); err != nil && !os.IsExist(err) {
			return fmt.Errorf("FDB entry %s: %w", n.MAC, err)
		}
	}
	return nil
}

// ensureRoutes keeps table holding exactly the wanted routes of that table.
// link is nil when cleaning up.
func ensureRoutes(link netlink.Link, table int, routes []Route) error {
	want := map[string]Route{}
	for _, r := range routes {
		if r.Table == table {
			want[routeKey(r)] = r
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		cur, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("routes of table %d: %w", table, err)
		}
		for _, r := range cur {
			k := routeKey(fromNetlink(r))
			if _, ok := want[k]; ok && (link == nil || r.Type == unix.RTN_UNREACHABLE || r.LinkIndex == link.Attrs().Index) {
				delete(want, k)
				continue
			}
			if err := netlink.RouteDel(&r); err != nil {
				return fmt.Errorf("remove route %v from table %d: %w", r.Dst, table, err)
			}
		}
	}
	for _, r := range want {
		nr := &netlink.Route{Table: table, Dst: ipNet(r.Dst), MTU: r.MTU}
		if r.Unreachable {
			nr.Type = unix.RTN_UNREACHABLE
		} else {
			nr.LinkIndex = link.Attrs().Index
			nr.Gw = r.Via.AsSlice()
			if r.Src.IsValid() {
				nr.Src = r.Src.AsSlice()
			}
		}
		if err := netlink.RouteReplace(nr); err != nil {
			return fmt.Errorf("route %s in table %d: %w", r.Dst, table, err)
		}
	}
	return nil
}

func fromNetlink(r netlink.Route) Route {
	out := Route{Table: r.Table, MTU: r.MTU, Unreachable: r.Type == unix.RTN_UNREACHABLE}
	if r.Dst != nil {
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		out.Dst = netip.PrefixFrom(a.Unmap(), ones)
	}
	if r.Gw != nil {
		out.Via, _ = netip.AddrFromSlice(r.Gw)
		out.Via = out.Via.Unmap()
	}
	if r.Src != nil {
		out.Src, _ = netip.AddrFromSlice(r.Src)
		out.Src = out.Src.Unmap()
	}
	return out
}

func routeKey(r Route) string {
	if r.Unreachable {
		return fmt.Sprintf("unreachable %s", r.Dst)
	}
	return fmt.Sprintf("%s via %s src %s mtu %d", r.Dst, r.Via, r.Src, r.MTU)
}

// ensureRules keeps exactly the wanted rules at our priorities.
func ensureRules(rules []Rule) error {
	want := map[string]Rule{}
	for _, r := range rules {
		want[ruleKey(r)] = r
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		cur, err := netlink.RuleList(fam)
		if err != nil {
			return fmt.Errorf("list rules: %w", err)
		}
		for _, r := range cur {
			if r.Priority != RemotePrio && r.Priority != ReturnPrio {
				continue
			}
			k := ruleKey(Rule{Priority: r.Priority, IIF: r.IifName, Table: r.Table, Dst: prefixOf(r.Dst)})
			if _, ok := want[k]; ok {
				delete(want, k)
				continue
			}
			if err := netlink.RuleDel(&r); err != nil {
				return fmt.Errorf("remove rule %s: %w", k, err)
			}
		}
	}
	for _, r := range want {
		nr := netlink.NewRule()
		nr.Priority, nr.Table = r.Priority, r.Table
		nr.Family = netlink.FAMILY_V4
		if r.IIF != "" {
			nr.IifName = r.IIF
		} else {
			nr.Dst = ipNet(r.Dst)
			if r.Dst.Addr().Is6() {
				nr.Family = netlink.FAMILY_V6
			}
		}
		if err := netlink.RuleAdd(nr); err != nil {
			return fmt.Errorf("add rule %s: %w", ruleKey(r), err)
		}
	}
	return nil
}

func ruleKey(r Rule) string {
	if r.IIF != "" {
		return fmt.Sprintf("%d iif %s lookup %d", r.Priority, r.IIF, r.Table)
	}
	return fmt.Sprintf("%d to %s lookup %d", r.Priority, r.Dst, r.Table)
}

// ensureSysctls turns on forwarding and loose reverse-path filtering on our
// devices that need it.
func ensureSysctls(s State) error {
	set := func(path, v string) error {
		if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == v {
			return nil
		}
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", path, err)
		}
		return nil
	}
	if err := set("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	for _, d := range s.LooseRPFilter {
		if err := set("/proc/sys/net/ipv4/conf/"+d+"/rp_filter", "2"); err != nil {
			return err
		}
	}
	return nil
}

func ensureChains(cs []ChainRules) error {
	for _, c := range cs {
		ipt, err := newIPTables(c.IPv6)
		if err != nil {
			return err
		}
		if err := iptchain.Ensure(ipt, iptChain(c)); err != nil {
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

func iptChain(c ChainRules) iptchain.Chain {
	return iptchain.Chain{Table: c.Table, Name: c.Name, From: c.From, Comment: jumpComment, Rules: c.Rules}
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

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
