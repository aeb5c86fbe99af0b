package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"strait.dev/strait/gateway/health"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// TestThroughTargets: a standby probes a remote gateway through the active
// one at its health-check address of each family this cluster has, and
// never of a family it lacks (no route there: its probes would never be
// answered, and the standby would take the role from a healthy gateway).
func TestThroughTargets(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:10:1::/56")
	for _, tc := range []struct {
		name     string
		podCIDRs []netip.Prefix
		remote   v1.DualStackIPs
		want     string
	}{
		{"dual-stack both", []netip.Prefix{v4, v6}, v1.DualStackIPs{"10.2.1.1", "fd00:10:2:1::1"}, "c2.gw/IPv4 10.2.1.1:4491, c2.gw/IPv6 [fd00:10:2:1::1]:4491"},
		{"IPv6 first", []netip.Prefix{v6, v4}, v1.DualStackIPs{"fd00:10:2:1::1", "10.2.1.1"}, "c2.gw/IPv4 10.2.1.1:4491, c2.gw/IPv6 [fd00:10:2:1::1]:4491"},
		{"IPv4 cluster, dual-stack remote", []netip.Prefix{v4}, v1.DualStackIPs{"10.2.1.1", "fd00:10:2:1::1"}, "c2.gw/IPv4 10.2.1.1:4491"},
		{"IPv6 cluster, dual-stack remote", []netip.Prefix{v6}, v1.DualStackIPs{"10.2.1.1", "fd00:10:2:1::1"}, "c2.gw/IPv6 [fd00:10:2:1::1]:4491"},
		{"dual-stack cluster, IPv4 remote", []netip.Prefix{v4, v6}, v1.DualStackIPs{"10.2.1.1"}, "c2.gw/IPv4 10.2.1.1:4491"},
		{"no family in common", []netip.Prefix{v6}, v1.DualStackIPs{"10.2.1.1"}, ""},
		{"no pod CIDRs: the first", nil, v1.DualStackIPs{"fd00:10:2:1::1", "10.2.1.1"}, "c2.gw/IPv6 [fd00:10:2:1::1]:4491"},
		{"bad address skipped", []netip.Prefix{v4}, v1.DualStackIPs{"nonsense", "10.2.1.1"}, "c2.gw/IPv4 10.2.1.1:4491"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := v1.Endpoint{}
			r.Name, r.Spec.HealthCheckIPs = "c2.gw", tc.remote
			var got []string
			for k, a := range throughTargets(r, tc.podCIDRs, 4491) {
				got = append(got, fmt.Sprintf("%s %s", k, a))
			}
			slices.Sort(got)
			if s := strings.Join(got, ", "); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

// TestFamilyInError: the path through the active gateway is lost when
// every target of one family is in error, even while the other family's
// are answered.
func TestFamilyInError(t *testing.T) {
	targets := map[string]netip.AddrPort{
		"c2.gw/IPv4": netip.MustParseAddrPort("10.2.1.1:4491"),
		"c2.gw/IPv6": netip.MustParseAddrPort("[fd00:10:2:1::1]:4491"),
		"c3.gw/IPv4": netip.MustParseAddrPort("10.3.1.1:4491"),
		"c3.gw/IPv6": netip.MustParseAddrPort("[fd00:10:3:1::1]:4491"),
	}
	ok, bad := health.Result{Status: health.Connected}, health.Result{Status: health.Error}
	for _, tc := range []struct {
		name    string
		results map[string]health.Result
		want    bool
	}{
		{"every probe answered", map[string]health.Result{"c2.gw/IPv4": ok, "c2.gw/IPv6": ok, "c3.gw/IPv4": ok, "c3.gw/IPv6": ok}, false},
		{"IPv6 lost to every remote", map[string]health.Result{"c2.gw/IPv4": ok, "c2.gw/IPv6": bad, "c3.gw/IPv4": ok, "c3.gw/IPv6": bad}, true},
		{"IPv4 lost to every remote", map[string]health.Result{"c2.gw/IPv4": bad, "c2.gw/IPv6": ok, "c3.gw/IPv4": bad, "c3.gw/IPv6": ok}, true},
		{"IPv6 lost to one remote only", map[string]health.Result{"c2.gw/IPv4": ok, "c2.gw/IPv6": bad, "c3.gw/IPv4": ok, "c3.gw/IPv6": ok}, false},
		{"one family each lost, to different remotes", map[string]health.Result{"c2.gw/IPv4": bad, "c2.gw/IPv6": ok, "c3.gw/IPv4": ok, "c3.gw/IPv6": bad}, false},
		{"IPv6 still connecting", map[string]health.Result{"c2.gw/IPv4": ok, "c3.gw/IPv4": ok}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := familyInError(targets, tc.results); got != tc.want {
				t.Errorf("familyInError = %v, want %v", got, tc.want)
			}
		})
	}
	if familyInError(nil, nil) {
		t.Error("no targets: lost; want not (nothing to judge by)")
	}
}
