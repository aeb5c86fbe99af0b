package e2e

import (
	"fmt"
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
// datagrams and pings (fragmented). After both clusters leave, no node
// keeps Strait's state in either family.
//
// The failovers, restarts and faults of TestDataplane do not depend on the
// family of what the cable carries, and stay in the IPv4 sandbox.
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
		})
	}
}
