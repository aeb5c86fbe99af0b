package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/mtu"
	"strait.dev/strait/routeagent"
	"strait.dev/strait/test/sandbox"
)

// narrowLimit is the size, in bytes, of the largest IP packet the narrowed
// link between the clusters carries (issue 16, "Path MTU between gateways":
// a tunnel or cloud path narrower than the nodes' NICs).
const narrowLimit = 1400

// TestPathMTU narrows a link on the path between two clusters' gateways to
// narrowLimit, for both cable drivers, and checks that the active gateways
// measure it (their Gateway status shows the inner MTU it leaves) and that
// 4 MB move over TCP both ways between pods on non-gateway nodes.
//
// The narrowed link drops larger packets silently, whatever their DF bit:
// the case the issue reports, and the one only probing finds (no ICMP
// reaches the gateways; the kernel's VXLAN sends its cable packets without
// DF, so a router would fragment them instead). WireGuard (c1 and c2, c2
// behind NAT) is narrowed at the link between c2's NAT router and the
// internet, VXLAN (c1 and c3) at the links of c3's gateway nodes.
func TestPathMTU(t *testing.T) {
	need(t)
	leaveClusterSet(t) // this test joins clusters its own way
	info := deployBroker(t)
	for _, tc := range []struct {
		driver string
		a, b   string
		// links are the two ends of each link narrowed, each a namespace
		// and a device: every packet between a's and b's gateways crosses
		// one of them each way.
		links [][2]string
	}{
		{"wireguard", "c1", "c2", sandbox.RouterUplink("c2")},
		{"vxlan", "c1", "c3", append(sandbox.SwitchPorts("c3", 1)[1:], append(sandbox.SwitchPorts("c3", 2)[1:],
			[2]string{sandbox.NodeNS("c3-n1"), "eth1"}, [2]string{sandbox.NodeNS("c3-n2"), "eth1"})...)},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			start := time.Now()
			for _, l := range tc.links {
				narrowLink(t, l[0], l[1], narrowLimit)
			}
			joinPair(t, info, tc.driver, 2, tc.a, tc.b)
			t.Logf("%v: %s and %s joined", time.Since(start).Round(time.Second), tc.a, tc.b)
			pa, pb := place(t, tc.a, tc.a+"-n3"), place(t, tc.b, tc.b+"-n3")
			waitCrossCluster(t, pa, pb)
			t.Logf("%v: pods placed, %s reaches %s", time.Since(start).Round(time.Second), tc.a, tc.b)

			want := int32(innerPathMTU(tc.driver, narrowLimit))
			for _, p := range [][2]placement{{pa, pb}, {pb, pa}} {
				from, to := p[0], p[1]
				var last string
				if err := poll(3*time.Minute, func(ctx context.Context) (bool, error) {
					got, ok := pathMTUTo(ctx, ctrlClient(t, from.cluster), v1.ClusterID(to.cluster))
					last = fmt.Sprintf("%d (found: %v)", got, ok)
					return ok && got == want, nil
				}); err != nil {
					out, _ := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig(from.cluster))
					t.Fatalf("%s's active gateway never showed path MTU %d to %s: last %s\n%s\n%s", from.cluster, want, to.cluster, last, out,
						gatewayLog(t, from.cluster, "pathMTU"))
				}
				t.Logf("%v: %s → %s: path MTU %d in the Gateway status", time.Since(start).Round(time.Second), from.cluster, to.cluster, want)
			}
			// The figures came from probes: some larger ones were dropped
			// on the narrowed links, or the test narrowed nothing.
			if n := droppedOn(t, tc.links); n == 0 {
				t.Fatalf("the narrowed links dropped no packet: the path was not narrowed")
			} else {
				t.Logf("the narrowed links dropped %d packets over %d bytes", n, narrowLimit)
			}
			// The route agents of the non-gateway nodes size the route to
			// the other cluster's pods (and the MSS clamp, in the same
			// state) to the figure.
			waitRouteMTU(t, pa, pb, want)
			t.Logf("%v: the route agents applied it", time.Since(start).Round(time.Second))
			move4MB(t, pa, pb, "over the narrowed path")
			if !t.Failed() {
				t.Logf("%v: 4 MB moved both ways", time.Since(start).Round(time.Second))
			}
		})
	}
}

// TestPathMTUWithICMP narrows the path between c1 and c2 (WireGuard, c2
// behind NAT) at c2's NAT router, which answers DF packets over
// narrowLimit with ICMP "fragmentation needed" and fragments the others,
// and checks the figure and that 4 MB move both ways.
//
// The sandbox's WireGuard is the userspace one (the kernel has no
// module). Its sockets used to send with the system's default
// (IP_PMTUDISC_WANT): the kernel learnt 1400 from the router's ICMP errors
// and fragmented single datagrams from then on (the path MTU probes among
// them: both gateways showed 1420, the device's MTU), while the bulk
// traffic's segmentation-offload sends failed: at 05:23 UTC on 2 December
// the 4 MB stalled after 103,884 bytes one way and 394,416 the other. The
// driver now sets IP_PMTUDISC_PROBE on them (gateway/cable/wireguard
// df.go): oversize packets are lost as on a silent path, and the search
// finds the same figure as there.
func TestPathMTUWithICMP(t *testing.T) {
	need(t)
	leaveClusterSet(t)
	info := deployBroker(t)
	start := time.Now()
	narrowRouter(t, sandbox.RouterUplink("c2")[0][0], narrowLimit)
	joinPair(t, info, "wireguard", 2, "c1", "c2")
	pa, pb := place(t, "c1", "c1-n3"), place(t, "c2", "c2-n3")
	waitCrossCluster(t, pa, pb)
	want := int32(innerPathMTU("wireguard", narrowLimit))
	for _, p := range [][2]placement{{pa, pb}, {pb, pa}} {
		from, to := p[0], p[1]
		var got int32
		if err := poll(time.Minute, func(ctx context.Context) (bool, error) {
			got, _ = pathMTUTo(ctx, ctrlClient(t, from.cluster), v1.ClusterID(to.cluster))
			return got == want, nil
		}); err != nil {
			t.Fatalf("%s's active gateway never showed path MTU %d to %s: last %d\n%s", from.cluster, want, to.cluster, got, gatewayLog(t, from.cluster, "wireguard"))
		}
		t.Logf("%v: %s → %s: path MTU %d in the Gateway status", time.Since(start).Round(time.Second), from.cluster, to.cluster, got)
	}
	waitRouteMTU(t, pa, pb, want)
	move4MB(t, pa, pb, "behind a router with ICMP")
}

// move4MB moves 4 MB over TCP both ways between the srv-ngw pods of pa and
// pb, verified byte for byte by the echo; where names the path, for the
// error.
func move4MB(t *testing.T, pa, pb placement, where string) {
	t.Helper()
	for _, p := range [][2]placement{{pa, pb}, {pb, pa}} {
		from, to := p[0], p[1]
		var r connectReport
		if err := poll(time.Minute, func(context.Context) (bool, error) {
			r = connect(t, from.cluster, from.ns, "srv-ngw", "--tcp", net.JoinHostPort(to.ips["srv-ngw"], "9000"), "--bytes", "4000000", "--timeout", "20s")
			return r.OK, nil
		}); err != nil {
			t.Errorf("%s/srv-ngw → %s/srv-ngw: TCP 4 MB echo %s: %+v", from.cluster, to.cluster, where, r)
		}
	}
}

// waitRouteMTU waits until the route agents of both clusters' non-gateway
// nodes route the other cluster's pods with MTU want (the MSS clamp comes
// in the same state).
func waitRouteMTU(t *testing.T, pa, pb placement, want int32) {
	t.Helper()
	for _, p := range [][2]placement{{pa, pb}, {pb, pa}} {
		from, to := p[0], p[1]
		node := from.nonGateway
		var routes string
		if err := poll(time.Minute, func(ctx context.Context) (bool, error) {
			out, err := exec.CommandContext(ctx, "ip", "-n", sandbox.NodeNS(node), "route", "show", "table", strconv.Itoa(routeagent.RemoteTable)).Output()
			routes = string(out)
			return err == nil && routeMTU(routes, podCIDR(to.cluster)) == int(want), nil
		}); err != nil {
			t.Fatalf("%s: no route to %s with MTU %d:\n%s", node, podCIDR(to.cluster), want, routes)
		}
	}
}

// narrowRouter makes the NAT router in namespace ns forward UDP over routes
// of MTU limit both ways (a policy rule for UDP; the broker's TCP keeps its
// path): it answers DF packets over limit with ICMP "fragmentation needed"
// and fragments the others. The cleanup removes the rule and the routes.
func narrowRouter(t *testing.T, ns string, limit int) {
	t.Helper()
	const table, prio = "4400", "100"
	mtu := strconv.Itoa(limit)
	t.Cleanup(func() {
		_ = nsRun(ns, "ip", "rule", "del", "priority", prio)
		_ = nsRun(ns, "ip", "route", "flush", "table", table)
	})
	for _, c := range [][]string{
		// The sandbox's NAT router: eth0 on the cluster's node network
		// (192.168.2.0/24 for c2), eth1 on the internet.
		{"ip", "route", "add", "192.168.2.0/24", "dev", "eth0", "mtu", mtu, "table", table},
		{"ip", "route", "add", sandbox.InternetCIDR.String(), "dev", "eth1", "mtu", mtu, "table", table},
		{"ip", "rule", "add", "ipproto", "udp", "lookup", table, "priority", prio},
	} {
		if err := nsRun(ns, c...); err != nil {
			t.Fatal(err)
		}
	}
}

// leaveAtCleanup has clusters leave, all at once, when t ends.
func leaveAtCleanup(t *testing.T, clusters []string) {
	t.Helper()
	t.Cleanup(func() {
		for _, err := range both(clusters, func(c string) error {
			if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig(c)); err != nil {
				return fmt.Errorf("leave %s: %w\n%s", c, err, out)
			}
			return nil
		}) {
			t.Error(err)
		}
	})
}

// joinPair joins clusters a and b to the broker of info with the cable
// driver, at the same time (they are independent, and the test's time is
// mostly theirs), and has them leave, at the same time too, in the cleanup.
// The first gateways nodes of each cluster are its gateway nodes; its pod
// CIDRs are those of the sandbox's plan, of every family.
func joinPair(t *testing.T, info, driver string, gateways int, a, b string) {
	t.Helper()
	clusters := []string{a, b}
	leaveAtCleanup(t, clusters)
	if errs := both(clusters, func(c string) error {
		if out, err := straitctl(t, "join", info, "--kubeconfig", adminKubeconfig(c), "--clusterid", c,
			"--gateway-nodes", gatewayNodes(c, gateways), "--pod-cidr", planPodCIDRs(t, c), "--cable-driver", driver); err != nil {
			return fmt.Errorf("join %s: %w\n%s", c, err, out)
		}
		return nil
	}); len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
}

// gatewayNodes names a cluster's first n nodes, comma-separated, as
// "straitctl join --gateway-nodes" takes them.
func gatewayNodes(cluster string, n int) string {
	var nodes []string
	for i := 1; i <= n; i++ {
		nodes = append(nodes, fmt.Sprintf("%s-n%d", cluster, i))
	}
	return strings.Join(nodes, ",")
}

// planPodCIDRs are a cluster's pod CIDRs in the sandbox's plan, primary
// first, comma-separated, as "straitctl join --pod-cidr" takes them.
func planPodCIDRs(t *testing.T, cluster string) string {
	t.Helper()
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range state.Clusters {
		if c.Name == cluster {
			return cidr.Join(c.PodCIDRs)
		}
	}
	t.Fatalf("no cluster %s in the sandbox's state", cluster)
	return ""
}

// both runs f for each cluster at the same time and returns the errors.
func both(clusters []string, f func(cluster string) error) []error {
	errs := make([]error, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Go(func() { errs[i] = f(c) })
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// innerPathMTU is the largest packet, in bytes, that a cable of the driver
// carries over an IPv4 path whose largest packet is outer bytes: outer less
// the driver's overhead, and for WireGuard a multiple of 16, as WireGuard
// pads what it encrypts to one (the WireGuard paper, section 5.4.6).
func innerPathMTU(driver string, outer int) int {
	inner := outer - mtu.Overhead(driver, mtu.IPv4Header)
	if driver == string(v1.CableDriverWireGuard) {
		inner -= inner % 16
	}
	return inner
}

// narrowLink makes the link of dev (in network namespace ns) drop the UDP
// packets it sends that are larger than limit bytes (IP header included),
// silently, as a link of that MTU further along the path would: a token
// bucket filter, which drops packets over its burst, on a class only UDP
// goes to (the cables; the broker's TCP, which no probe sizes, keeps its
// path). Unlike a packet-filter rule it looks at the packets that reach the
// wire: a segmentation-offload super-packet passes when each of its
// segments fits. The cleanup removes it.
func narrowLink(t *testing.T, ns, dev string, limit int) {
	t.Helper()
	// The burst counts the Ethernet header too; at 10 Gbit/s the bucket
	// refills in about a microsecond, so it shapes nothing.
	burst := strconv.Itoa(limit + 14)
	for _, c := range [][]string{
		{"qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "2"},
		{"class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "100gbit"},
		{"class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb", "rate", "100gbit"},
		{"qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", "tbf", "rate", "10gbit", "burst", burst, "latency", "50ms"},
		{"filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "protocol", "17", "0xff", "flowid", "1:1"},
	} {
		if err := nsRun(ns, append([]string{"tc"}, c...)...); err != nil {
			_ = nsRun(ns, "tc", "qdisc", "del", "dev", dev, "root")
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := nsRun(ns, "tc", "qdisc", "del", "dev", dev, "root"); err != nil {
			t.Error(err)
		}
	})
}

// droppedOn is how many packets the narrowed links (narrowLink) dropped.
func droppedOn(t *testing.T, links [][2]string) int {
	t.Helper()
	total := 0
	for _, l := range links {
		out, err := exec.Command("ip", "netns", "exec", l[0], "tc", "-s", "qdisc", "show", "dev", l[1], "handle", "10:").CombinedOutput()
		if err != nil {
			t.Fatalf("tc -s qdisc show dev %s in %s: %v: %s", l[1], l[0], err, out)
		}
		// " Sent 2756 bytes 2 pkt (dropped 4, overlimits 0 requeues 0)"
		_, after, ok := strings.Cut(string(out), "(dropped ")
		n, err := strconv.Atoi(strings.SplitN(after, ",", 2)[0])
		if !ok || err != nil {
			t.Fatalf("tc -s qdisc show dev %s in %s: no drop count in %q", l[1], l[0], out)
		}
		total += n
	}
	return total
}

// routeMTU is the MTU of the route to dst in "ip route" output, 0 when
// there is no such route or it has no MTU.
func routeMTU(routes, dst string) int {
	for l := range strings.SplitSeq(routes, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != dst {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "mtu" {
				v := f[i+1]
				if v == "lock" && i+2 < len(f) {
					v = f[i+2] // "mtu lock 1350"
				}
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return 0
}

// gatewayLog is the lines of the active gateway's log in cluster that
// contain substr, for a failure message.
func gatewayLog(t *testing.T, cluster, substr string) string {
	t.Helper()
	ctx := context.Background()
	node := active(ctx, ctrlClient(t, cluster))
	pods, err := kubeClient(t, cluster).CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/component=gateway", FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Sprintf("no gateway pod on %q: %v", node, err)
	}
	var buf bytes.Buffer
	if err := layout.Logs(ctx, sandbox.PodRef{Cluster: cluster, Namespace: v1.ComponentNamespace, Name: pods.Items[0].Name}, "", &buf); err != nil {
		return err.Error()
	}
	var lines []string
	for l := range strings.SplitSeq(buf.String(), "\n") {
		if strings.Contains(l, substr) {
			lines = append(lines, l)
		}
	}
	return fmt.Sprintf("%s's log (%s):\n%s", pods.Items[0].Name, substr, strings.Join(lines, "\n"))
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
