package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"strait.dev/strait/pkg/nodenet"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates throwaway network namespaces (health-pmtu-*) with veth devices and iptables rules")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (iproute2, iptables packages): %v", bin, err)
		}
	}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func netnsNamed(t *testing.T, name string) string {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run() // a killed run's leftover
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// listenIn opens a UDP socket in namespace ns on addr.
func listenIn(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := nodenet.InNetns(ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPMTUSearchOverANarrowPath runs two probers in two network namespaces
// joined through a third, a router whose link towards B is narrowed to 1400
// bytes: with the link's MTU (the router answers with ICMP "fragmentation
// needed", which the probes ignore) or with a DROP of larger packets (no
// ICMP at all). Each side finds 1400; a device narrower than the path is
// found through the device's own refusal.
func TestPMTUSearchOverANarrowPath(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name   string
		narrow func(r string)
		// deviceMTU is A's and B's device MTU; want is what each finds.
		deviceMTU, want int
	}{
		{"link MTU with ICMP", func(r string) {
			// The router's links both ways: a veth takes in a few bytes
			// over its MTU, so a narrow ingress would not do.
			sh(t, "ip", "-n", r, "link", "set", "to-a", "mtu", "1400")
			sh(t, "ip", "-n", r, "link", "set", "to-b", "mtu", "1400")
		}, 1500, 1400},
		{"silent DROP without ICMP", func(r string) {
			sh(t, "ip", "netns", "exec", r, "iptables", "-A", "FORWARD", "-m", "length", "--length", "1401:65535", "-j", "DROP")
		}, 1500, 1400},
		{"device narrower than the path", func(string) {}, 1300, 1300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, r, b := netnsNamed(t, "health-pmtu-a"), netnsNamed(t, "health-pmtu-r"), netnsNamed(t, "health-pmtu-b")
			sh(t, "ip", "-n", a, "link", "add", "eth-a", "type", "veth", "peer", "name", "to-a", "netns", r)
			sh(t, "ip", "-n", b, "link", "add", "eth-b", "type", "veth", "peer", "name", "to-b", "netns", r)
			sh(t, "ip", "-n", a, "link", "set", "eth-a", "mtu", fmt.Sprint(tc.deviceMTU))
			sh(t, "ip", "-n", b, "link", "set", "eth-b", "mtu", fmt.Sprint(tc.deviceMTU))
			for _, c := range [][]string{
				{a, "eth-a", "192.0.2.1/30"}, {r, "to-a", "192.0.2.2/30"},
				{r, "to-b", "192.0.2.5/30"}, {b, "eth-b", "192.0.2.6/30"},
			} {
				sh(t, "ip", "-n", c[0], "addr", "add", c[2], "dev", c[1])
				sh(t, "ip", "-n", c[0], "link", "set", c[1], "up")
			}
			sh(t, "ip", "-n", a, "route", "add", "default", "via", "192.0.2.2")
			sh(t, "ip", "-n", b, "route", "add", "default", "via", "192.0.2.5")
			sh(t, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			tc.narrow(r)

			addrA, addrB := netip.MustParseAddrPort("192.0.2.1:4491"), netip.MustParseAddrPort("192.0.2.6:4491")
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			o := Options{Interval: 20 * time.Millisecond, Failures: 50, PMTU: &PMTUOptions{}}
			pa, pb := NewProber(listenIn(t, a, addrA), o), NewProber(listenIn(t, b, addrB), o)
			pa.SetTargets(map[string]netip.AddrPort{"b": addrB})
			pb.SetTargets(map[string]netip.AddrPort{"a": addrA})
			go func() { _ = pa.Run(ctx) }()
			go func() { _ = pb.Run(ctx) }()
			for _, side := range []struct {
				p      *Prober
				target string
			}{{pa, "b"}, {pb, "a"}} {
				var last Result
				if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
					last = side.p.Results()[side.target]
					return last.PathMTU != 0, nil
				}); err != nil {
					t.Fatalf("no path MTU to %s: last result %+v", side.target, last)
				}
				if last.PathMTU != tc.want {
					t.Errorf("path MTU to %s = %d, want %d", side.target, last.PathMTU, tc.want)
				}
			}
		})
	}
}
