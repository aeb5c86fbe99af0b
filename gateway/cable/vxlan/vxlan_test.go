package vxlan

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
)

// Two "gateways" in throwaway namespaces, each with a "pod" in a namespace
// of its own behind it (a veth, as the sandbox's CNI does it), joined by the
// VXLAN cable over a veth underlay. The pods' addresses are not the gateways'
// own, so the remote gateway must answer ARP for them by proxy.

const helperEnv = "STRAIT_VXLAN_TEST_HELPER"

// testTable is the route table the tests open the driver with.
const testTable = 150

type helperSpec struct {
	Address netip.Prefix `json:"address"` // the cable's own address (health-check address)
	Pod     netip.Prefix `json:"pod"`     // the pod's address, routed to the veth "pod"
	Peer    cable.Peer   `json:"peer"`
	// IPv6Underlay opens the device for IPv6 endpoints; Pod is then unset.
	IPv6Underlay bool `json:"ipv6Underlay"`
}

func TestMain(m *testing.M) {
	var s helperSpec
	cabletest.HelperMain(helperEnv, &s, func() (string, func(), error) {
		ctx := context.Background()
		d, err := Open(ctx, cable.Config{Interface: "strait-cable", MTU: 1450, RouteTable: testTable, ListenPort: 4800, VNI: 100, IPv6Underlay: s.IPv6Underlay})
		if err != nil {
			return "", nil, err
		}
		for range 2 { // the second call must change nothing
			if err := d.Set(ctx, []cable.Peer{s.Peer}); err != nil {
				d.Close()
				return "", nil, err
			}
		}
		steps := [][]string{{"addr", "add", s.Address.String(), "dev", "strait-cable"}}
		if s.Pod.IsValid() {
			steps = append(steps, []string{"link", "set", "pod", "up"}, []string{"route", "add", s.Pod.String(), "dev", "pod"})
		}
		for _, sub := range s.Peer.Subnets {
			steps = append(steps, []string{"rule", "add", "to", sub.String(), "lookup", fmt.Sprint(testTable)})
		}
		for _, st := range steps {
			if out, err := exec.Command("ip", st...).CombinedOutput(); err != nil {
				d.Close()
				return "", nil, errors.New(strings.Join(st, " ") + ": " + string(out))
			}
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			d.Close()
			return "", nil, err
		}
		return "ok", func() { d.Close() }, nil
	})
	os.Exit(m.Run())
}

func TestVXLANBetweenNamespaces(t *testing.T) {
	cabletest.RequireRoot(t)
	a, b := cabletest.Pair(t, "stvxtest-")
	pods := map[string]string{a: "10.91.5.5", b: "10.92.5.5"}
	gwAddr := map[string]string{a: "10.91.0.1", b: "10.92.0.1"}
	for gw, ip := range pods {
		pod := gw + "-pod"
		_ = exec.Command("ip", "netns", "del", pod).Run()
		cabletest.Run(t, "ip", "netns", "add", pod)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
		cabletest.Run(t, "ip", "-n", gw, "link", "add", "pod", "type", "veth", "peer", "name", "eth0", "netns", pod)
		cabletest.Run(t, "ip", "-n", pod, "addr", "add", ip+"/32", "dev", "eth0")
		cabletest.Run(t, "ip", "-n", pod, "link", "set", "eth0", "up")
		cabletest.Run(t, "ip", "-n", pod, "route", "add", gwAddr[gw], "dev", "eth0", "scope", "link")
		cabletest.Run(t, "ip", "-n", pod, "route", "add", "default", "via", gwAddr[gw], "dev", "eth0")
	}
	_, stopA := cabletest.Helper(t, a, helperEnv, helperSpec{
		Address: netip.MustParsePrefix("10.91.0.1/32"), Pod: netip.MustParsePrefix("10.91.5.5/32"),
		Peer: cable.Peer{Name: "b", Endpoint: netip.MustParseAddrPort(cabletest.AddrB + ":4800"), Subnets: []netip.Prefix{netip.MustParsePrefix("10.92.0.0/16")}},
	})
	_, stopB := cabletest.Helper(t, b, helperEnv, helperSpec{
		Address: netip.MustParsePrefix("10.92.0.1/32"), Pod: netip.MustParsePrefix("10.92.5.5/32"),
		Peer: cable.Peer{Name: "a", Endpoint: netip.MustParseAddrPort(cabletest.AddrA + ":4800"), Subnets: []netip.Prefix{netip.MustParsePrefix("10.91.0.0/16")}},
	})
	// Proxy ARP answers at once on both sides, and the device's IPv6
	// link-local address, the source of its neighbour solicitations, is
	// usable at once.
	for _, ns := range []string{a, b} {
		if got := strings.TrimSpace(cabletest.Run(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/neigh/strait-cable/proxy_delay")); got != "0" {
			t.Errorf("%s: proxy_delay of strait-cable is %s, want 0 (proxy ARP answers delayed up to that many hundredths of a second)", ns, got)
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			for setting, want := range map[string]string{"retrans_time_ms": "100", "mcast_solicit": "10"} {
				if got := strings.TrimSpace(cabletest.Run(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/net/"+fam+"/neigh/strait-cable/"+setting)); got != want {
					t.Errorf("%s: %s neighbour %s of strait-cable is %s, want %s (a solicitation lost in a failover is asked again after that long)", ns, fam, setting, got, want)
				}
			}
		}
		if got := strings.TrimSpace(cabletest.Run(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv6/conf/strait-cable/accept_dad")); got != "0" {
			t.Errorf("%s: accept_dad of strait-cable is %s, want 0 (no neighbour solicitation leaves before DAD of the link-local address ends)", ns, got)
		}
		if ll := cabletest.Run(t, "ip", "-n", ns, "-6", "addr", "show", "dev", "strait-cable", "scope", "link"); !strings.Contains(ll, "fe80::") || strings.Contains(ll, "tentative") {
			t.Errorf("%s: the link-local address of strait-cable is missing or tentative right after Open:\n%s", ns, ll)
		}
	}
	// From a's "pod" address to b's, through the cable, and a packet larger
	// than the cable's MTU.
	cabletest.Run(t, "ip", "netns", "exec", a+"-pod", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.92.5.5")
	cabletest.Run(t, "ip", "netns", "exec", a+"-pod", "ping", "-c", "1", "-s", "3000", "-W", "2", "10.92.5.5")
	fdb := cabletest.Run(t, "bridge", "-n", a, "fdb", "show", "dev", "strait-cable")
	if strings.Count(fdb, "00:00:00:00:00:00 dst "+cabletest.AddrB) != 1 {
		t.Errorf("FDB of a after two identical Set calls:\n%s", fdb)
	}
	stopA()
	stopB()
	if out, err := exec.Command("ip", "-n", a, "link", "show", "strait-cable").CombinedOutput(); err == nil {
		t.Errorf("device still there after Close:\n%s", out)
	}
}

// Over an IPv6 underlay the device is an IPv6 one and takes the peer's
// IPv6 endpoint as its FDB entry. Before, the device was always IPv4 and the entry was
// refused ("address family not supported by protocol"), seen in the
// IPv6-only sandbox: no VXLAN cable came up.
func TestIPv6Underlay(t *testing.T) {
	cabletest.RequireRoot(t)
	a, b := cabletest.Pair(t, "stvx6test-")
	cabletest.Run(t, "ip", "-n", a, "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad")
	cabletest.Run(t, "ip", "-n", b, "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
	_, stop := cabletest.Helper(t, a, helperEnv, helperSpec{
		Address: netip.MustParsePrefix("fd01::1/128"), IPv6Underlay: true,
		Peer: cable.Peer{Name: "b", Endpoint: netip.MustParseAddrPort("[2001:db8::2]:4800")},
	})
	fdb := cabletest.Run(t, "bridge", "-n", a, "fdb", "show", "dev", "strait-cable")
	if strings.Count(fdb, "00:00:00:00:00:00 dst 2001:db8::2") != 1 {
		t.Errorf("FDB of a:\n%s", fdb)
	}
	stop()
}

func TestRejectsBadVNI(t *testing.T) {
	for _, vni := range []int{0, -1, 1 << 24} {
		if _, err := Open(context.Background(), cable.Config{Interface: "x", RouteTable: testTable, VNI: vni}); err == nil || !strings.Contains(err.Error(), "VNI") {
			t.Errorf("VNI %d: %v", vni, err)
		}
	}
}

// A device left by a predecessor for the other underlay family (its FDB
// says which) is made anew rather than adopted: adopted, it would refuse
// every FDB entry of the family wanted.
func TestDeviceOfTheOtherFamilyIsMadeAnew(t *testing.T) {
	cabletest.RequireRoot(t)
	a, _ := cabletest.Pair(t, "stvxfam-")
	cabletest.Run(t, "ip", "-n", a, "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad")
	for _, tc := range []struct {
		name       string
		leftover   []string // how the predecessor's device was made: ip link add ... type vxlan <leftover>
		leftoverTo string   // its FDB entry's destination
		ipv6       bool
		peer       string
		want       string
	}{
		{"IPv4 device, IPv6 wanted", nil, cabletest.AddrB, true, "[2001:db8::2]:4800", "dst 2001:db8::2"},
		{"IPv6 device, IPv4 wanted", []string{"local", "::"}, "2001:db8::2", false, cabletest.AddrB + ":4800", "dst " + cabletest.AddrB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cabletest.Run(t, append([]string{"ip", "-n", a, "link", "add", "strait-cable", "type", "vxlan", "id", "100", "dstport", "4800"}, tc.leftover...)...)
			cabletest.Run(t, "bridge", "-n", a, "fdb", "append", "00:00:00:00:00:00", "dev", "strait-cable", "dst", tc.leftoverTo)
			_, stop := cabletest.Helper(t, a, helperEnv, helperSpec{
				Address: netip.MustParsePrefix("fd01::1/128"), IPv6Underlay: tc.ipv6,
				Peer: cable.Peer{Name: "b", Endpoint: netip.MustParseAddrPort(tc.peer)},
			})
			fdb := cabletest.Run(t, "bridge", "-n", a, "fdb", "show", "dev", "strait-cable")
			if !strings.Contains(fdb, tc.want) || strings.Contains(fdb, "dst "+tc.leftoverTo+" ") {
				t.Errorf("FDB of the device: want only the entry %q:\n%s", tc.want, fdb)
			}
			stop()
		})
	}
}
