package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"strait.dev/strait/pkg/mtu"
	"strait.dev/strait/test/sandbox"
)

// family is one IP family the suites measure in: the family of the pods'
// addresses (and of the bare cable's tunnel addresses) that the traffic
// goes to, and the sandbox it is measured in.
type family struct {
	// Name is the -families value and the results' "family": "ipv4" or
	// "ipv6".
	Name string
	// Sandbox is the sandbox's --ip-family. IPv6 is measured in a
	// dual-stack sandbox, whose pods have an address of each family:
	// that is what a cluster that carries IPv6 looks like today, and
	// Strait's cable then runs over the gateways' first public address,
	// IPv4 (gateway/state.go, reachAddress); the bare cable takes the
	// same underlay.
	Sandbox string
	// Bits is 4 or 6: the family of the addresses traffic goes to.
	Bits int
}

// knownFamilies are the -families values, in the order they run.
var knownFamilies = []family{
	{Name: "ipv4", Sandbox: sandbox.IPv4, Bits: 4},
	{Name: "ipv6", Sandbox: sandbox.Dual, Bits: 6},
}

// defaultFamilies is -families' default: both, so that "make
// bench-dataplane" gives the figures of each (issue 16).
const defaultFamilies = "ipv4,ipv6"

// parseFamilies reads -families: a comma-separated list of knownFamilies'
// names, each at most once; they run in knownFamilies' order.
func parseFamilies(s string) ([]family, error) {
	var names []string
	for _, f := range knownFamilies {
		names = append(names, f.Name)
	}
	picked, err := pick("-families", s, names)
	if err != nil {
		return nil, err
	}
	var fams []family
	for _, f := range knownFamilies {
		if slices.Contains(picked, f.Name) {
			fams = append(fams, f)
		}
	}
	return fams, nil
}

// pick parses a flag's comma-separated list of names out of known: the
// names picked, in known's order. An unknown or repeated name is an error
// naming the flag.
func pick(flag, s string, known []string) ([]string, error) {
	seen := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("%s %q: unknown name %q: want %s, comma-separated", flag, s, name, strings.Join(known, " or "))
		}
		if seen[name] {
			return nil, fmt.Errorf("%s %q: %s named twice", flag, s, name)
		}
		seen[name] = true
	}
	var out []string
	for _, k := range known {
		if seen[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

// bareAddrs are the bare cable's tunnel addresses of a family, one on each
// end (host prefixes): 100.127.0.1 and .2 in IPv4 (shared address space,
// RFC 6598, unused by the sandbox), fd00:127::1 and ::2 in IPv6 (a unique
// local range apart from the sandbox's fd00:10:… and fd00:192:168:…).
func bareAddrs(bits int) (a, b netip.Addr) {
	if bits == 6 {
		return netip.MustParseAddr("fd00:127::1"), netip.MustParseAddr("fd00:127::2")
	}
	return netip.MustParseAddr("100.127.0.1"), netip.MustParseAddr("100.127.0.2")
}

// underlayMTU is the sandbox's links' MTU, Ethernet's.
const underlayMTU = 1500

// bareMTU is the bare cable device's MTU: what Strait's cable has on the
// sandbox's links (mtu.Cable, sized for an IPv6 outer header over either
// underlay: WireGuard 1420, VXLAN 1430, the figures the bench always
// used), so that both carry packets of one size.
func bareMTU(driver string) int {
	return mtu.Cable(driver, underlayMTU)
}

// familyName is "ipv4" or "ipv6" for an address.
func familyName(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// ofFamily is the first of addrs (as Kubernetes lists a pod's IPs) of the
// family bits, or an error naming them all.
func ofFamily(addrs []string, bits int) (string, error) {
	for _, s := range addrs {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		if (bits == 4) == a.Unmap().Is4() {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("no IPv%d address among %v", bits, addrs)
}

// clusterPlan is the named cluster of a sandbox's state.
func clusterPlan(st *sandbox.State, name string) (sandbox.ClusterPlan, error) {
	for _, c := range st.Clusters {
		if c.Name == name {
			return c, nil
		}
	}
	return sandbox.ClusterPlan{}, fmt.Errorf("no cluster %s in the sandbox's state", name)
}

// publicIP is the first public address of a cluster's node: where Strait's
// cable reaches that node's gateway (its Endpoint's first public IP), and
// so the bare cable's underlay address.
func publicIP(c sandbox.ClusterPlan, node string) (netip.Addr, error) {
	for _, n := range c.Nodes {
		if n.Name == node {
			if len(n.PublicIPs) == 0 {
				return netip.Addr{}, fmt.Errorf("node %s has no public address", node)
			}
			return n.PublicIPs[0], nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no node %s in cluster %s", node, c.Name)
}

// bareEnds are the bare cable's two ends, on c1-n1 (A) and c2-n1 (B).
type bareEnds struct {
	// A and B are the tunnel addresses (bareAddrs), of the family
	// measured.
	A, B netip.Addr
	// UnderA and UnderB are the nodes' first public addresses, the
	// underlay Strait's cable takes between the same nodes.
	UnderA, UnderB netip.Addr
}

// bareEndsOf are the bare cable's ends in the sandbox of st for traffic of
// family bits.
func bareEndsOf(st *sandbox.State, bits int) (bareEnds, error) {
	var e bareEnds
	e.A, e.B = bareAddrs(bits)
	for _, side := range []struct {
		cluster string
		addr    *netip.Addr
	}{{"c1", &e.UnderA}, {"c2", &e.UnderB}} {
		c, err := clusterPlan(st, side.cluster)
		if err != nil {
			return e, err
		}
		if *side.addr, err = publicIP(c, side.cluster+"-n1"); err != nil {
			return e, err
		}
	}
	return e, nil
}
