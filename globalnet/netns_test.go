package globalnet

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"strait.dev/strait/pkg/nodenet"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates throwaway network namespaces (gn-test-*) with veths and iptables rules")
	}
	for _, bin := range []string{"ip", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNetns(t *testing.T, name string) string {
	t.Helper()
	name = "gn-test-" + name
	_ = exec.Command("ip", "netns", "del", name).Run()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// routeAgentNAT is the route agent's nat chain on a gateway node as it
// renders it (routeagent.chains): cross-cluster traffic from the local pod
// CIDR is exempt from masquerade, ACCEPT ending nat POSTROUTING.
func routeAgentNAT(local, remote string) nodenet.Chain {
	return nodenet.Chain{Family: nodenet.IPv4, Table: "nat", Name: nodenet.NATChain, From: "POSTROUTING", Comment: nodenet.RouteAgentJumpComment,
		Rules: [][]string{{"-s", local, "-d", remote, "-m", "comment", "--comment", nodenet.NoMasqueradeComment, "-j", "ACCEPT"}}}
}

// A pod's packet into the cable leaves with the cluster's global IP, and a
// packet to a headless pod's global IP reaches the pod, whichever of the
// route agent and Globalnet applied its chains first (the route agent's
// ACCEPT would end nat POSTROUTING before the SNAT): a pod namespace, a
// gateway-node namespace whose cable is a veth named strait-cable, and a
// remote namespace behind it.
func TestNATInNetns(t *testing.T) {
	requireRoot(t)
	gn := ComputeNAT(NATFacts{
		GlobalCIDR: globalCIDR,
		Cluster:    []netip.Addr{netip.MustParseAddr("242.1.0.2"), netip.MustParseAddr("242.1.0.3")},
		Pods:       []PodNAT{{IP: netip.MustParseAddr("10.1.0.6"), Ingress: netip.MustParseAddr("242.1.0.20")}},
	})
	ra := routeAgentNAT("10.1.0.0/16", "242.2.0.0/16")
	for _, order := range []string{"route agent first", "globalnet first"} {
		t.Run(order, func(t *testing.T) {
			pod, node, remote := newNetns(t, "pod"), newNetns(t, "node"), newNetns(t, "remote")
			sh(t, "ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "pod0", "netns", node)
			sh(t, "ip", "-n", pod, "addr", "add", "10.1.0.5/24", "dev", "eth0")
			sh(t, "ip", "-n", pod, "addr", "add", "10.1.0.6/24", "dev", "eth0")
			sh(t, "ip", "-n", node, "addr", "add", "10.1.0.1/24", "dev", "pod0")
			sh(t, "ip", "-n", node, "link", "add", nodenet.CableDevice, "type", "veth", "peer", "name", "cable0", "netns", remote)
			sh(t, "ip", "-n", node, "addr", "add", "172.30.0.1/30", "dev", nodenet.CableDevice)
			sh(t, "ip", "-n", remote, "addr", "add", "172.30.0.2/30", "dev", "cable0")
			sh(t, "ip", "-n", remote, "addr", "add", "242.2.0.5/32", "dev", "lo")
			for _, l := range [][2]string{{pod, "eth0"}, {node, "pod0"}, {node, nodenet.CableDevice}, {remote, "cable0"}} {
				sh(t, "ip", "-n", l[0], "link", "set", l[1], "up")
			}
			sh(t, "ip", "-n", pod, "route", "add", "default", "via", "10.1.0.1")
			sh(t, "ip", "-n", node, "route", "add", "242.2.0.0/16", "via", "172.30.0.2")
			sh(t, "ip", "-n", remote, "route", "add", "242.1.0.0/16", "via", "172.30.0.1")
			sh(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")

			k, closeFn, err := nodenet.HostAt(node)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(closeFn)
			applyGN := func() {
				if err := (&nodenet.Applier{Kernel: k, Scope: NATScope()}).Apply(gn); err != nil {
					t.Fatal(err)
				}
			}
			applyRA := func() {
				if err := nodenet.SyncChains(k, []nodenet.Chain{ra}, []nodenet.Chain{ra}); err != nil {
					t.Fatal(err)
				}
			}
			if order == "route agent first" {
				applyRA()
				applyGN()
			} else {
				applyGN()
				applyRA()
			}
			// The rules are in iptables-save's normal form: read back, they
			// equal the state, so a resync rewrites nothing.
			got, err := (&nodenet.Applier{Kernel: k, Scope: NATScope()}).Read()
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != gn.String() {
				t.Errorf("read back:\n%s\nwant:\n%s", got, gn)
			}
			save := sh(t, "ip", "netns", "exec", node, "iptables-save", "-t", "nat")
			if !strings.Contains(save, "-A POSTROUTING -m comment --comment \"strait globalnet\" -j STRAIT-GN-EGRESS\n-A POSTROUTING -m comment --comment \"strait route agent\" -j STRAIT-POSTROUTING\n") {
				t.Errorf("jumps not in order:\n%s", save)
			}

			// A pod (10.1.0.5) → remote: seen from the cluster's range.
			if got := udpSource(t, pod, "10.1.0.5", remote, "242.2.0.5:7000"); got != "242.1.0.2" && got != "242.1.0.3" {
				t.Errorf("remote saw the pod's packet from %s, want 242.1.0.2-242.1.0.3", got)
			}
			// The headless pod (10.1.0.6) → remote: its own global IP.
			if got := udpSource(t, pod, "10.1.0.6", remote, "242.2.0.5:7001"); got != "242.1.0.20" {
				t.Errorf("remote saw the headless pod's packet from %s, want 242.1.0.20", got)
			}
			// Remote → the headless pod's global IP: reaches 10.1.0.6.
			if got := udpDest(t, remote, pod, "10.1.0.6:7002", "242.1.0.20:7002"); got != "10.1.0.6" {
				t.Errorf("the packet to 242.1.0.20 reached %s, want 10.1.0.6", got)
			}
		})
	}
}

// udpSource sends a datagram from src in namespace from to dst in namespace
// to and returns the source address it arrived with.
func udpSource(t *testing.T, from, src, to, dst string) string {
	t.Helper()
	var srv *net.UDPConn
	if err := nodenet.InNetns(to, func() (err error) {
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	send(t, from, src, dst)
	buf := make([]byte, 64)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second)) // a bound on a lost packet, not a timing assertion
	_, addr, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		return fmt.Sprintf("nowhere (%v)", err)
	}
	return addr.Addr().String()
}

// udpDest sends a datagram from namespace from to dst and returns the
// address of namespace to's listener (bound to listen) that got it.
func udpDest(t *testing.T, from, to, listen, dst string) string {
	t.Helper()
	var srv *net.UDPConn
	if err := nodenet.InNetns(to, func() (err error) {
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(listen)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	send(t, from, "", dst)
	buf := make([]byte, 64)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
		return fmt.Sprintf("nowhere (%v)", err)
	}
	return netip.MustParseAddrPort(listen).Addr().String()
}

func send(t *testing.T, ns, src, dst string) {
	t.Helper()
	if err := nodenet.InNetns(ns, func() error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("strait"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
