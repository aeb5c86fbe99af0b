// Package routeagent keeps every node of a member cluster routing to the
// other clusters: remote pod and service CIDRs go through a VXLAN overlay to
// the cluster's active gateway node, replies come back the same way, and
// cross-cluster traffic is exempt from the pod network's masquerade, allowed
// through FORWARD and clamped to the path MTU. The agent computes the
// desired state (this file) as plain data from a handful of facts and a
// separate applier makes the kernel match it.
package routeagent

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	pmtu "strait.dev/strait/pkg/mtu"
)

const (
	// OverlayInterface is the overlay device on every node.
	OverlayInterface = "strait-overlay"
	// OverlayVNI and OverlayPort keep the overlay apart from the cable
	// (VXLAN port 4800) and from a CNI's VXLAN (4789/8472).
	OverlayVNI  = 4100
	OverlayPort = 4801
	// RemoteTable holds, on nodes that are not the active gateway, the
	// routes of remote subnets through the overlay; on the active gateway
	// it holds unreachable routes, so that remote traffic never leaks to the
	// default route while the cable is not up. The gateway's own table 150
	// (rules at 150) comes first there.
	RemoteTable = 151
	RemotePrio  = 151
	// ReturnTable holds, on the active gateway, the routes of the other
	// nodes' pod CIDRs through the overlay, for traffic that arrived from
	// the cable: replies take the path their requests took.
	ReturnTable = 152
	ReturnPrio  = 152
	// CableInterface is the gateway's cable device (gateway.CableInterface).
	CableInterface = "strait-cable"
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
	// Remote are the other clusters' pod and service CIDRs.
	Remote []netip.Prefix
	// UnderlayMTU is the MTU of the node network.
	UnderlayMTU int
}

// State is the kernel state one node should have.
type State struct {
	// Overlay device.
	OverlayMTU  int
	OverlayMAC  string
	OverlayAddr netip.Prefix
	// SourceAddrs go on the overlay device too: the node's own pod-network
	// address, the source of host-network traffic to other clusters.
	SourceAddrs []netip.Addr
	Routes      []Route
	Rules       []Rule
	// Neighbors and FDB: overlay address -> MAC -> node address.
	Neighbors []Neighbor
	Chains    []ChainRules
	// LooseRPFilter lists our devices that need loose reverse-path
	// filtering (replies arrive on another device than requests leave by).
	LooseRPFilter []string
}

// Route is a route in one of our tables.
type Route struct {
	Table       int
	Dst         netip.Prefix
	Via         netip.Addr // zero for unreachable
	Src         netip.Addr
	MTU         int
	Unreachable bool
}

// Rule is a policy routing rule of ours.
type Rule struct {
	Priority int
	Dst      netip.Prefix // zero with IIF
	IIF      string
	Table    int
}

// Neighbor is a permanent neighbor on the overlay plus its FDB entry.
type Neighbor struct {
	IP     netip.Addr
	MAC    string
	Remote netip.Addr // underlay address of the node behind MAC
}

// ChainRules is one packet-filter chain's wanted rules.
type ChainRules struct {
	IPv6  bool
	Table string
	Name  string
	From  string
	Rules [][]string
}

// Chain names and the comment on their jumps.
const (
	natChain     = "STRAIT-POSTROUTING"
	forwardChain = "STRAIT-FORWARD"
	mssChain     = "STRAIT-MSS"
	jumpComment  = "strait route agent"
)

// Compute returns the state node f.Self should have.
func Compute(f Facts) (State, error) {
	if !f.Self.IP.IsValid() {
		return State{}, fmt.Errorf("node %s has no address", f.Self.Name)
	}
	mtu := f.UnderlayMTU
	if mtu == 0 {
		mtu = 1500
	}
	s := State{
		// The overlay is VXLAN over the node network's family.
		OverlayMTU:  mtu - pmtu.Overhead("vxlan", pmtu.IPHeader(f.Self.IP)),
		OverlayMAC:  overlayMAC(f.Self.IP),
		OverlayAddr: overlayPrefix(f.Self.IP),
	}
	// The path of cross-cluster packets: the overlay to the gateway, then the
	// cable, as the gateway sizes it.
	pathMTU := min(s.OverlayMTU, pmtu.Cable(f.Cable, mtu))
	for _, p := range f.Self.PodCIDRs {
		s.SourceAddrs = append(s.SourceAddrs, p.Masked().Addr().Next())
	}
	byName := map[string]Node{}
	for _, n := range f.Nodes {
		byName[n.Name] = n
	}
	active, haveActive := byName[f.Active]
	remote := canonical(f.Remote)
	switch {
	case haveActive && f.Active == f.Self.Name:
		// The active gateway: remote subnets go to the cable (the gateway's
		// rules come first); should they not, nowhere.
		for _, d := range remote {
			s.Routes = append(s.Routes, Route{Table: RemoteTable, Dst: d, Unreachable: true})
			s.Rules = append(s.Rules, Rule{Priority: RemotePrio, Dst: d, Table: RemoteTable})
		}
		// What arrives from the cable for another node's pods goes back
		// through the overlay.
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, name := range names {
			n := byName[name]
			if name == f.Self.Name || !n.IP.IsValid() || n.IP.Is4() != f.Self.IP.Is4() {
				continue
			}
			for _, p := range n.PodCIDRs {
				s.Routes = append(s.Routes, Route{Table: ReturnTable, Dst: p.Masked(), Via: overlayAddr(n.IP), MTU: pathMTU})
			}
			s.Neighbors = append(s.Neighbors, Neighbor{IP: overlayAddr(n.IP), MAC: overlayMAC(n.IP), Remote: n.IP})
		}
		if len(remote) > 0 {
			s.Rules = append(s.Rules, Rule{Priority: ReturnPrio, IIF: CableInterface, Table: ReturnTable})
		}
		s.LooseRPFilter = []string{OverlayInterface}
	case haveActive && active.IP.IsValid() && active.IP.Is4() == f.Self.IP.Is4():
		gw := overlayAddr(active.IP)
		var src netip.Addr
		for _, a := range s.SourceAddrs {
			if a.Is4() {
				src = a
			}
		}
		for _, d := range remote {
			r := Route{Table: RemoteTable, Dst: d, Via: gw, MTU: pathMTU}
			if src.IsValid() && src.Is4() == d.Addr().Is4() {
				r.Src = src
			}
			s.Routes = append(s.Routes, r)
			s.Rules = append(s.Rules, Rule{Priority: RemotePrio, Dst: d, Table: RemoteTable})
		}
		if len(remote) > 0 {
			s.Neighbors = append(s.Neighbors, Neighbor{IP: gw, MAC: overlayMAC(active.IP), Remote: active.IP})
		}
	default:
		// No active gateway (yet): remote traffic has nowhere to go, and
		// must not take the default route.
		for _, d := range remote {
			s.Routes = append(s.Routes, Route{Table: RemoteTable, Dst: d, Unreachable: true})
			s.Rules = append(s.Rules, Rule{Priority: RemotePrio, Dst: d, Table: RemoteTable})
		}
	}
	s.Chains = chains(remote, canonical(f.Local), pathMTU)
	return s, nil
}

// chains: no masquerade between clusters, forwarding allowed both
// ways, TCP MSS clamped to the path in both directions (each side's SYN
// advertises what it can receive, so both are clamped).
func chains(remote, local []netip.Prefix, pathMTU int) []ChainRules {
	var out []ChainRules
	for _, v6 := range []bool{false, true} {
		nat := ChainRules{IPv6: v6, Table: "nat", Name: natChain, From: "POSTROUTING"}
		fwd := ChainRules{IPv6: v6, Table: "filter", Name: forwardChain, From: "FORWARD"}
		mss := ChainRules{IPv6: v6, Table: "mangle", Name: mssChain, From: "FORWARD"}
		ip := pmtu.IPv4Header
		if v6 {
			ip = pmtu.IPv6Header
		}
		clamp := strconv.Itoa(pathMTU - ip - pmtu.TCPHeader)
		for _, d := range remote {
			if d.Addr().Is6() != v6 {
				continue
			}
			for _, l := range local {
				if l.Addr().Is6() != v6 {
					continue
				}
				nat.Rules = append(nat.Rules, []string{"-s", l.String(), "-d", d.String(), "-m", "comment", "--comment", "strait: cross-cluster, no masquerade", "-j", "ACCEPT"})
			}
			// Another cluster's client of a local Service keeps its address
			// too: kube-proxy would masquerade it (it is outside the cluster
			// CIDR), but the reply comes back through the active gateway,
			// which undoes the Service's DNAT, so no SNAT is needed.
			nat.Rules = append(nat.Rules, []string{"-s", d.String(), "-m", "comment", "--comment", "strait: from another cluster, keep its source", "-j", "ACCEPT"})
			fwd.Rules = append(fwd.Rules,
				[]string{"-d", d.String(), "-m", "comment", "--comment", "strait: to another cluster", "-j", "ACCEPT"},
				[]string{"-s", d.String(), "-m", "comment", "--comment", "strait: from another cluster", "-j", "ACCEPT"})
			mss.Rules = append(mss.Rules,
				[]string{"-d", d.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", clamp},
				[]string{"-s", d.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", clamp})
		}
		out = append(out, nat, fwd, mss)
	}
	return out
}

// overlayAddr maps a node address to its overlay address: 240.0.0.0/8
// (reserved, never routed) plus the node's last three bytes. Nodes of one
// cluster differing only in their first byte would collide; Compute's
// callers reject that (see Validate).
func overlayAddr(node netip.Addr) netip.Addr {
	if node.Is4() {
		b := node.As4()
		return netip.AddrFrom4([4]byte{240, b[1], b[2], b[3]})
	}
	// IPv6: a ULA /64 of our own plus the node's interface identifier.
	b := node.As16()
	o := [16]byte{0xfd, 0x53, 0x74, 0x72, 0x61, 0x69, 0x74, 0x00}
	copy(o[8:], b[8:])
	return netip.AddrFrom16(o)
}

func overlayPrefix(node netip.Addr) netip.Prefix {
	if node.Is4() {
		return netip.PrefixFrom(overlayAddr(node), 8)
	}
	return netip.PrefixFrom(overlayAddr(node), 64)
}

// overlayMAC is a locally administered MAC derived from the node address,
// so that every node knows every other's without asking (no ARP on the
// overlay).
func overlayMAC(node netip.Addr) string {
	b := node.AsSlice()
	t := b[len(b)-4:]
	return fmt.Sprintf("0a:53:%02x:%02x:%02x:%02x", t[0], t[1], t[2], t[3])
}

// Validate reports nodes whose overlay addresses would collide.
func Validate(nodes []Node) error {
	seen := map[netip.Addr]string{}
	for _, n := range nodes {
		if !n.IP.IsValid() {
			continue
		}
		o := overlayAddr(n.IP)
		if other, dup := seen[o]; dup {
			return fmt.Errorf("nodes %s and %s map to the same overlay address %s", other, n.Name, o)
		}
		seen[o] = n.Name
	}
	return nil
}

func canonical(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

// String renders the state as text in the shape of ip(8) and iptables -S
// output: what golden tests compare.
func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "link %s vxlan id %d dstport %d mtu %d address %s\n", OverlayInterface, OverlayVNI, OverlayPort, s.OverlayMTU, s.OverlayMAC)
	fmt.Fprintf(&b, "addr %s dev %s\n", s.OverlayAddr, OverlayInterface)
	for _, a := range s.SourceAddrs {
		fmt.Fprintf(&b, "addr %s dev %s\n", netip.PrefixFrom(a, a.BitLen()), OverlayInterface)
	}
	for _, r := range s.Rules {
		if r.IIF != "" {
			fmt.Fprintf(&b, "rule %d: iif %s lookup %d\n", r.Priority, r.IIF, r.Table)
		} else {
			fmt.Fprintf(&b, "rule %d: to %s lookup %d\n", r.Priority, r.Dst, r.Table)
		}
	}
	for _, r := range s.Routes {
		if r.Unreachable {
			fmt.Fprintf(&b, "route table %d unreachable %s\n", r.Table, r.Dst)
			continue
		}
		fmt.Fprintf(&b, "route table %d %s via %s dev %s", r.Table, r.Dst, r.Via, OverlayInterface)
		if r.Src.IsValid() {
			fmt.Fprintf(&b, " src %s", r.Src)
		}
		fmt.Fprintf(&b, " mtu %d\n", r.MTU)
	}
	for _, n := range s.Neighbors {
		fmt.Fprintf(&b, "neigh %s lladdr %s dev %s permanent\n", n.IP, n.MAC, OverlayInterface)
		fmt.Fprintf(&b, "fdb %s dev %s dst %s\n", n.MAC, OverlayInterface, n.Remote)
	}
	for _, d := range s.LooseRPFilter {
		fmt.Fprintf(&b, "sysctl net.ipv4.conf.%s.rp_filter=2\n", d)
	}
	for _, c := range s.Chains {
		fam := "ip"
		if c.IPv6 {
			fam = "ip6"
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "%s -t %s -A %s %s\n", fam, c.Table, c.Name, strings.Join(r, " "))
		}
	}
	return b.String()
}
