package cable_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
)

// SetRoutes replaces new routes in before it deletes stale ones, changes
// nothing when called again, and leaves other devices' routes in the table.
func TestSetRoutesMakesBeforeBreaking(t *testing.T) {
	nl := &cabletest.Netlink{}
	idx := nl.AddLink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "strait-cable"}})
	other := nl.AddLink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}})
	_, otherDst, _ := net.ParseCIDR("10.9.0.0/16")
	if err := nl.RouteReplace(&netlink.Route{LinkIndex: other, Dst: otherDst, Table: 150}); err != nil {
		t.Fatal(err)
	}
	link, err := nl.LinkByName("strait-cable")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().Index != idx {
		t.Fatalf("index %d, want %d", link.Attrs().Index, idx)
	}
	peers := func(subnets ...string) []cable.Peer {
		p := cable.Peer{Name: "c2"}
		for _, s := range subnets {
			p.Subnets = append(p.Subnets, netip.MustParsePrefix(s))
		}
		return []cable.Peer{p}
	}
	for _, step := range []struct {
		subnets []string
		want    string
	}{
		{[]string{"10.2.0.0/16", "fd02::/48"}, "route replace 10.2.0.0/16 table 150 dev strait-cable scope link\nroute replace fd02::/48 table 150 dev strait-cable scope link"},
		{[]string{"10.3.0.0/16"}, "route replace 10.3.0.0/16 table 150 dev strait-cable scope link\nroute del 10.2.0.0/16 table 150 dev strait-cable scope link\nroute del fd02::/48 table 150 dev strait-cable scope link"},
	} {
		nl.Log = nil
		if err := cable.SetRoutes(nl, link, 150, peers(step.subnets...)); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(nl.Log, "\n"); got != step.want {
			t.Errorf("%v:\n%s\nwant:\n%s", step.subnets, got, step.want)
		}
		nl.Log = nil
		if err := cable.SetRoutes(nl, link, 150, peers(step.subnets...)); err != nil {
			t.Fatal(err)
		}
		if len(nl.Log) != 0 {
			t.Errorf("%v again changed: %q", step.subnets, nl.Log)
		}
	}
	if want := "link 1: strait-cable dummy mtu 0 down\n  route 10.3.0.0/16 table 150 scope link\nlink 2: eth0 dummy mtu 0 down\n  route 10.9.0.0/16 table 150 scope universe\n"; nl.String() != want {
		t.Errorf("state:\n%s\nwant:\n%s", nl.String(), want)
	}
}

// A peer with an IPv6 next hop (the VXLAN cable's remote gateway's IPv6
// health-check address) gets its IPv6 subnets via that address, after a
// host route to it through the device; IPv4 subnets stay on-link (proxy
// ARP answers for them). Again, nothing changes.
func TestSetRoutesIPv6NextHop(t *testing.T) {
	nl := &cabletest.Netlink{}
	nl.AddLink(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "strait-cable"}})
	link, err := nl.LinkByName("strait-cable")
	if err != nil {
		t.Fatal(err)
	}
	peers := []cable.Peer{{Name: "c2", Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("fd02::/48")},
		NextHops: []netip.Addr{netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("fd02::1")}}}
	if err := cable.SetRoutes(nl, link, 150, peers); err != nil {
		t.Fatal(err)
	}
	want := "route replace fd02::1/128 table 150 dev strait-cable scope link\nroute replace 10.2.0.0/16 table 150 dev strait-cable scope link\nroute replace fd02::/48 table 150 dev strait-cable via fd02::1 scope universe"
	if got := strings.Join(nl.Log, "\n"); got != want {
		t.Errorf("routes:\n%s\nwant:\n%s", got, want)
	}
	nl.Log = nil
	if err := cable.SetRoutes(nl, link, 150, peers); err != nil {
		t.Fatal(err)
	}
	if len(nl.Log) != 0 {
		t.Errorf("again changed: %q", nl.Log)
	}
}
