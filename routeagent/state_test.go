package routeagent

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

var (
	n1 = Node{Name: "n1", IP: netip.MustParseAddr("192.168.1.11"), PodCIDRs: pfx("10.1.2.0/24")}
	n2 = Node{Name: "n2", IP: netip.MustParseAddr("192.168.1.12"), PodCIDRs: pfx("10.1.0.0/24")}
	n3 = Node{Name: "n3", IP: netip.MustParseAddr("192.168.1.13"), PodCIDRs: pfx("10.1.1.0/24")}
)

func facts(self Node, active string, remote ...string) Facts {
	return Facts{Self: self, Nodes: []Node{n3, n1, n2}, Active: active, Cable: "wireguard",
		Local: pfx("10.101.0.0/16", "10.1.0.0/16"), Remote: pfx(remote...), UnderlayMTU: 1500}
}

// The golden states: what each kind of node holds. The path MTU is the
// underlay (1500) less the larger of the overlay (IPv4 20 + UDP 8 + VXLAN 8
// + Ethernet 14 = 50) and the cable as the gateway sizes it (IPv6 40 + UDP
// 8 + WireGuard 32 = 80): 1420, and MSS 1420 - 40 = 1380.
func TestComputeGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Facts
		want string
	}{{
		name: "non-gateway node routes remote subnets through the overlay to the active gateway",
		f:    facts(n3, "n1", "10.2.0.0/16", "10.102.0.0/16"),
		want: `link strait-overlay vxlan id 4100 dstport 4801 mtu 1450 address 0a:53:c0:a8:01:0d
addr 240.168.1.13/8 dev strait-overlay
addr 10.1.1.1/32 dev strait-overlay
rule 151: to 10.102.0.0/16 lookup 151
rule 151: to 10.2.0.0/16 lookup 151
route table 151 10.102.0.0/16 via 240.168.1.11 dev strait-overlay src 10.1.1.1 mtu 1420
route table 151 10.2.0.0/16 via 240.168.1.11 dev strait-overlay src 10.1.1.1 mtu 1420
neigh 240.168.1.11 lladdr 0a:53:c0:a8:01:0b dev strait-overlay permanent
fdb 0a:53:c0:a8:01:0b dev strait-overlay dst 192.168.1.11
ip -t nat -A STRAIT-POSTROUTING -s 10.1.0.0/16 -d 10.102.0.0/16 -m comment --comment strait: cross-cluster, no masquerade -j ACCEPT
ip -t nat -A STRAIT-POSTROUTING -s 10.101.0.0/16 -d 10.102.0.0/16 -m comment --comment strait: cross-cluster, no masquerade -j ACCEPT
ip -t nat -A STRAIT-POSTROUTING -s 10.102.0.0/16 -m comment --comment strait: from another cluster, keep its source -j ACCEPT
ip -t nat -A STRAIT-POSTROUTING -s 10.1.0.0/16 -d 10.2.0.0/16 -m comment --comment strait: cross-cluster, no masquerade -j ACCEPT
ip -t nat -A STRAIT-POSTROUTING -s 10.101.0.0/16 -d 10.2.0.0/16 -m comment --comment strait: cross-cluster, no masquerade -j ACCEPT
ip -t nat -A STRAIT-POSTROUTING -s 10.2.0.0/16 -m comment --comment strait: from another cluster, keep its source -j ACCEPT
ip -t filter -A STRAIT-FORWARD -d 10.102.0.0/16 -m comment --comment strait: to another cluster -j ACCEPT
ip -t filter -A STRAIT-FORWARD -s 10.102.0.0/16 -m comment --comment strait: from another cluster -j ACCEPT
ip -t filter -A STRAIT-FORWARD -d 10.2.0.0/16 -m comment --comment strait: to another cluster -j ACCEPT
ip -t filter -A STRAIT-FORWARD -s 10.2.0.0/16 -m comment --comment strait: from another cluster -j ACCEPT
ip -t mangle -A STRAIT-MSS -d 10.102.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
ip -t mangle -A STRAIT-MSS -s 10.102.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
ip -t mangle -A STRAIT-MSS -d 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
ip -t mangle -A STRAIT-MSS -s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
`,
	}, {
		name: "the active gateway sends cable traffic for other nodes' pods back through the overlay",
		f:    facts(n1, "n1", "10.2.0.0/16"),
		want: `link strait-overlay vxlan id 4100 dstport 4801 mtu 1450 address 0a:53:c0:a8:01:0b
addr 240.168.1.11/8 dev strait-overlay
addr 10.1.2.1/32 dev strait-overlay
rule 151: to 10.2.0.0/16 lookup 151
rule 152: iif strait-cable lookup 152
route table 151 unreachable 10.2.0.0/16
route table 152 10.1.0.0/24 via 240.168.1.12 dev strait-overlay mtu 1420
route table 152 10.1.1.0/24 via 240.168.1.13 dev strait-overlay mtu 1420
neigh 240.168.1.12 lladdr 0a:53:c0:a8:01:0c dev strait-overlay permanent
fdb 0a:53:c0:a8:01:0c dev strait-overlay dst 192.168.1.12
neigh 240.168.1.13 lladdr 0a:53:c0:a8:01:0d dev strait-overlay permanent
fdb 0a:53:c0:a8:01:0d dev strait-overlay dst 192.168.1.13
sysctl net.ipv4.conf.strait-overlay.rp_filter=2
`,
	}, {
		name: "no active gateway: remote traffic is unreachable, never the default route",
		f:    facts(n3, "", "10.2.0.0/16"),
		want: `link strait-overlay vxlan id 4100 dstport 4801 mtu 1450 address 0a:53:c0:a8:01:0d
addr 240.168.1.13/8 dev strait-overlay
addr 10.1.1.1/32 dev strait-overlay
rule 151: to 10.2.0.0/16 lookup 151
route table 151 unreachable 10.2.0.0/16
`,
	}, {
		name: "no remote cluster: the overlay waits, nothing is routed",
		f:    facts(n3, "n1"),
		want: `link strait-overlay vxlan id 4100 dstport 4801 mtu 1450 address 0a:53:c0:a8:01:0d
addr 240.168.1.13/8 dev strait-overlay
addr 10.1.1.1/32 dev strait-overlay
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compute(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			got := s.String()
			// The chains are the same on every node: compare them in the first
			// case only.
			if !strings.Contains(tc.want, " -A ") {
				got = strings.Join(filter(strings.SplitAfter(got, "\n"), func(l string) bool { return !strings.Contains(l, " -A ") }), "")
			}
			if got != tc.want {
				t.Errorf("state:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func filter(ls []string, keep func(string) bool) []string {
	var out []string
	for _, l := range ls {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

// The state depends on the facts, not on the order they were listed in.
func TestComputeOrderIndependent(t *testing.T) {
	f := facts(n3, "n2", "10.2.0.0/16", "10.102.0.0/16", "10.3.0.0/16")
	want, err := Compute(f)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		g := f
		g.Nodes = append([]Node(nil), f.Nodes...)
		g.Remote = append([]netip.Prefix(nil), f.Remote...)
		r.Shuffle(len(g.Nodes), func(i, j int) { g.Nodes[i], g.Nodes[j] = g.Nodes[j], g.Nodes[i] })
		r.Shuffle(len(g.Remote), func(i, j int) { g.Remote[i], g.Remote[j] = g.Remote[j], g.Remote[i] })
		// A duplicate and an unmasked prefix change nothing.
		g.Remote = append(g.Remote, netip.MustParsePrefix("10.3.4.5/16"))
		got, err := Compute(g)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("order changed the state:\n%s\nwant:\n%s", got, want)
		}
	}
}

func TestComputeMTU(t *testing.T) {
	for _, tc := range []struct {
		cable    string
		underlay int
		overlay  int
		route    int
	}{
		{"wireguard", 1500, 1450, 1420},
		{"vxlan", 1500, 1450, 1430},
		{"wireguard", 9000, 8950, 8920},
	} {
		f := facts(n3, "n1", "10.2.0.0/16")
		f.Cable, f.UnderlayMTU = tc.cable, tc.underlay
		s, err := Compute(f)
		if err != nil {
			t.Fatal(err)
		}
		if s.OverlayMTU != tc.overlay || s.Routes[0].MTU != tc.route {
			t.Errorf("%s over %d: overlay %d, route %d; want %d, %d", tc.cable, tc.underlay, s.OverlayMTU, s.Routes[0].MTU, tc.overlay, tc.route)
		}
	}
}

func TestBadFacts(t *testing.T) {
	if _, err := Compute(Facts{Self: Node{Name: "n9"}}); err == nil {
		t.Error("a node without an address got a state")
	}
	clash := []Node{n1, {Name: "other", IP: netip.MustParseAddr("10.168.1.11")}}
	if err := Validate(clash); err == nil || !strings.Contains(err.Error(), "240.168.1.11") {
		t.Errorf("colliding overlay addresses: %v", err)
	}
	if err := Validate([]Node{n1, n2, n3}); err != nil {
		t.Error(err)
	}
}
