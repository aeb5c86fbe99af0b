package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/mtu"
	"strait.dev/strait/test/sandbox"
)

// narrowLimit is the size, in bytes, of the largest underlay packet the
// narrowed path between the gateways carries (issue 16, "Path MTU between
// gateways": a tunnel or cloud path narrower than the nodes' NICs).
const narrowLimit = 1400

// TestPathMTU narrows the path between two clusters' gateways to
// narrowLimit, dropping larger cable packets silently (no ICMP), for both
// cable drivers, and checks that the active gateways measure it (their
// Gateway status shows the inner MTU it leaves) and that 4 MB move over
// TCP both ways between pods on non-gateway nodes.
//
// Not yet seen passing (run at 02:18 UTC on 2 December): VXLAN showed 1350
// both ways, but the 4 MB echo stalled at 226,940 bytes. The DROP's
// counters on c1-n1 averaged 2,743 bytes per dropped packet, over the
// device MTU: `-m length` in OUTPUT sees GSO super-packets (the pods' TSO
// segments stay whole through veth and the VXLAN cable until the device
// splits them), so this narrowing drops traffic a real 1400-byte link would
// carry; tc police (GSO-aware) is not in this kernel. WireGuard (c1 behind
// no NAT, c2 behind NAT) showed no figure within 5 min, cause not found.
// Hence it runs only with STRAIT_E2E_PATHMTU=1 until both are resolved.
func TestPathMTU(t *testing.T) {
	if os.Getenv("STRAIT_E2E_PATHMTU") != "1" {
		t.Skip("STRAIT_E2E_PATHMTU=1 runs it: not yet passing, see the comment (the narrowing drops GSO super-packets; WireGuard found no figure)")
	}
	need(t)
	leaveClusterSet(t) // this test joins clusters its own way
	info := filepath.Join(t.TempDir(), "broker-info.strait")
	if out, err := straitctl(t, "deploy-broker", "--kubeconfig", adminKubeconfig("c1"), "--output", info); err != nil {
		t.Fatalf("deploy-broker: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		driver string
		a, b   string
	}{
		// As in TestDataplane: c2 sits behind NAT, WireGuard; c1 and c3
		// reach each other, VXLAN.
		{"wireguard", "c1", "c2"},
		{"vxlan", "c1", "c3"},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			for _, c := range []string{tc.a, tc.b} {
				if out, err := straitctl(t, "join", info, "--kubeconfig", adminKubeconfig(c), "--clusterid", c,
					"--gateway-nodes", c+"-n1,"+c+"-n2", "--pod-cidr", podCIDR(c), "--cable-driver", tc.driver); err != nil {
					t.Fatalf("join %s: %v\n%s", c, err, out)
				}
			}
			t.Cleanup(func() {
				for _, c := range []string{tc.b, tc.a} {
					if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig(c)); err != nil {
						t.Errorf("leave %s: %v\n%s", c, err, out)
					}
				}
			})
			pa, pb := place(t, tc.a), place(t, tc.b)
			waitCrossCluster(t, pa, pb)

			// Narrow the underlay of every gateway node of both clusters:
			// cable packets (UDP) over narrowLimit to or from the internet
			// vanish, as on a path that drops them without an ICMP error.
			// TCP (the broker's apiserver) is left alone.
			narrow := iptablesFault(
				[]string{"OUTPUT", "-p", "udp", "-d", sandbox.InternetCIDR.String(), "-m", "length", "--length", fmt.Sprintf("%d:65535", narrowLimit+1), "-j", "DROP"},
				[]string{"INPUT", "-p", "udp", "-s", sandbox.InternetCIDR.String(), "-m", "length", "--length", fmt.Sprintf("%d:65535", narrowLimit+1), "-j", "DROP"})
			for _, c := range []string{tc.a, tc.b} {
				for _, n := range []string{c + "-n1", c + "-n2"} {
					undo := narrow(t, sandbox.NodeNS(n), 0)
					t.Cleanup(func() {
						if err := undo(); err != nil {
							t.Error(err)
						}
					})
				}
			}
			// The sandbox's underlay is IPv4: the inner MTU the narrowed
			// path leaves is narrowLimit less the driver's IPv4 overhead.
			want := int32(narrowLimit - mtu.Overhead(tc.driver, mtu.IPv4Header))
			for _, p := range [][2]placement{{pa, pb}, {pb, pa}} {
				from, to := p[0], p[1]
				var last string
				if err := poll(5*time.Minute, func(ctx context.Context) (bool, error) {
					got, ok := pathMTUTo(ctx, ctrlClient(t, from.cluster), v1.ClusterID(to.cluster))
					last = fmt.Sprintf("%d (found: %v)", got, ok)
					return ok && got == want, nil
				}); err != nil {
					out, _ := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig(from.cluster))
					t.Fatalf("%s's active gateway never showed path MTU %d to %s: last %s\n%s", from.cluster, want, to.cluster, last, out)
				}
				t.Logf("%s → %s: path MTU %d in the Gateway status", from.cluster, to.cluster, want)
			}
			// 4 MB over TCP both ways, verified byte for byte by the echo,
			// once the route agents clamp the MSS to the measured path.
			for _, p := range [][2]placement{{pa, pb}, {pb, pa}} {
				from, to := p[0], p[1]
				var r connectReport
				if err := poll(3*time.Minute, func(context.Context) (bool, error) {
					r = connect(t, from.cluster, from.ns, "srv-n3", "--tcp", net.JoinHostPort(to.ips["srv-n3"], "9000"), "--bytes", "4000000", "--timeout", "30s")
					return r.OK, nil
				}); err != nil {
					t.Errorf("%s/srv-n3 → %s/srv-n3: TCP 4 MB echo over the narrowed path: %+v", from.cluster, to.cluster, r)
				}
			}
		})
	}
}

// pathMTUTo is the path MTU the active gateway's status (as c reads it)
// shows for its connection to cluster, and whether it shows one.
func pathMTUTo(ctx context.Context, c client.Client, cluster v1.ClusterID) (int32, bool) {
	var gws v1.GatewayList
	if err := c.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return 0, false
	}
	for _, g := range gws.Items {
		if g.Status.HAStatus != v1.HAStatusActive {
			continue
		}
		for _, conn := range g.Status.Connections {
			if conn.ClusterID == cluster && conn.PathMTU > 0 {
				return conn.PathMTU, true
			}
		}
	}
	return 0, false
}
