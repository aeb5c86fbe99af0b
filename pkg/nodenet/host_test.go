package nodenet

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A family is the node's when the kernel opens its sockets and both of its
// packet-filter tools are installed.
func TestDetectFamilies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noAF    int    // a domain socket() refuses
		missing string // a binary lookPath does not find
		want    []Family
	}{
		{name: "both", want: []Family{IPv4, IPv6}},
		{name: "ipv6.disable=1", noAF: unix.AF_INET6, want: []Family{IPv4}},
		{name: "no ip6tables-restore", missing: "ip6tables-restore", want: []Family{IPv4}},
		{name: "no ip6tables-save", missing: "ip6tables-save", want: []Family{IPv4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := detectFamilies(func(domain int) error {
				if domain == tc.noAF {
					return unix.EAFNOSUPPORT
				}
				return nil
			}, func(bin string) (string, error) {
				if bin == tc.missing {
					return "", errors.New("not found")
				}
				return "/usr/sbin/" + bin, nil
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("families %v, want %v", got, tc.want)
			}
		})
	}
}

// fallbackRouter answers a dump of any family with every family's routes,
// as the kernel answers one of a family it lacks.
type fallbackRouter struct {
	asked  []int
	routes []netlink.Route
}

func (f *fallbackRouter) RouteListFiltered(family int, _ *netlink.Route, _ uint64) ([]netlink.Route, error) {
	f.asked = append(f.asked, family)
	return f.routes, nil
}
func (f *fallbackRouter) RouteReplace(*netlink.Route) error { return nil }
func (f *fallbackRouter) RouteDel(*netlink.Route) error     { return nil }

// Routes asks only for its families and keeps only routes of the family
// asked for, so a dump that fell back to all families lists nothing twice.
func TestNetlinkRoutesListsItsFamilies(t *testing.T) {
	dst := func(s string) *net.IPNet { return ipNet(netip.MustParsePrefix(s)) }
	nl := &fallbackRouter{routes: []netlink.Route{
		{Family: netlink.FAMILY_V4, Table: 151, Dst: dst("10.2.0.0/16"), Type: unix.RTN_UNREACHABLE},
		{Family: netlink.FAMILY_V6, Table: 151, Dst: dst("fd02::/48"), Type: unix.RTN_UNREACHABLE},
	}}
	for _, tc := range []struct {
		fams  []Family
		asked []int
		want  []string
	}{
		{[]Family{IPv4}, []int{netlink.FAMILY_V4}, []string{"unreachable 10.2.0.0/16 table 151"}},
		{nil, []int{netlink.FAMILY_V4, netlink.FAMILY_V6}, []string{"unreachable 10.2.0.0/16 table 151", "unreachable fd02::/48 table 151"}},
	} {
		nl.asked = nil
		rs, err := NetlinkRoutes{NL: nl, Families: tc.fams}.Routes(151)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.String())
		}
		if !slices.Equal(got, tc.want) || !slices.Equal(nl.asked, tc.asked) {
			t.Errorf("families %v: asked %v, listed %q; want asked %v, listed %q", tc.fams, nl.asked, got, tc.asked, tc.want)
		}
	}
}
