package routeagent

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/nodenet"
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
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.13 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0d up
# ip addr
inet 10.1.1.1/32 dev strait-overlay
inet 240.168.1.13/8 dev strait-overlay
# ip rule
151:	from all to 10.102.0.0/16 lookup 151
151:	from all to 10.2.0.0/16 lookup 151
# ip route show table all
10.102.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.1.1 mtu 1420
10.2.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.1.1 mtu 1420
# ip neigh
240.168.1.11 dev strait-overlay lladdr 0a:53:c0:a8:01:0b PERMANENT
# bridge fdb
0a:53:c0:a8:01:0b dev strait-overlay dst 192.168.1.11 self permanent
# sysctl
net.ipv4.ip_forward = 1
# iptables-save
*filter
:STRAIT-FORWARD - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-FORWARD
-A STRAIT-FORWARD -d 10.102.0.0/16 -m comment --comment "strait: to another cluster" -j ACCEPT
-A STRAIT-FORWARD -s 10.102.0.0/16 -m comment --comment "strait: from another cluster" -j ACCEPT
-A STRAIT-FORWARD -d 10.2.0.0/16 -m comment --comment "strait: to another cluster" -j ACCEPT
-A STRAIT-FORWARD -s 10.2.0.0/16 -m comment --comment "strait: from another cluster" -j ACCEPT
COMMIT
*mangle
:STRAIT-MSS - [0:0]
:STRAIT-UNMARK-MASQ - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-MSS
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-UNMARK-MASQ
-A STRAIT-MSS -d 10.102.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
-A STRAIT-MSS -s 10.102.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
-A STRAIT-MSS -d 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
-A STRAIT-MSS -s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380
-A STRAIT-UNMARK-MASQ -s 10.102.0.0/16 -m comment --comment "strait: from another cluster, no kube-proxy masquerade" -j MARK --set-xmark 0x0/0x4000
-A STRAIT-UNMARK-MASQ -s 10.2.0.0/16 -m comment --comment "strait: from another cluster, no kube-proxy masquerade" -j MARK --set-xmark 0x0/0x4000
COMMIT
*nat
:STRAIT-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-POSTROUTING
-A STRAIT-POSTROUTING -s 10.1.0.0/16 -d 10.102.0.0/16 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
-A STRAIT-POSTROUTING -s 10.101.0.0/16 -d 10.102.0.0/16 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
-A STRAIT-POSTROUTING -s 10.102.0.0/16 -m comment --comment "strait: from another cluster, keep its source" -j ACCEPT
-A STRAIT-POSTROUTING -s 10.1.0.0/16 -d 10.2.0.0/16 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
-A STRAIT-POSTROUTING -s 10.101.0.0/16 -d 10.2.0.0/16 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
-A STRAIT-POSTROUTING -s 10.2.0.0/16 -m comment --comment "strait: from another cluster, keep its source" -j ACCEPT
COMMIT
# ip6tables-save
*filter
:STRAIT-FORWARD - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-FORWARD
COMMIT
*mangle
:STRAIT-MSS - [0:0]
:STRAIT-UNMARK-MASQ - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-MSS
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-UNMARK-MASQ
COMMIT
*nat
:STRAIT-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-POSTROUTING
COMMIT
`,
	}, {
		name: "the active gateway sends cable traffic for other nodes' pods back through the overlay",
		f:    facts(n1, "n1", "10.2.0.0/16"),
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.11 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0b up
# ip addr
inet 10.1.2.1/32 dev strait-overlay
inet 240.168.1.11/8 dev strait-overlay
# ip rule
151:	from all to 10.2.0.0/16 lookup 151
152:	from all iif strait-cable lookup 152
# ip route show table all
unreachable 10.2.0.0/16 table 151
10.1.0.0/24 via 240.168.1.12 dev strait-overlay table 152 mtu 1420
10.1.1.0/24 via 240.168.1.13 dev strait-overlay table 152 mtu 1420
# ip neigh
240.168.1.12 dev strait-overlay lladdr 0a:53:c0:a8:01:0c PERMANENT
240.168.1.13 dev strait-overlay lladdr 0a:53:c0:a8:01:0d PERMANENT
# bridge fdb
0a:53:c0:a8:01:0c dev strait-overlay dst 192.168.1.12 self permanent
0a:53:c0:a8:01:0d dev strait-overlay dst 192.168.1.13 self permanent
# sysctl
net.ipv4.conf.strait-overlay.rp_filter = 2
net.ipv4.ip_forward = 1
`,
	}, {
		name: "no active gateway: remote traffic is unreachable, never the default route",
		f:    facts(n3, "", "10.2.0.0/16"),
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.13 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0d up
# ip addr
inet 10.1.1.1/32 dev strait-overlay
inet 240.168.1.13/8 dev strait-overlay
# ip rule
151:	from all to 10.2.0.0/16 lookup 151
# ip route show table all
unreachable 10.2.0.0/16 table 151
# sysctl
net.ipv4.ip_forward = 1
`,
	}, {
		name: "no remote cluster: the overlay waits, nothing is routed, the chains are empty",
		f:    facts(n3, "n1"),
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.13 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0d up
# ip addr
inet 10.1.1.1/32 dev strait-overlay
inet 240.168.1.13/8 dev strait-overlay
# sysctl
net.ipv4.ip_forward = 1
# iptables-save
*filter
:STRAIT-FORWARD - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-FORWARD
COMMIT
*mangle
:STRAIT-MSS - [0:0]
:STRAIT-UNMARK-MASQ - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-MSS
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-UNMARK-MASQ
COMMIT
*nat
:STRAIT-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-POSTROUTING
COMMIT
# ip6tables-save
*filter
:STRAIT-FORWARD - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-FORWARD
COMMIT
*mangle
:STRAIT-MSS - [0:0]
:STRAIT-UNMARK-MASQ - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-MSS
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-UNMARK-MASQ
COMMIT
*nat
:STRAIT-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-POSTROUTING
COMMIT
`,
	}, {
		name: "IPv6 remote subnets: their chains, IPv6 forwarding, an iif rule per family",
		f: Facts{Self: n1, Nodes: []Node{n1, n2}, Active: "n1", Cable: "wireguard", UnderlayMTU: 1500,
			Local: pfx("fd01::/48"), Remote: pfx("10.2.0.0/16", "fd02::/48")},
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.11 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0b up
# ip addr
inet 10.1.2.1/32 dev strait-overlay
inet 240.168.1.11/8 dev strait-overlay
inet6 fd53:7472:6169:7400::c0a8:10b/64 dev strait-overlay
# ip rule
151:	from all to 10.2.0.0/16 lookup 151
152:	from all iif strait-cable lookup 152
-6 151:	from all to fd02::/48 lookup 151
-6 152:	from all iif strait-cable lookup 152
# ip route show table all
unreachable 10.2.0.0/16 table 151
10.1.0.0/24 via 240.168.1.12 dev strait-overlay table 152 mtu 1420
unreachable fd02::/48 table 151
# ip neigh
240.168.1.12 dev strait-overlay lladdr 0a:53:c0:a8:01:0c PERMANENT
fd53:7472:6169:7400::c0a8:10c dev strait-overlay lladdr 0a:53:c0:a8:01:0c PERMANENT
# bridge fdb
0a:53:c0:a8:01:0c dev strait-overlay dst 192.168.1.12 self permanent
# sysctl
net.ipv4.conf.strait-overlay.rp_filter = 2
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compute(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			got := s.String()
			// The chains depend on the remote and local subnets only:
			// compared where the case shows them.
			if !strings.Contains(tc.want, "# iptables-save") {
				got, _, _ = strings.Cut(got, "# iptables-save")
			}
			if got != tc.want {
				t.Errorf("state:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// The IPv6 chains hold IPv6 rules only, clamped for the larger header.
func TestComputeChainsIPv6(t *testing.T) {
	f := facts(n3, "n1", "fd02::/48")
	f.Local = pfx("fd01::/48", "10.1.0.0/16")
	s, err := Compute(f)
	if err != nil {
		t.Fatal(err)
	}
	_, got, _ := strings.Cut(s.String(), "# ip6tables-save\n")
	want := `*filter
:STRAIT-FORWARD - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-FORWARD
-A STRAIT-FORWARD -d fd02::/48 -m comment --comment "strait: to another cluster" -j ACCEPT
-A STRAIT-FORWARD -s fd02::/48 -m comment --comment "strait: from another cluster" -j ACCEPT
COMMIT
*mangle
:STRAIT-MSS - [0:0]
:STRAIT-UNMARK-MASQ - [0:0]
-A FORWARD -m comment --comment "strait route agent" -j STRAIT-MSS
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-UNMARK-MASQ
-A STRAIT-MSS -d fd02::/48 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1360
-A STRAIT-MSS -s fd02::/48 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1360
-A STRAIT-UNMARK-MASQ -s fd02::/48 -m comment --comment "strait: from another cluster, no kube-proxy masquerade" -j MARK --set-xmark 0x0/0x4000
COMMIT
*nat
:STRAIT-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait route agent" -j STRAIT-POSTROUTING
-A STRAIT-POSTROUTING -s fd01::/48 -d fd02::/48 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
-A STRAIT-POSTROUTING -s fd02::/48 -m comment --comment "strait: from another cluster, keep its source" -j ACCEPT
COMMIT
`
	if got != want {
		t.Errorf("ip6tables:\n%s\nwant:\n%s", got, want)
	}
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
		if s.Links[0].MTU != tc.overlay || s.Routes[0].MTU != tc.route {
			t.Errorf("%s over %d: overlay %d, route %d; want %d, %d", tc.cable, tc.underlay, s.Links[0].MTU, s.Routes[0].MTU, tc.overlay, tc.route)
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

// IPv6 nodes whose overlay addresses differ (their last eight bytes) but
// whose last four bytes are equal would share an overlay MAC: Validate
// names both.
func TestValidateRejectsCollidingMACs(t *testing.T) {
	a := Node{Name: "v6a", IP: netip.MustParseAddr("2001:db8::1:0:0:1")}
	b := Node{Name: "v6b", IP: netip.MustParseAddr("2001:db8::2:0:0:1")}
	if overlayAddr(a.IP, nodenet.IPv6) == overlayAddr(b.IP, nodenet.IPv6) {
		t.Fatal("the case needs distinct overlay addresses")
	}
	err := Validate([]Node{a, b})
	if err == nil || !strings.Contains(err.Error(), "v6a") || !strings.Contains(err.Error(), "v6b") || !strings.Contains(err.Error(), overlayMAC(a.IP)) {
		t.Errorf("colliding overlay MACs: %v, want an error naming v6a, v6b and %s", err, overlayMAC(a.IP))
	}
	c := Node{Name: "v6c", IP: netip.MustParseAddr("2001:db8::2:0:0:2")}
	if err := Validate([]Node{a, c}); err != nil {
		t.Errorf("distinct MACs: %v", err)
	}
}

// A kube-proxy with another masquerade bit: the mark cleared is its.
func TestComputeMasqueradeBit(t *testing.T) {
	for _, tc := range []struct {
		bit  *int
		mark string
	}{
		{nil, "0x4000"},
		{ptr.To(DefaultMasqueradeBit), "0x4000"},
		{ptr.To(16), "0x10000"},
		{ptr.To(0), "0x1"},
		{ptr.To(31), "0x80000000"},
	} {
		f := facts(n3, "n1", "10.2.0.0/16")
		f.MasqueradeBit = tc.bit
		s, err := Compute(f)
		if err != nil {
			t.Fatal(err)
		}
		want := `-A STRAIT-UNMARK-MASQ -s 10.2.0.0/16 -m comment --comment "strait: from another cluster, no kube-proxy masquerade" -j MARK --set-xmark 0x0/` + tc.mark + "\n"
		if !strings.Contains(s.String(), want) || strings.Count(s.String(), "--set-xmark") != 1 {
			t.Errorf("bit %v: state:\n%s\nwant the one rule %s", deref(tc.bit), s, want)
		}
	}
	for _, bit := range []int{-1, 32, 64} {
		f := facts(n3, "n1", "10.2.0.0/16")
		f.MasqueradeBit = &bit
		if _, err := Compute(f); err == nil || !strings.Contains(err.Error(), "0 to 31") {
			t.Errorf("bit %d: %v, want an error saying 0 to 31", bit, err)
		}
	}
	// The default is the mark nodenet's documentation of kube-proxy names.
	if uint32(1)<<DefaultMasqueradeBit != nodenet.KubeProxyMasqueradeMark {
		t.Errorf("DefaultMasqueradeBit %d is not nodenet.KubeProxyMasqueradeMark %#x", DefaultMasqueradeBit, nodenet.KubeProxyMasqueradeMark)
	}
}

func deref(p *int) any {
	if p == nil {
		return "nil"
	}
	return *p
}

// A remote Globalnet cluster is reached at its global CIDRs only: its pod
// and Service CIDRs (here this cluster's own) are neither routed, exempted
// from masquerade, clamped nor unmarked. A remote cluster without Globalnet
// is reached at its pod and Service CIDRs.
func TestComputeGlobalnetRemote(t *testing.T) {
	globalnet := v1.ClusterSpec{ClusterID: "c2", PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"},
		GlobalCIDRs: []v1.CIDR{"242.2.0.0/16"}}
	plain := v1.ClusterSpec{ClusterID: "c3", PodCIDRs: []v1.CIDR{"10.3.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.103.0.0/16", "bad"}}
	if got := fmt.Sprint(RemoteSubnets(globalnet), RemoteSubnets(plain)); got != "[242.2.0.0/16] [10.3.0.0/16 10.103.0.0/16]" {
		t.Errorf("RemoteSubnets: %s", got)
	}
	f := facts(n3, "n1")
	f.Remote = append(RemoteSubnets(globalnet), RemoteSubnets(plain)...)
	s, err := Compute(f)
	if err != nil {
		t.Fatal(err)
	}
	got := s.String()
	for _, want := range []string{
		"151:	from all to 242.2.0.0/16 lookup 151",
		"242.2.0.0/16 via 240.168.1.11 dev strait-overlay table 151",
		"-A STRAIT-FORWARD -d 242.2.0.0/16",
		"-A STRAIT-MSS -s 242.2.0.0/16 -p tcp",
		"-A STRAIT-UNMARK-MASQ -s 242.2.0.0/16",
		"151:	from all to 10.3.0.0/16 lookup 151",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("state lacks %q", want)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, "10.1.0.0/16") || strings.Contains(line, "10.101.0.0/16") {
			// The local CIDRs may appear only as local (the masquerade
			// exemption's sources), never as a remote destination.
			if strings.Contains(line, "lookup 151") || strings.Contains(line, "table 151") || strings.Contains(line, "another cluster") || strings.Contains(line, "STRAIT-MSS") {
				t.Errorf("a Globalnet remote's pod or service CIDR is routed or filtered as remote: %s", line)
			}
		}
	}
}

// TestComputePathMTUPerRemoteCluster: a remote cluster whose path the
// gateway found narrower gets routes and an MSS clamp sized to it; the
// others keep the local network's figure, and a figure above that one
// (an override larger than the local cable) does not raise it.
func TestComputePathMTUPerRemoteCluster(t *testing.T) {
	f := facts(n3, "n1", "10.2.0.0/16", "10.102.0.0/16", "10.3.0.0/16", "10.4.0.0/16")
	f.PathMTU = map[netip.Prefix]int{
		netip.MustParsePrefix("10.2.0.0/16"):   1340,
		netip.MustParsePrefix("10.102.0.0/16"): 1340,
		netip.MustParsePrefix("10.4.0.0/16"):   9000,
	}
	s, err := Compute(f)
	if err != nil {
		t.Fatal(err)
	}
	stateHas(t, s,
		"10.2.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.1.1 mtu 1340\n",
		"10.102.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.1.1 mtu 1340\n",
		"10.3.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.1.1 mtu 1420\n",
		"10.4.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.1.1 mtu 1420\n",
		"-A STRAIT-MSS -d 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1300\n",
		"-A STRAIT-MSS -s 10.2.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1300\n",
		"-A STRAIT-MSS -d 10.3.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380\n",
		"-A STRAIT-MSS -d 10.4.0.0/16 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1380\n",
	)
}

// stateHas fails t for each line of want that s's String lacks.
func stateHas(t *testing.T, s nodenet.State, want ...string) {
	t.Helper()
	got := s.String()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("state lacks %q:\n%s", w, got)
		}
	}
}

// applyReadBack applies the state computed from f through a and fails t
// unless the kernel then reads back exactly that state (its sysctls
// included); it returns the state.
func applyReadBack(t *testing.T, a *nodenet.Applier, f Facts) nodenet.State {
	t.Helper()
	s, err := Compute(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(s); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, x := range s.Sysctls {
		keys = append(keys, x.Key)
	}
	got, err := a.Read(keys...)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != s.String() {
		t.Errorf("kernel:\n%s\nwant:\n%s", got, s)
	}
	return s
}
