package routeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	pmtu "strait.dev/strait/pkg/mtu"
	"strait.dev/strait/pkg/nodenet"
)

// The names and numbers the agent uses, declared in nodenet (which says
// why each value).
const (
	// OverlayInterface is the overlay device on every node.
	OverlayInterface = nodenet.OverlayDevice
	// OverlayVNI and OverlayPort are the overlay's VXLAN identity.
	OverlayVNI  = nodenet.OverlayVNI
	OverlayPort = nodenet.OverlayPort
	// RemoteTable and RemotePrio route remote subnets (nodenet.RemoteTable).
	RemoteTable = nodenet.RemoteTable
	RemotePrio  = nodenet.RemotePriority
	// ReturnTable and ReturnPrio route cable traffic back to other nodes'
	// pods on the active gateway (nodenet.ReturnTable).
	ReturnTable = nodenet.ReturnTable
	ReturnPrio  = nodenet.ReturnPriority
	// CableInterface is the gateway's cable device.
	CableInterface = nodenet.CableDevice
)

// Node is one node of the local cluster as the agent needs it.
type Node struct {
	Name     string
	IP       netip.Addr     // InternalIP: the overlay's underlay address
	PodCIDRs []netip.Prefix // the node's share of the pod network
}

// Facts are everything the desired state follows from.
type Facts struct {
	Self Node
	// Nodes are all nodes of the cluster, Self included.
	Nodes []Node
	// Active is the active gateway's node name; empty when there is none.
	Active string
	// Cable is the cluster's cable driver: "wireguard" or "vxlan".
	Cable string
	// Local are the cluster's own pod and service CIDRs.
	Local []netip.Prefix
	// Remote are the subnets routed to other clusters: each one's
	// RemoteSubnets (its global CIDRs, else its pod and service CIDRs).
	Remote []netip.Prefix
	// UnderlayMTU is the MTU of the node network.
	UnderlayMTU int
	// PathMTU is, per remote subnet (masked), the path MTU of the cable to
	// the subnet's cluster in bytes (IP header included), as the active
	// gateway's Gateway status gives it (measured or overridden). Routes
	// and the TCP MSS clamp to that subnet are sized to it, never above
	// the figure the local network gives (UnderlayMTU less the overlay's
	// and the cable's overhead); a subnet without one gets that figure.
	PathMTU map[netip.Prefix]int
	// MasqueradeBit is the bit of the packet mark kube-proxy sets on
	// packets it will masquerade (its --iptables-masquerade-bit, or
	// iptables.masqueradeBit / nftables.masqueradeBit in its configuration
	// file; 0 to 31); nil is its default, DefaultMasqueradeBit.
	MasqueradeBit *int
	// Families are the node's address families (nodenet.Kernel.Families);
	// nil is both. Remote and local subnets of a family the node lacks are
	// left out: it can neither route nor filter them, and a state wanting
	// them would not apply.
	Families []nodenet.Family
}

// RemoteSubnets are the subnets routed to remote cluster c
// (docs/globalnet.md, "Routing"): its global CIDRs when it has any (it
// uses Globalnet, and its pod and Service CIDRs may equal this cluster's),
// else its pod and Service CIDRs. CIDRs that do not parse are left out.
func RemoteSubnets(c v1.ClusterSpec) []netip.Prefix {
	cidrs := c.GlobalCIDRs
	if len(cidrs) == 0 {
		cidrs = append(append([]v1.CIDR(nil), c.PodCIDRs...), c.ServiceCIDRs...)
	}
	var out []netip.Prefix
	for _, s := range cidrs {
		if p, err := netip.ParsePrefix(string(s)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Compute returns the state node f.Self should have: a pure function of the
// facts, whatever order they were listed in. It fails for a node without an
// address.
func Compute(f Facts) (nodenet.State, error) {
	if !f.Self.IP.IsValid() {
		return nodenet.State{}, fmt.Errorf("node %s has no address", f.Self.Name)
	}
	mtu := f.UnderlayMTU
	if mtu == 0 {
		mtu = 1500
	}
	fam := nodenet.FamilyOf(f.Self.IP)
	overlay := nodenet.Link{
		Name: OverlayInterface, VNI: OverlayVNI, Port: OverlayPort, Local: f.Self.IP,
		MTU: mtu - overlayOverhead(f.Self.IP),
		MAC: overlayMAC(f.Self.IP),
	}
	s := nodenet.State{
		Links: []nodenet.Link{overlay},
		Addrs: []nodenet.Addr{{Dev: OverlayInterface, Prefix: overlayPrefix(f.Self.IP, fam)}},
		// Forwarding: the overlay and the cable carry other nodes' traffic.
		Sysctls: []nodenet.Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}},
	}
	// The path of cross-cluster packets: the overlay to the gateway, then the
	// cable, as the gateway sizes it.
	pathMTU := min(overlay.MTU, pmtu.Cable(f.Cable, mtu))
	// Per remote subnet: narrower where the gateway found the path to its
	// cluster narrower.
	pathTo := func(d netip.Prefix) int {
		if m := f.PathMTU[d.Masked()]; m > 0 {
			return min(pathMTU, m)
		}
		return pathMTU
	}
	// The node's own pod-network addresses go on the overlay device too:
	// the sources of host-network traffic to other clusters.
	src := map[nodenet.Family]netip.Addr{}
	for _, p := range canonical(f.Self.PodCIDRs) {
		a := p.Addr().Next()
		s.Addrs = append(s.Addrs, nodenet.HostAddr(OverlayInterface, a))
		if _, ok := src[nodenet.FamilyOf(a)]; !ok {
			src[nodenet.FamilyOf(a)] = a
		}
	}
	byName := map[string]Node{}
	for _, n := range f.Nodes {
		byName[n.Name] = n
	}
	active, haveActive := byName[f.Active]
	remote := onNode(canonical(f.Remote), f.Families)
	families := map[nodenet.Family]bool{}
	for _, d := range remote {
		families[nodenet.FamilyOf(d.Addr())] = true
	}
	if families[nodenet.IPv6] {
		s.Sysctls = append(s.Sysctls, nodenet.Sysctl{Key: "net.ipv6.conf.all.forwarding", Value: "1"})
	}
	// The inner families the overlay carries: the node network's, and
	// every family of the remote subnets (a dual-stack cluster on a
	// single-family node network). Each has an overlay address per node,
	// all on the one VXLAN device, whose FDB maps MACs to underlay
	// addresses of the node network's family.
	inner := []nodenet.Family{}
	for _, x := range nodenet.Families {
		if x == fam || families[x] {
			inner = append(inner, x)
		}
	}
	for _, x := range inner {
		if x != fam {
			s.Addrs = append(s.Addrs, nodenet.Addr{Dev: OverlayInterface, Prefix: overlayPrefix(f.Self.IP, x)})
		}
	}
	// neighs are node n's permanent overlay neighbours, one per inner
	// family, all with its one MAC.
	neighs := func(n netip.Addr) {
		for _, x := range inner {
			s.Neighs = append(s.Neighs, nodenet.Neigh{Dev: OverlayInterface, IP: overlayAddr(n, x), MAC: overlayMAC(n)})
		}
	}
	unreachable := func(d netip.Prefix) {
		s.Routes = append(s.Routes, nodenet.Route{Table: RemoteTable, Dst: d, Unreachable: true})
		s.Rules = append(s.Rules, nodenet.Rule{Priority: RemotePrio, Dst: d, Table: RemoteTable})
	}
	switch {
	case haveActive && f.Active == f.Self.Name:
		// The active gateway: remote subnets go to the cable (the gateway's
		// rules come first); should they not, nowhere.
		for _, d := range remote {
			unreachable(d)
		}
		// What arrives from the cable for another node's pods goes back
		// through the overlay, in each inner family.
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			n := byName[name]
			if name == f.Self.Name || !n.IP.IsValid() || nodenet.FamilyOf(n.IP) != fam {
				continue
			}
			for _, p := range canonical(n.PodCIDRs) {
				if x := nodenet.FamilyOf(p.Addr()); slices.Contains(inner, x) {
					s.Routes = append(s.Routes, nodenet.Route{Table: ReturnTable, Dst: p, Via: overlayAddr(n.IP, x), Dev: OverlayInterface, MTU: pathMTU})
				}
			}
			neighs(n.IP)
			s.FDB = append(s.FDB, nodenet.FDBEntry{Dev: OverlayInterface, MAC: overlayMAC(n.IP), Dst: n.IP})
		}
		for _, f := range nodenet.Families {
			if families[f] {
				s.Rules = append(s.Rules, nodenet.Rule{Priority: ReturnPrio, Family: f, IIF: CableInterface, Table: ReturnTable})
			}
		}
		// Replies arrive on another device than requests leave by. IPv6 has
		// no reverse-path sysctl (its filtering is netfilter's rpfilter).
		s.Sysctls = append(s.Sysctls, nodenet.Sysctl{Key: "net.ipv4.conf." + OverlayInterface + ".rp_filter", Value: "2"})
	case haveActive && active.IP.IsValid() && nodenet.FamilyOf(active.IP) == fam:
		// Every remote subnet goes via the active gateway's overlay
		// address of its family (inner holds every remote family).
		for _, d := range remote {
			x := nodenet.FamilyOf(d.Addr())
			s.Routes = append(s.Routes, nodenet.Route{Table: RemoteTable, Dst: d, Via: overlayAddr(active.IP, x), Dev: OverlayInterface, Src: src[x], MTU: pathTo(d)})
			s.Rules = append(s.Rules, nodenet.Rule{Priority: RemotePrio, Dst: d, Table: RemoteTable})
		}
		if len(remote) > 0 {
			neighs(active.IP)
			s.FDB = append(s.FDB, nodenet.FDBEntry{Dev: OverlayInterface, MAC: overlayMAC(active.IP), Dst: active.IP})
		}
	default:
		// No active gateway (yet): remote traffic has nowhere to go, and
		// must not take the default route.
		for _, d := range remote {
			unreachable(d)
		}
	}
	bit := DefaultMasqueradeBit
	if f.MasqueradeBit != nil {
		bit = *f.MasqueradeBit
	}
	if err := ValidateMasqueradeBit(bit); err != nil {
		return nodenet.State{}, err
	}
	mark := uint32(1) << bit
	s.Chains = chains(remote, onNode(canonical(f.Local), f.Families), pathTo, mark)
	return s, nil
}

// DefaultMasqueradeBit is kube-proxy's default masquerade bit (its
// --iptables-masquerade-bit, and iptables.masqueradeBit and
// nftables.masqueradeBit in its configuration file): the mark 0x4000,
// nodenet.KubeProxyMasqueradeMark. Clusters whose kube-proxy uses another
// bit configure it (Config.MasqueradeBit).
const DefaultMasqueradeBit = 14

// ValidateMasqueradeBit reports a masquerade bit outside kube-proxy's
// range, 0 to 31 (a bit of the 32-bit packet mark).
func ValidateMasqueradeBit(bit int) error {
	if bit < 0 || bit > 31 {
		return fmt.Errorf("masquerade bit %d is out of range: kube-proxy's masquerade bit is 0 to 31 (default %d)", bit, DefaultMasqueradeBit)
	}
	return nil
}

// Scope is what the route agent owns on a node: the overlay device with its
// addresses and neighbours, tables 151 and 152 and their rule priorities,
// and its four chains per family.
func Scope() nodenet.Scope {
	return nodenet.Scope{
		Links:      []string{OverlayInterface},
		AddrDevs:   []string{OverlayInterface},
		Tables:     []nodenet.TableScope{{Table: RemoteTable}, {Table: ReturnTable}},
		Priorities: []int{RemotePrio, ReturnPrio},
		NeighDevs:  []string{OverlayInterface},
		Chains:     chains(nil, nil, nil, 0),
	}
}

// chains: no masquerade between clusters, neither ours nor kube-proxy's in
// either of its modes, forwarding allowed both ways, TCP MSS clamped to the
// path in both directions (each side's SYN advertises what it can receive,
// so both are clamped), pathTo giving each remote subnet's path MTU. Every
// chain exists, empty for a family without remote subnets. mark is
// kube-proxy's masquerade mark (1<<its bit).
func chains(remote, local []netip.Prefix, pathTo func(netip.Prefix) int, mark uint32) []nodenet.Chain {
	var out []nodenet.Chain
	for _, f := range nodenet.Families {
		c := func(table, name, from string) nodenet.Chain {
			return nodenet.Chain{Family: f, Table: table, Name: name, From: from, Comment: nodenet.RouteAgentJumpComment}
		}
		nat := c("nat", nodenet.NATChain, "POSTROUTING")
		fwd := c("filter", nodenet.ForwardChain, "FORWARD")
		mss := c("mangle", nodenet.MSSChain, "FORWARD")
		unmark := c("mangle", nodenet.UnmarkMasqChain, "POSTROUTING")
		// MARK --and-mark ~mark, as iptables-save prints it.
		unsetMark := fmt.Sprintf("0x0/%#x", mark)
		ip := pmtu.IPv4Header
		if f == nodenet.IPv6 {
			ip = pmtu.IPv6Header
		}
		for _, d := range remote {
			if nodenet.FamilyOf(d.Addr()) != f {
				continue
			}
			clamp := strconv.Itoa(pathTo(d) - ip - pmtu.TCPHeader)
			for _, l := range local {
				if nodenet.FamilyOf(l.Addr()) != f {
					continue
				}
				nat.Rules = append(nat.Rules, []string{"-s", l.String(), "-d", d.String(), "-m", "comment", "--comment", nodenet.NoMasqueradeComment, "-j", "ACCEPT"})
			}
			// Another cluster's client of a local Service keeps its address
			// too: kube-proxy would masquerade it (it is outside the cluster
			// CIDR), but the reply comes back through the active gateway,
			// which undoes the Service's DNAT, so no SNAT is needed.
			nat.Rules = append(nat.Rules, []string{"-s", d.String(), "-m", "comment", "--comment", "strait: from another cluster, keep its source", "-j", "ACCEPT"})
			// The ACCEPT above does not stop kube-proxy's nftables
			// masquerade, a base chain of its own: clear the mark it goes
			// by instead (see nodenet.UnmarkMasqChain).
			unmark.Rules = append(unmark.Rules, []string{"-s", d.String(), "-m", "comment", "--comment", "strait: from another cluster, no kube-proxy masquerade", "-j", "MARK", "--set-xmark", unsetMark})
			fwd.Rules = append(fwd.Rules,
				[]string{"-d", d.String(), "-m", "comment", "--comment", "strait: to another cluster", "-j", "ACCEPT"},
				[]string{"-s", d.String(), "-m", "comment", "--comment", "strait: from another cluster", "-j", "ACCEPT"})
			mss.Rules = append(mss.Rules,
				[]string{"-d", d.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", clamp},
				[]string{"-s", d.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", clamp})
		}
		out = append(out, nat, fwd, mss, unmark)
	}
	return out
}

// overlayOverhead is what the overlay's encapsulation adds to a packet, in
// bytes, over an underlay of node's family: the outer IP header, UDP, and
// the VXLAN header with the inner Ethernet header it carries. The overlay is
// the route agent's own VXLAN device between the nodes of one cluster, not
// a cable: no cable driver's descriptor sizes it, whichever driver the
// cluster's cable uses.
func overlayOverhead(node netip.Addr) int {
	return pmtu.IPHeader(node) + pmtu.UDPHeader + pmtu.VXLANHeader
}

// overlayAddr maps a node address to its overlay address of inner family
// fam. IPv4: 240.0.0.0/8 (reserved, never routed) plus the node's last
// three bytes. IPv6: a ULA /64 of our own plus the node's interface
// identifier (its last eight bytes; an IPv4 node's four bytes in the
// last four). Nodes of one cluster differing only in other bytes would
// collide; Compute's callers reject that (see Validate).
func overlayAddr(node netip.Addr, fam nodenet.Family) netip.Addr {
	b := node.As16()
	if node.Is4() {
		b = [16]byte{12: b[12], 13: b[13], 14: b[14], 15: b[15]}
	}
	if fam == nodenet.IPv4 {
		return netip.AddrFrom4([4]byte{240, b[13], b[14], b[15]})
	}
	o := [16]byte{0xfd, 0x53, 0x74, 0x72, 0x61, 0x69, 0x74, 0x00}
	copy(o[8:], b[8:])
	return netip.AddrFrom16(o)
}

// overlayPrefix is the node's overlay address of family fam with the
// overlay network's length: /8 for IPv4, /64 for IPv6.
func overlayPrefix(node netip.Addr, fam nodenet.Family) netip.Prefix {
	if fam == nodenet.IPv4 {
		return netip.PrefixFrom(overlayAddr(node, fam), 8)
	}
	return netip.PrefixFrom(overlayAddr(node, fam), 64)
}

// overlayMAC is a locally administered MAC derived from the node address,
// so that every node knows every other's without asking (no ARP on the
// overlay). It keeps the address's last four bytes only: IPv6 nodes whose
// overlay addresses differ (the last eight bytes) may still share a MAC,
// which Validate rejects.
func overlayMAC(node netip.Addr) string {
	b := node.AsSlice()
	t := b[len(b)-4:]
	return fmt.Sprintf("0a:53:%02x:%02x:%02x:%02x", t[0], t[1], t[2], t[3])
}

// Validate reports nodes whose overlay addresses (of either family: a
// dual-stack cluster's overlay carries both) or overlay MACs would
// collide: either would send one node's overlay traffic to the other.
func Validate(nodes []Node) error {
	seen := map[netip.Addr]string{}
	seenMAC := map[string]string{}
	for _, n := range nodes {
		if !n.IP.IsValid() {
			continue
		}
		m := overlayMAC(n.IP)
		if other, dup := seenMAC[m]; dup {
			return fmt.Errorf("nodes %s and %s map to the same overlay MAC %s", other, n.Name, m)
		}
		seenMAC[m] = n.Name
		// An IPv6 node network's nodes must differ in their last three
		// bytes too, for IPv4 overlay addresses, whether or not the
		// cluster has IPv4 pods yet.
		for _, x := range nodenet.Families {
			o := overlayAddr(n.IP, x)
			if other, dup := seen[o]; dup {
				return fmt.Errorf("nodes %s and %s map to the same overlay address %s", other, n.Name, o)
			}
			seen[o] = n.Name
		}
	}
	return nil
}

// onNode returns the prefixes of ps of the families fams, all of them when
// fams is nil.
func onNode(ps []netip.Prefix, fams []nodenet.Family) []netip.Prefix {
	if fams == nil {
		return ps
	}
	return slices.DeleteFunc(ps, func(p netip.Prefix) bool { return !slices.Contains(fams, nodenet.FamilyOf(p.Addr())) })
}

func canonical(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}
