package globalnet

import (
	"net/netip"
	"slices"

	"strait.dev/strait/pkg/nodenet"
)

// The chains Globalnet owns on a gateway node (nodenet.Globalnet*).
const (
	// IngressChain (nat, from PREROUTING): global IP → headless pod.
	IngressChain = nodenet.GlobalnetIngressChain
	// EgressChain (nat, from POSTROUTING, before the gateway's and the
	// route agent's): SNAT into the cable.
	EgressChain = nodenet.GlobalnetEgressChain
	// JumpComment marks Globalnet's jumps.
	JumpComment = nodenet.GlobalnetJumpComment
)

// Comments of Globalnet's NAT rules, as iptables-save shows them.
const (
	commentIngress  = "strait: global IP of a headless pod"
	commentHeadless = "strait: headless pod leaves with its global IP"
	commentPod      = "strait: pod leaves with its GlobalEgressIP"
	commentCluster  = "strait: cluster leaves with its ClusterGlobalEgressIP"
)

// PodNAT is one pod's share of the NAT state.
type PodNAT struct {
	// IP is the pod's address (of the global CIDR's family).
	IP netip.Addr
	// Ingress is the pod's own global IP (a pod of an exported headless
	// Service): traffic to it is DNAT'd to IP, and the pod's traffic into
	// the cable leaves with it. Zero for none.
	Ingress netip.Addr
	// Egress are the global IPs (consecutive) of the GlobalEgressIP that
	// applies to the pod; nil when only the cluster's does. A pod with an
	// Ingress IP leaves with that instead.
	Egress []netip.Addr
}

// NATFacts are what a node's Globalnet NAT follows from.
type NATFacts struct {
	// GlobalCIDR is the cluster's global CIDR.
	GlobalCIDR netip.Prefix
	// Cluster are the ClusterGlobalEgressIP's addresses (consecutive); nil
	// before they are allotted.
	Cluster []netip.Addr
	// Pods are the pods with an ingress IP or a GlobalEgressIP of their
	// own.
	Pods []PodNAT
}

// ComputeNAT returns the chains a gateway node of the cluster holds: a pure
// function of the facts, whatever order the pods are listed in. Both
// families' chains are always there, empty for a family without global
// IPs. Traffic into the cable (nodenet.CableDevice) from a source outside
// the global CIDR is SNAT'd: a headless pod's to its own global IP, a pod
// with a GlobalEgressIP's to its range, everything else (pods, and host
// network traffic, which the route agent gives a pod-network source) to the
// cluster's range.
func ComputeNAT(f NATFacts) nodenet.State {
	pods := slices.Clone(f.Pods)
	slices.SortFunc(pods, func(a, b PodNAT) int { return a.IP.Compare(b.IP) })
	pods = slices.CompactFunc(pods, func(a, b PodNAT) bool { return a.IP == b.IP })
	var s nodenet.State
	for _, fam := range nodenet.Families {
		in := nodenet.Chain{Family: fam, Table: "nat", Name: IngressChain, From: "PREROUTING", Comment: JumpComment}
		out := nodenet.Chain{Family: fam, Table: "nat", Name: EgressChain, From: "POSTROUTING", Comment: JumpComment}
		if f.GlobalCIDR.IsValid() && nodenet.FamilyOf(f.GlobalCIDR.Addr()) == fam {
			var headless, own [][]string
			for _, p := range pods {
				if nodenet.FamilyOf(p.IP) != fam {
					continue
				}
				src := hostPrefix(p.IP).String()
				switch {
				case p.Ingress.IsValid() && f.GlobalCIDR.Contains(p.Ingress):
					in.Rules = append(in.Rules, []string{"-d", hostPrefix(p.Ingress).String(), "-m", "comment", "--comment", commentIngress, "-j", "DNAT", "--to-destination", p.IP.String()})
					headless = append(headless, snat(src, commentHeadless, []netip.Addr{p.Ingress}))
				case len(p.Egress) > 0 && f.GlobalCIDR.Contains(p.Egress[0]):
					own = append(own, snat(src, commentPod, p.Egress))
				}
			}
			out.Rules = append(headless, own...)
			if len(f.Cluster) > 0 {
				out.Rules = append(out.Rules, snat("!"+f.GlobalCIDR.Masked().String(), commentCluster, f.Cluster))
			}
		}
		s.Chains = append(s.Chains, in, out)
	}
	return s
}

// snat is the rule "from src (a prefix, "!" before it for all but it) into
// the cable: SNAT to addrs", in iptables-save's normal form.
func snat(src, comment string, addrs []netip.Addr) []string {
	var r []string
	if s, neg := cutBang(src); neg {
		r = append(r, "!", "-s", s)
	} else {
		r = append(r, "-s", s)
	}
	return append(r, "-o", nodenet.CableDevice, "-m", "comment", "--comment", comment, "-j", "SNAT", "--to-source", addrRange(addrs))
}

func cutBang(s string) (string, bool) {
	if len(s) > 0 && s[0] == '!' {
		return s[1:], true
	}
	return s, false
}

// addrRange is addrs (consecutive) as SNAT's --to-source takes it: one
// address, or first-last.
func addrRange(addrs []netip.Addr) string {
	lo := slices.MinFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	hi := slices.MaxFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	if lo == hi {
		return lo.String()
	}
	return lo.String() + "-" + hi.String()
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// NATScope is what Globalnet owns on a node: its two chains per family.
func NATScope() nodenet.Scope {
	return nodenet.Scope{Chains: ComputeNAT(NATFacts{}).Chains}
}
