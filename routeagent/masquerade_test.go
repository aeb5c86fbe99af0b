package routeagent

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"strait.dev/strait/pkg/nodenet"
)

// kubeProxyNFTables is the part of kube-proxy 1.37's nftables ruleset
// (pkg/proxy/nftables, table ip kube-proxy) that decides masquerade, for one
// Service 10.101.0.10:80 with one endpoint 10.1.2.10:8080 in a cluster whose
// --cluster-cidr is 10.1.0.0/16: traffic to the ClusterIP from outside the
// cluster CIDR is marked 0x4000 at DNAT, and marked traffic is masqueraded
// by a nat postrouting base chain of its own.
const kubeProxyNFTables = `table ip kube-proxy {
	chain mark-for-masquerade {
		meta mark set meta mark or 0x4000
	}
	chain masquerading {
		meta mark & 0x4000 != 0 meta mark set meta mark xor 0x4000 masquerade fully-random
	}
	chain services {
		ip daddr 10.101.0.10 ip saddr != 10.1.0.0/16 jump mark-for-masquerade
		ip daddr 10.101.0.10 tcp dport 80 dnat to 10.1.2.10:8080
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}
}
`

// kubeProxyIPTables is the same decision in kube-proxy's iptables mode
// (pkg/proxy/iptables): KUBE-MARK-MASQ in nat PREROUTING, the masquerade in
// KUBE-POSTROUTING, jumped to from nat POSTROUTING.
const kubeProxyIPTables = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES ! -s 10.1.0.0/16 -d 10.101.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -d 10.101.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.1.2.10:8080
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
COMMIT
`

// A client in another cluster (10.2.0.5) reaching a local Service's
// ClusterIP through the active gateway keeps its address at the endpoint,
// whichever mode kube-proxy runs in, with real kernels in throwaway
// namespaces: a remote host, the gateway node (kube-proxy's rules, the
// cable driver's route, the route agent's state) and a pod. kube-proxy's
// rules are first the excerpts above, then those the real kube-proxy
// (_output/kube, as the sandbox runs it) writes for a Service on a real
// apiserver. Each case first shows that kube-proxy's rules do masquerade
// (no state of ours), then what the route agent's state without
// STRAIT-UNMARK-MASQ leaves (in nftables mode: masquerade, the bug), then
// that the whole state keeps the source.
func TestRemoteClientKeepsSourceThroughKubeProxy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates throwaway network namespaces (strait-h-nft-*) with nftables and iptables rules")
	}
	for _, bin := range []string{"ip", "nft", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (iproute2, nftables, iptables packages): %v", bin, err)
		}
	}
	api := newLazyAPIServer(t)
	real := func(mode string) func(t *testing.T, ns string) {
		return func(t *testing.T, ns string) { startKubeProxy(t, api, ns, mode) }
	}
	for _, tc := range []struct {
		name string
		// service is the Service's ClusterIP, port 80, whose endpoint is
		// the pod's 10.1.2.10:8080.
		service string
		// install puts kube-proxy's rules into namespace ns.
		install func(t *testing.T, ns string)
		// keptWithoutUnmark: whether the source survives the state without
		// STRAIT-UNMARK-MASQ's rules.
		keptWithoutUnmark bool
	}{
		{"nftables rules", "10.101.0.10", func(t *testing.T, ns string) {
			runIn(t, kubeProxyNFTables, "ip", "netns", "exec", ns, "nft", "-f", "-")
		}, false},
		{"iptables rules", "10.101.0.10", func(t *testing.T, ns string) {
			runIn(t, kubeProxyIPTables, "ip", "netns", "exec", ns, "iptables-restore", "--noflush")
		}, true},
		{"kube-proxy nftables", kubeProxyServiceIP, real("nftables"), false},
		{"kube-proxy iptables", kubeProxyServiceIP, real("iptables"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, remote, pod := newNS(t, "node"), newNS(t, "remote"), newNS(t, "pod")
			// The node: n1 of facts(), the active gateway. Its cable to the
			// remote cluster is a veth; the cable driver's route for the
			// remote pod CIDR is in the gateway's table and rule.
			sh(t, "ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
			sh(t, "ip", "-n", node, "addr", "add", "192.168.1.11/24", "dev", "eth0")
			sh(t, "ip", "-n", node, "link", "set", "eth0", "up")
			link(t, node, "cable0", "172.31.0.1/30", remote, "eth0", "172.31.0.2/30")
			sh(t, "ip", "-n", remote, "addr", "add", "10.2.0.5/32", "dev", "lo")
			sh(t, "ip", "-n", remote, "route", "add", "default", "via", "172.31.0.1", "src", "10.2.0.5")
			gw := fmt.Sprint(nodenet.GatewayTable)
			sh(t, "ip", "-n", node, "route", "add", "10.2.0.0/16", "via", "172.31.0.2", "table", gw)
			sh(t, "ip", "-n", node, "rule", "add", "to", "10.2.0.0/16", "priority", fmt.Sprint(nodenet.GatewayPriority), "table", gw)
			// The pod, in n1's pod CIDR 10.1.2.0/24.
			link(t, node, "pod0", "10.1.2.254/24", pod, "eth0", "10.1.2.10/24")
			sh(t, "ip", "-n", pod, "route", "add", "default", "via", "10.1.2.254")
			sh(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			tc.install(t, node)

			peers := serveRemoteAddr(t, pod, "10.1.2.10:8080")
			ask := func() netip.Addr {
				t.Helper()
				var c net.Conn
				err := nodenet.InNetns(remote, func() error {
					var err error
					d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("10.2.0.5")}, Timeout: 5 * time.Second}
					c, err = d.Dial("tcp", net.JoinHostPort(tc.service, "80"))
					return err
				})
				if err != nil {
					t.Fatalf("connect to the Service: %v", err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadAll(c); err != nil {
					t.Fatalf("read from the Service: %v", err)
				}
				return <-peers
			}
			client := netip.MustParseAddr("10.2.0.5")
			if got := ask(); got == client {
				t.Fatalf("without the route agent the endpoint saw %s: the %s do not masquerade, the test proves nothing", got, tc.name)
			}

			host, closeFn, err := nodenet.HostAt(node)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(closeFn)
			a := &nodenet.Applier{Kernel: host, Scope: Scope()}
			f := facts(n1, "n1", "10.2.0.0/16", "10.102.0.0/16")
			f.Families = []nodenet.Family{nodenet.IPv4}
			want, err := Compute(f)
			if err != nil {
				t.Fatal(err)
			}
			without := want
			without.Chains = nil
			for _, c := range want.Chains {
				if c.Name == nodenet.UnmarkMasqChain {
					c.Rules = nil
				}
				without.Chains = append(without.Chains, c)
			}
			if err := a.Apply(without); err != nil {
				t.Fatal(err)
			}
			if got := ask(); (got == client) != tc.keptWithoutUnmark {
				t.Errorf("without %s's rules the endpoint saw %s; kept=%v expected", nodenet.UnmarkMasqChain, got, tc.keptWithoutUnmark)
			}
			if err := a.Apply(want); err != nil {
				t.Fatal(err)
			}
			if got := ask(); got != client {
				t.Errorf("with the route agent's state the endpoint saw %s, want the client's %s", got, client)
			}
		})
	}
}

// serveRemoteAddr accepts TCP connections on addr in namespace ns until the
// test ends; each connection is closed at once and its peer's address sent
// on the returned channel.
func serveRemoteAddr(t *testing.T, ns, addr string) <-chan netip.Addr {
	t.Helper()
	var l net.Listener
	if err := nodenet.InNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	out := make(chan netip.Addr, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			out <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}
	}()
	return out
}

// newNS creates network namespace strait-h-nft-<suffix> with lo up and
// deletes it when the test ends.
func newNS(t *testing.T, suffix string) string {
	t.Helper()
	name := "strait-h-nft-" + suffix
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// link joins namespace a's device da to b's db with a veth, addressed and up.
func link(t *testing.T, a, da, addrA, b, db, addrB string) {
	t.Helper()
	sh(t, "ip", "-n", a, "link", "add", da, "type", "veth", "peer", "name", db, "netns", b)
	sh(t, "ip", "-n", a, "addr", "add", addrA, "dev", da)
	sh(t, "ip", "-n", b, "addr", "add", addrB, "dev", db)
	sh(t, "ip", "-n", a, "link", "set", da, "up")
	sh(t, "ip", "-n", b, "link", "set", db, "up")
}

func sh(t *testing.T, args ...string) { t.Helper(); runIn(t, "", args...) }

// runIn runs a command with stdin and fails the test with its output if it
// fails.
func runIn(t *testing.T, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
