package e2e

import (
	"fmt"
	"slices"
	"testing"

	"strait.dev/strait/test/sandbox"
)

// TestDataplaneFamilies is TestDataplane's connectivity matrix in every IP
// family of the dual-stack or the IPv6-only sandbox (STRAIT_E2E_SANDBOX
// dual or ipv6), with each cable driver: WireGuard between c1 and c2 (c2
// behind NAT44 and NAT66), VXLAN between c1 and c3. In each family, every
// pod (on the active gateway node and on the non-gateway node n2) and the
// host network of n2 of one cluster reach both pods and the Service of the
// other: HTTP keeping the client's address, 4 MB TCP echoes, 3000-byte UDP
// datagrams and pings (fragmented). Then failovers and faults under IPv6
// traffic (failoversInIPv6). After both clusters leave, no node keeps
// Strait's state in either family.
//
// Failovers do depend on the family of what the cable carries: IPv6 inside
// a new cable resolves its next hops by neighbour discovery, which waited
// for the cable device's duplicate address detection (every VXLAN failover
// over IPv6 took 2 s in make bench-dataplane, docs/dataplane.md), and a
// standby probed through the active gateway in the cluster's first family
// only (an active gateway that dropped IPv6 alone was never replaced,
// docs/gateway-failover.md). TestDataplane keeps the IPv4 failovers and
// the rest of its restarts and faults.
func TestDataplaneFamilies(t *testing.T) {
	needFamilies(t)
	leaveClusterSet(t) // this test joins clusters its own way
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if len(state.Clusters) < 3 {
		t.Fatalf("the sandbox has %d clusters; this test needs three (dualArgs)", len(state.Clusters))
	}
	var families []int
	for _, p := range state.Clusters[0].PodCIDRs {
		families = append(families, ipFamily(p.Addr()))
	}
	info := deployBroker(t)
	for _, tc := range cablePairs {
		t.Run(tc.driver, func(t *testing.T) {
			// Registered before joinPair's leave, so it runs after it.
			t.Cleanup(func() {
				for _, c := range []string{tc.a, tc.b} {
					for _, n := range clusterNodes(c) {
						if left := leftovers(nodeState(t, sandbox.NodeNS(n))); left != "" {
							t.Errorf("%s: Strait's state is left after leave:\n%s", n, left)
						}
					}
				}
			})
			// n1 is the only gateway node: n2 is the non-gateway one.
			joinPair(t, info, tc.driver, 1, tc.a, tc.b)
			pa, pb := place(t, tc.a, tc.a+"-n2"), place(t, tc.b, tc.b+"-n2")
			for _, f := range families {
				t.Run(fmt.Sprintf("IPv%d", f), func(t *testing.T) {
					fa, fb := pa.inFamily(t, f), pb.inFamily(t, f)
					waitCrossCluster(t, fa, fb)
					matrix(t, fa, fb)
					matrix(t, fb, fa)
				})
			}
			if slices.Contains(families, 6) {
				t.Run("failovers carry IPv6", func(t *testing.T) {
					failoversInIPv6(t, pa.inFamily(t, 6), pb.inFamily(t, 6))
				})
			}
		})
	}
}

// failoversInIPv6 makes n2 of both clusters a gateway node too (the
// sandbox has two nodes a cluster: n2 stands by, and its pods' traffic
// goes through n1 until n2 takes over), then, with an IPv6 probe from a's
// n2 to b's (UDP every 10 ms), kills a's active gateway (kill -9), deletes
// its pod (a clean stop), and at the gateway cannotCarryFaults breaks (c2's
// for WireGuard, behind NAT66; c1's for VXLAN) sets the cable device down,
// then drops the forwarding of IPv6 alone to the other cluster
// (ip6tables). Each time a standby must take over, the other cluster move
// its cable to it, the traffic come back and, once failed back, every node
// of both clusters be as before; the gaps are logged, not asserted (make
// bench-dataplane measures failovers).
func failoversInIPv6(t *testing.T, a, b placement) {
	for _, p := range []placement{a, b} {
		setGatewayLabel(t, p.cluster, p.nonGateway, true)
	}
	// The matrix ran before n2 was a gateway node; the gateways settle
	// with n1 active in both clusters (failBack fails back a standby that
	// took the role meanwhile).
	failBack(t, a, b)
	failBack(t, b, a)
	orig := takeNodeStates(t, a.cluster, b.cluster)
	killActive(t, a, b, orig)
	cleanStop(t, a, b, orig, 1)
	cut, other, _ := cannotCarrySide(a, b)
	cannotCarryAndFailBack(t, cut, other, faultCableDown, orig)
	cannotCarryAndFailBack(t, cut, other, faultForwardDropped, orig)
}
