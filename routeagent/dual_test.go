package routeagent

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
)

// Dual-stack nodes: an IPv4 node network (the overlay's underlay), pod
// CIDRs of both families.
var (
	d1 = Node{Name: "n1", IP: netip.MustParseAddr("192.168.1.11"), PodCIDRs: pfx("10.1.2.0/24", "fd01:0:0:2::/64")}
	d2 = Node{Name: "n2", IP: netip.MustParseAddr("192.168.1.12"), PodCIDRs: pfx("10.1.0.0/24", "fd01::/64")}
)

func dualFacts(self Node, active string) Facts {
	return Facts{Self: self, Nodes: []Node{d2, d1}, Active: active, Cable: "wireguard", UnderlayMTU: 1500,
		Local:  pfx("10.1.0.0/16", "fd01::/48", "10.101.0.0/16", "fd01:100::/112"),
		Remote: pfx("10.2.0.0/16", "fd02::/48")}
}

// In a dual-stack cluster the overlay carries both inner families over the
// one underlay: every node has an overlay address of each family, remote
// subnets of both families go via the active gateway's overlay address of
// their family, the gateway sends cable traffic of both families back to
// the other nodes' pods, and the permanent neighbours of both families
// name the same MAC, which the FDB maps to the node's underlay address.
func TestComputeDualStackOverlay(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Facts
		want string
	}{{
		name: "non-gateway node",
		f:    dualFacts(d2, "n1"),
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.12 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0c up
# ip addr
inet 10.1.0.1/32 dev strait-overlay
inet 240.168.1.12/8 dev strait-overlay
inet6 fd01::1/128 dev strait-overlay
inet6 fd53:7472:6169:7400::c0a8:10c/64 dev strait-overlay
# ip rule
151:	from all to 10.2.0.0/16 lookup 151
-6 151:	from all to fd02::/48 lookup 151
# ip route show table all
10.2.0.0/16 via 240.168.1.11 dev strait-overlay table 151 src 10.1.0.1 mtu 1420
fd02::/48 via fd53:7472:6169:7400::c0a8:10b dev strait-overlay table 151 src fd01::1 mtu 1420
# ip neigh
240.168.1.11 dev strait-overlay lladdr 0a:53:c0:a8:01:0b PERMANENT
fd53:7472:6169:7400::c0a8:10b dev strait-overlay lladdr 0a:53:c0:a8:01:0b PERMANENT
# bridge fdb
0a:53:c0:a8:01:0b dev strait-overlay dst 192.168.1.11 self permanent
# sysctl
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
`,
	}, {
		name: "active gateway",
		f:    dualFacts(d1, "n1"),
		want: `# ip link
strait-overlay: vxlan id 4100 local 192.168.1.11 dstport 4801 nolearning mtu 1450 address 0a:53:c0:a8:01:0b up
# ip addr
inet 10.1.2.1/32 dev strait-overlay
inet 240.168.1.11/8 dev strait-overlay
inet6 fd01:0:0:2::1/128 dev strait-overlay
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
fd01::/64 via fd53:7472:6169:7400::c0a8:10c dev strait-overlay table 152 mtu 1420
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
			got, _, _ := strings.Cut(s.String(), "# iptables-save")
			if got != tc.want {
				t.Errorf("state:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// On an IPv6 node network the overlay carries IPv4 too, through an IPv4
// overlay address made from the node's last three bytes.
func TestComputeIPv6UnderlayCarriesIPv4(t *testing.T) {
	a := Node{Name: "a", IP: netip.MustParseAddr("fd00:192:168:1::11"), PodCIDRs: pfx("10.1.0.0/24", "fd01::/64")}
	b := Node{Name: "b", IP: netip.MustParseAddr("fd00:192:168:1::12"), PodCIDRs: pfx("10.1.1.0/24", "fd01:0:0:1::/64")}
	s, err := Compute(Facts{Self: b, Nodes: []Node{a, b}, Active: "a", Cable: "vxlan", UnderlayMTU: 1500,
		Local: pfx("10.1.0.0/16", "fd01::/48"), Remote: pfx("10.2.0.0/16", "fd02::/48")})
	if err != nil {
		t.Fatal(err)
	}
	stateHas(t, s,
		"strait-overlay: vxlan id 4100 local fd00:192:168:1::12 dstport 4801 nolearning mtu 1430 ",
		"inet 240.0.0.18/8 dev strait-overlay\n",
		"inet6 fd53:7472:6169:7400::12/64 dev strait-overlay\n",
		"10.2.0.0/16 via 240.0.0.17 dev strait-overlay table 151 src 10.1.1.1 mtu 1430\n",
		"fd02::/48 via fd53:7472:6169:7400::11 dev strait-overlay table 151 src fd01:0:0:1::1 mtu 1430\n",
		"240.0.0.17 dev strait-overlay lladdr 0a:53:00:00:00:11 PERMANENT\n",
		"fd53:7472:6169:7400::11 dev strait-overlay lladdr 0a:53:00:00:00:11 PERMANENT\n",
		"0a:53:00:00:00:11 dev strait-overlay dst fd00:192:168:1::11 self permanent\n",
	)
}

// Nodes whose overlay addresses of the other family collide are rejected
// too: IPv6 nodes with equal last three bytes share an IPv4 overlay address.
func TestValidateBothFamilies(t *testing.T) {
	a := Node{Name: "v6a", IP: netip.MustParseAddr("fd00::1:112")}
	b := Node{Name: "v6b", IP: netip.MustParseAddr("fd00::201:112")}
	if err := Validate([]Node{a, b}); err == nil || !strings.Contains(err.Error(), "240.1.1.18") {
		t.Errorf("colliding IPv4 overlay addresses of IPv6 nodes: %v", err)
	}
}

// The dual-stack states in a throwaway namespace: they apply and read back
// as computed, and the kernel routes a remote IPv6 destination, like an
// IPv4 one, through the overlay to the active gateway (before, the IPv6
// one was unreachable on every node but the gateway's).
func TestDualStackStatesInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a throwaway network namespace (nodenet-test-routeagent-dual)")
	}
	const ns = "nodenet-test-routeagent-dual"
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	run("ip", "-n", ns, "addr", "add", "192.168.1.12/24", "dev", "eth0")
	run("ip", "-n", ns, "link", "set", "eth0", "up")
	// The cable device, for the gateway's iif rule (no dummy module here).
	run("ip", "-n", ns, "link", "add", CableInterface, "type", "veth", "peer", "name", "cablep")
	run("ip", "-n", ns, "link", "set", CableInterface, "up")
	// get is ip route get: its answer, or its error ("unreachable").
	get := func(args ...string) string {
		out, _ := exec.Command("ip", append([]string{"-n", ns, "route", "get"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	host, closeFn, err := nodenet.HostAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	a := &nodenet.Applier{Kernel: host, Scope: Scope()}
	apply := func(f Facts) { t.Helper(); applyReadBack(t, a, f) }
	apply(dualFacts(d2, "n1"))
	for _, tc := range []struct{ dst, want string }{
		{"10.2.3.4", "10.2.3.4 via 240.168.1.11 dev strait-overlay table 151 src 10.1.0.1"},
		{"fd02::1234", "fd02::1234 from :: via fd53:7472:6169:7400::c0a8:10b dev strait-overlay table 151 src fd01::1"},
	} {
		if got := get(tc.dst); !strings.HasPrefix(got, tc.want) {
			t.Errorf("ip route get %s on a non-gateway node: %s, want %s", tc.dst, got, tc.want)
		}
	}
	// Now n2 is the active gateway: cable traffic for n1's pods, of
	// either family, goes back through the overlay.
	apply(dualFacts(d2, "n2"))
	for _, tc := range []struct{ dst, from, want string }{
		{"10.1.2.5", "10.2.0.5", "10.1.2.5 from 10.2.0.5 via 240.168.1.11 dev strait-overlay table 152"},
		{"fd01:0:0:2::5", "fd02::5", "fd01:0:0:2::5 from fd02::5 via fd53:7472:6169:7400::c0a8:10b dev strait-overlay table 152"},
	} {
		if got := get(tc.dst, "from", tc.from, "iif", CableInterface); !strings.HasPrefix(got, tc.want) {
			t.Errorf("ip route get %s iif %s on the gateway: %s, want %s", tc.dst, CableInterface, got, tc.want)
		}
	}
	if err := Cleanup(host); err != nil {
		t.Fatal(err)
	}
}

// Two nodes of a dual-stack cluster in throwaway namespaces, joined by a
// veth (their IPv4 node network): with the route agent's states applied,
// the non-gateway node n2 reaches an address of a remote subnet on the
// active gateway n1 over the overlay in both families. (The remote
// addresses sit on n1 itself and n1 routes the replies by hand, in its main
// table, as its table 152 would route cable traffic.)
func TestDualStackOverlayCarriesBothFamilies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates throwaway network namespaces (nodenet-test-ra-n1, nodenet-test-ra-n2)")
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	nss := map[string]Node{"nodenet-test-ra-n1": d1, "nodenet-test-ra-n2": d2}
	for ns := range nss {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("ip", "-n", "nodenet-test-ra-n1", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", "nodenet-test-ra-n2")
	for ns, n := range nss {
		run("ip", "-n", ns, "addr", "add", n.IP.String()+"/24", "dev", "eth0")
		run("ip", "-n", ns, "link", "set", "eth0", "up")
		run("ip", "-n", ns, "link", "set", "lo", "up")
		host, closeFn, err := nodenet.HostAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeFn)
		s, err := Compute(dualFacts(n, "n1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := (&nodenet.Applier{Kernel: host, Scope: Scope()}).Apply(s); err != nil {
			t.Fatal(err)
		}
	}
	gw := "nodenet-test-ra-n1"
	run("ip", "-n", gw, "addr", "add", "10.2.0.1/32", "dev", "lo")
	run("ip", "-n", gw, "addr", "add", "fd02::1/128", "dev", "lo", "nodad")
	run("ip", "-n", gw, "route", "add", "10.1.0.0/24", "via", "240.168.1.12", "dev", OverlayInterface, "onlink")
	run("ip", "-n", gw, "route", "add", "fd01::/64", "via", "fd53:7472:6169:7400::c0a8:10c", "dev", OverlayInterface, "onlink")
	for _, dst := range []string{"10.2.0.1", "fd02::1"} {
		// 3000 bytes: fragmented to the route's MTU, reassembled.
		if out, err := exec.Command("ip", "netns", "exec", "nodenet-test-ra-n2", "ping", "-c", "1", "-W", "5", "-s", "3000", dst).CombinedOutput(); err != nil {
			t.Errorf("n2 → %s over the overlay: %v\n%s", dst, err, out)
		}
	}
}
