package cable_test

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
	"strait.dev/strait/pkg/nodenet"
)

// The kernel takes a peer's IPv6 routes via its next hop in table 150 (the
// next hop resolved through the host route in the same table), and
// SetRoutes again changes nothing.
func TestSetRoutesIPv6NextHopInNetns(t *testing.T) {
	cabletest.RequireRoot(t)
	const ns = "stroutes6test"
	_ = exec.Command("ip", "netns", "del", ns).Run()
	cabletest.Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	cabletest.Run(t, "ip", "-n", ns, "link", "add", "strait-cable", "type", "veth", "peer", "name", "other")
	cabletest.Run(t, "ip", "-n", ns, "link", "set", "strait-cable", "up")
	peers := []cable.Peer{{Name: "c2", Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd02::/48")},
		NextHops: []netip.Addr{netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("fd02::1")}}}
	for range 2 {
		if err := nodenet.InNetns(ns, func() error {
			link, err := netlink.LinkByName("strait-cable")
			if err != nil {
				return err
			}
			return cable.SetRoutes(&netlink.Handle{}, link, 150, peers)
		}); err != nil {
			t.Fatal(err)
		}
	}
	got := cabletest.Run(t, "ip", "-n", ns, "-6", "route", "show", "table", "150")
	for _, want := range []string{"fd02::1 dev strait-cable", "fd02::/48 via fd02::1 dev strait-cable"} {
		if !strings.Contains(got, want) {
			t.Errorf("IPv6 table 150 lacks %q:\n%s", want, got)
		}
	}
	if got := cabletest.Run(t, "ip", "-n", ns, "-4", "route", "show", "table", "150"); !strings.Contains(got, "10.2.0.0/16 dev strait-cable scope link") {
		t.Errorf("IPv4 table 150:\n%s", got)
	}
}
