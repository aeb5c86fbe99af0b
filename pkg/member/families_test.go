package member_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/member"
)

// join --globalnet in a cluster with IPv6 pods or Services fails at once
// with one line naming Globalnet, IPv6 and the CIDRs, instead of joining
// with its IPv6 addresses silently unreachable (Globalnet is IPv4-only:
// docs/globalnet.md); without --globalnet the same cluster joins.
func TestJoinGlobalnetRefusesIPv6(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env, _ := memberCluster(t)
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	p := netip.MustParsePrefix
	opts := member.JoinOptions{
		ClusterID: "c1", CableDriver: v1.CableDriverVXLAN, GatewayNodes: []string{"n1"},
		PodCIDRs: []netip.Prefix{p("10.1.0.0/16"), p("fd00:10:1::/48")}, ServiceCIDRs: []netip.Prefix{p("10.101.0.0/16"), p("fd00:10:101::/112")},
		ImageRepository: "strait", ImageTag: "devel", Globalnet: true, GlobalCIDRSize: 4096,
	}
	err = member.Join(ctx, env.Config, info, opts)
	if err == nil {
		t.Fatal("join --globalnet of a dual-stack cluster succeeded; want an error naming IPv6")
	}
	for _, want := range []string{"Globalnet", "IPv6", "fd00:10:1::/48", "fd00:10:101::/112"} {
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q is not one line naming %q", err, want)
		}
	}
	opts.Globalnet, opts.GlobalCIDRSize = false, 0
	if err := member.Join(ctx, env.Config, info, opts); err != nil {
		t.Fatalf("join of the dual-stack cluster without --globalnet: %v", err)
	}
}
