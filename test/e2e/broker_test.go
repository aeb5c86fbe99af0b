package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/sandbox"
)

// straitctl runs straitctl on the sandbox's admin host, which reaches every
// cluster's apiserver (and so the broker) at its public address.
func straitctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := sandboxCmd(append([]string{"admin", "--", filepath.Join(binDir, "straitctl")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func adminKubeconfig(cluster string) string { return layout.AdminKubeconfig(cluster) }

func ctrlClient(t *testing.T, cluster string) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", layout.Kubeconfig(cluster))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// records renders the Clusters and Endpoints a member holds in strait-system.
func records(ctx context.Context, c client.Client) string {
	var cls v1.ClusterList
	var eps v1.EndpointList
	if err := c.List(ctx, &cls, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return err.Error()
	}
	if err := c.List(ctx, &eps, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return err.Error()
	}
	var out []string
	for _, x := range cls.Items {
		out = append(out, "cluster "+x.Name)
	}
	for _, x := range eps.Items {
		out = append(out, "endpoint "+x.Name)
	}
	return strings.Join(out, " ")
}

// active returns the active gateway node of a cluster.
func active(ctx context.Context, c client.Client) string {
	var gws v1.GatewayList
	if err := c.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return ""
	}
	for _, g := range gws.Items {
		if g.Status.HAStatus == v1.HAStatusActive {
			return g.Name
		}
	}
	return ""
}

func TestBrokerJoinAndLeave(t *testing.T) {
	need(t)
	leaveClusterSet(t) // this test joins c1 and c2 its own way
	ctx := context.Background()
	info := deployBroker(t)
	join := func(cluster string, extra ...string) (string, error) {
		args := append([]string{"join", info, "--kubeconfig", adminKubeconfig(cluster), "--clusterid", cluster,
			"--gateway-nodes", cluster + "-n1," + cluster + "-n2", "--pod-cidr", podCIDR(cluster)}, extra...)
		return straitctl(t, args...)
	}
	for _, c := range []string{"c1", "c2"} {
		if out, err := join(c); err != nil {
			t.Fatalf("join %s: %v\n%s", c, err, out)
		}
	}
	c1, c2 := ctrlClient(t, "c1"), ctrlClient(t, "c2")
	want := "cluster c1 cluster c2 endpoint c1.c1-n1 endpoint c2.c2-n1"

	t.Run("both clusters see both Clusters and Endpoints", func(t *testing.T) {
		waitFor(t, 90*time.Second, "records in both clusters", func(ctx context.Context) (bool, error) {
			a, b := records(ctx, c1), records(ctx, c2)
			// Either gateway node may win the election; normalize to -n1 or -n2.
			return sameModuloNode(a, want) && sameModuloNode(b, want), nil
		})
		// The records come from the active gateways; the standby writes its
		// own Gateway once its pod runs, which can be later (CI under the OCI
		// runtime: c2's standby had not written it 2 s after the records
		// were in).
		var roles string
		if err := poll(60*time.Second, func(ctx context.Context) (bool, error) {
			var seen []string
			ok := true
			for _, m := range []struct {
				name string
				c    client.Client
			}{{"c1", c1}, {"c2", c2}} {
				name := m.name
				var gws v1.GatewayList
				if err := m.c.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
					seen = append(seen, name+": "+err.Error())
					ok = false
					continue
				}
				r := map[v1.HAStatus]int{}
				for _, g := range gws.Items {
					r[g.Status.HAStatus]++
				}
				seen = append(seen, fmt.Sprintf("%s %v", name, r))
				ok = ok && r[v1.HAStatusActive] == 1 && r[v1.HAStatusPassive] == 1 && len(gws.Items) == 2
			}
			roles = strings.Join(seen, ", ")
			return ok, nil
		}); err != nil {
			t.Errorf("gateways' roles after 60 s: %s; want one active and one passive in each cluster", roles)
		}
		// Each cluster's Endpoint, as the other cluster has it, lists the
		// standby gateway node as a candidate, with its own key
		// (docs/failover-without-broker.md); "straitctl show endpoints"
		// names it.
		for _, p := range [][2]string{{"c1", "c2"}, {"c2", "c1"}} {
			owner, seer := p[0], p[1]
			var ep v1.Endpoint
			waitFor(t, 60*time.Second, seer+" to have "+owner+"'s Endpoint with its standby as candidate", func(ctx context.Context) (bool, error) {
				var eps v1.EndpointList
				if err := map[string]client.Client{"c1": c1, "c2": c2}[seer].List(ctx, &eps, client.InNamespace(v1.ComponentNamespace), client.MatchingLabels{v1.ClusterIDLabel: owner}); err != nil || len(eps.Items) != 1 {
					return false, nil
				}
				ep = eps.Items[0]
				standby := owner + "-n1"
				if ep.Spec.Hostname == standby {
					standby = owner + "-n2"
				}
				c := ep.Spec.Candidates
				return len(c) == 1 && c[0].Hostname == standby && c[0].WireGuard != nil && c[0].WireGuard.PublicKey != "" &&
					ep.Spec.WireGuard != nil && c[0].WireGuard.PublicKey != ep.Spec.WireGuard.PublicKey && len(c[0].PrivateIPs) == 1, nil
			})
			out, err := straitctl(t, "show", "endpoints", "--kubeconfig", adminKubeconfig(seer))
			if err != nil || !strings.Contains(out, "STANDBYS") || !strings.Contains(out, ep.Spec.Candidates[0].Hostname) {
				t.Errorf("straitctl show endpoints in %s does not name %s's standby %s: %v\n%s", seer, owner, ep.Spec.Candidates[0].Hostname, err, out)
			}
		}
	})

	t.Run("pods on the active gateways talk across the WireGuard cable", func(t *testing.T) {
		// c2 sits behind NAT: the cable only comes up because c2's gateway
		// opens it with keepalives and c1's follows it to the NAT's port.
		ips, nss := checkCable(t, "c1", "c2")

		// An established TCP connection survives a crash and restart of the
		// active gateway (kill -9; the node agent restarts it, it takes the
		// Lease it still holds and rebuilds the cable with the same key).
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := execIn(t, "c2", nss["c2"], "gw-side", testpodProgram, "connect",
				"--tcp", net.JoinHostPort(ips["c1"], "9000"), "--bytes", "200000000", "--timeout", "120s")
			done <- result{out, err}
		}()
		// Kill once the transfer runs (its connection is established): it
		// takes a few seconds on a quiet machine, and must still be running
		// at the kill, or this proves nothing.
		waitFor(t, 30*time.Second, "the transfer's connection", func(context.Context) (bool, error) {
			select {
			case res := <-done:
				t.Fatalf("the transfer ended before the kill; it proves nothing: %v\n%s", res.err, res.out)
			default:
			}
			// The machine's ss in the pod's network namespace: the test's
			// own look, not the workload's.
			out, err := inPodNetwork(t, "c2", nss["c2"], "gw-side", "ss", "-Htn", "state", "established", "dport", "=", ":9000")
			return err == nil && strings.TrimSpace(out) != "", nil
		})
		node := active(ctx, c1)
		old := gatewayPID(t, "c1", node)
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		var res result
		select {
		case res = <-done:
		case <-time.After(150 * time.Second):
			t.Fatal("the transfer did not end")
		}
		var rep connectReport
		_ = json.Unmarshal([]byte(lastLine(res.out)), &rep)
		if res.err != nil || !rep.OK {
			t.Fatalf("TCP transfer across a gateway restart: %v\n%s", res.err, res.out)
		}
		if time.Since(killed) < 100*time.Millisecond {
			t.Fatalf("the transfer ended right after the kill; it proves nothing: %s", res.out)
		}
		if now := gatewayPID(t, "c1", node); now == old {
			t.Fatalf("the gateway on %s was not restarted (pid %d)", node, now)
		}
		t.Logf("200 MB echo across a kill -9 of c1's active gateway: ok, ended %s after the kill", time.Since(killed).Round(100*time.Millisecond))
		// Let the restarted gateway settle before the next tests use it.
		waitFor(t, 60*time.Second, "c1's restarted gateway to be active and connected again", func(ctx context.Context) (bool, error) {
			n := active(ctx, c1)
			if n == "" {
				return false, nil
			}
			var gw v1.Gateway
			if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: n}, &gw); err != nil {
				return false, nil
			}
			return len(gw.Status.Connections) == 1 && gw.Status.Connections[0].Status == v1.Connected, nil
		})
	})

	t.Run("Gateway status shows the connection with RTT, and an error when the peer stops answering", func(t *testing.T) {
		conn := func(ctx context.Context) v1.Connection {
			var gw v1.Gateway
			if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: active(ctx, c1)}, &gw); err != nil {
				return v1.Connection{}
			}
			for _, c := range gw.Status.Connections {
				if c.ClusterID == "c2" {
					return c
				}
			}
			return v1.Connection{}
		}
		waitFor(t, 60*time.Second, "c1's gateway to report c2 connected with RTT", func(ctx context.Context) (bool, error) {
			c := conn(ctx)
			return c.Status == v1.Connected && c.LatencyRTT != nil && c.LatencyRTT.Max.Duration >= c.LatencyRTT.Min.Duration && c.LatencyRTT.Min.Duration > 0, nil
		})
		c := conn(ctx)
		if !c.UsingNAT || c.UsingIP == "" {
			t.Errorf("connection to c2 (behind NAT): usingNAT=%v usingIP=%q", c.UsingNAT, c.UsingIP)
		}
		out, err := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig("c1"))
		if err != nil || !strings.Contains(out, "connected") || !strings.Contains(out, "c2") {
			t.Errorf("show connections: %v\n%s", err, out)
		}
		t.Logf("straitctl show connections:\n%s", out)

		// The same on the active gateway's Prometheus endpoint, with traffic.
		metrics, err := exec.Command("ip", "netns", "exec", sandbox.NodeNS(active(ctx, c1)),
			"curl", "-s", "--max-time", "5", "http://127.0.0.1:9476/metrics").Output()
		if err != nil {
			t.Fatalf("scrape c1's gateway: %v", err)
		}
		for _, want := range []string{"strait_gateway_active 1", `status="connected"} 1`, "strait_connection_rtt_seconds{", "strait_connection_rx_bytes_total{"} {
			if !strings.Contains(string(metrics), want) {
				t.Errorf("c1's gateway metrics lack %q", want)
			}
		}

		// Freeze both of c2's gateways: c1's probes go unanswered. (Freezing
		// only the active one makes the standby take over, which
		// TestDataplane covers.)
		pids := []int{gatewayPID(t, "c2", "c2-n1"), gatewayPID(t, "c2", "c2-n2")}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		frozen := true
		thaw := func() {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		defer func() {
			if frozen {
				thaw()
			}
		}()
		start := time.Now()
		waitFor(t, 30*time.Second, "c1 to report c2 in error", func(ctx context.Context) (bool, error) {
			return conn(ctx).Status == v1.ConnectionError, nil
		})
		t.Logf("c2 frozen: error reported after %s (%s)", time.Since(start).Round(100*time.Millisecond), conn(ctx).StatusMessage)
		thaw()
		frozen = false
		waitFor(t, 30*time.Second, "c1 to report c2 connected again", func(ctx context.Context) (bool, error) {
			return conn(ctx).Status == v1.Connected, nil
		})
	})

	t.Run("a member's stored credential cannot touch another member's records", func(t *testing.T) {
		cs := kubeClient(t, "c1")
		secret, err := cs.CoreV1().Secrets(v1.ComponentNamespace).Get(ctx, broker.SecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The broker is c1's apiserver; reach it through the root namespace's forwarder.
		state, err := layout.ReadState()
		if err != nil {
			t.Fatal(err)
		}
		cfg := &rest.Config{Host: state.APIServers["c1"], BearerToken: string(secret.Data["token"]),
			TLSClientConfig: rest.TLSClientConfig{CAData: secret.Data["ca.crt"]}}
		bc, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		if err != nil {
			t.Fatal(err)
		}
		var eps v1.EndpointList
		if err := bc.List(ctx, &eps, client.InNamespace(v1.BrokerNamespace), client.MatchingLabels{v1.ClusterIDLabel: "c2"}); err != nil || len(eps.Items) == 0 {
			t.Fatalf("c1's credential lists c2's endpoints at the broker: %d, %v", len(eps.Items), err)
		}
		theirs := eps.Items[0]
		theirs.Spec.Hostname = "hijacked"
		if err := bc.Update(ctx, &theirs); !apierrors.IsForbidden(err) {
			t.Fatalf("c1's credential updating c2's Endpoint: want Forbidden, got %v", err)
		}
		if err := bc.Delete(ctx, &theirs); !apierrors.IsForbidden(err) {
			t.Fatalf("c1's credential deleting c2's Endpoint: want Forbidden, got %v", err)
		}
	})

	t.Run("joining twice changes nothing", func(t *testing.T) {
		versions := func() string {
			cs := kubeClient(t, "c1")
			var parts []string
			if ds, err := cs.AppsV1().DaemonSets(v1.ComponentNamespace).Get(ctx, "strait-gateway", metav1.GetOptions{}); err == nil {
				parts = append(parts, "ds@"+ds.ResourceVersion)
			}
			if s, err := cs.CoreV1().Secrets(v1.ComponentNamespace).Get(ctx, broker.SecretName, metav1.GetOptions{}); err == nil {
				parts = append(parts, "secret@"+s.ResourceVersion)
			}
			if sa, err := cs.CoreV1().ServiceAccounts(v1.BrokerNamespace).Get(ctx, "strait-member-c1", metav1.GetOptions{}); err == nil {
				parts = append(parts, "member@"+sa.ResourceVersion)
			}
			if n, err := cs.CoreV1().Nodes().Get(ctx, "c1-n1", metav1.GetOptions{}); err == nil {
				parts = append(parts, "gatewaylabel="+n.Labels["strait.dev/gateway"])
			}
			return strings.Join(parts, " ")
		}
		before := versions()
		if out, err := join("c1"); err != nil {
			t.Fatalf("join again: %v\n%s", err, out)
		}
		if after := versions(); after != before || len(strings.Fields(before)) != 4 {
			t.Errorf("joining again changed objects:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("overlapping CIDRs are refused", func(t *testing.T) {
		out, err := join("c2", "--pod-cidr", "10.1.128.0/17")
		if err == nil {
			t.Fatalf("join with a pod CIDR inside c1's succeeded:\n%s", out)
		}
		for _, s := range []string{"10.1.128.0/17", "c2", "10.1.0.0/16", "c1"} {
			if !strings.Contains(out, s) {
				t.Errorf("refusal does not name %s: %s", s, out)
			}
		}
		if strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
			t.Errorf("refusal looks like a crash: %s", out)
		}
	})

	t.Run("gateway failover republishes the Endpoint", func(t *testing.T) {
		old := active(ctx, c1)
		if old == "" {
			t.Fatal("no active gateway in c1")
		}
		cs := kubeClient(t, "c1")
		// Take the active gateway's node out of the gateway set: its pod goes
		// (and gives up the Lease as it stops), the standby takes over.
		patch := []byte(`{"metadata":{"labels":{"strait.dev/gateway":null}}}`)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, old, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			restore := []byte(`{"metadata":{"labels":{"strait.dev/gateway":"true"}}}`)
			_, _ = cs.CoreV1().Nodes().Patch(context.Background(), old, types.MergePatchType, restore, metav1.PatchOptions{})
		})
		start := time.Now()
		var now string
		waitFor(t, 60*time.Second, "another gateway to become active", func(ctx context.Context) (bool, error) {
			now = active(ctx, c1)
			return now != "" && now != old, nil
		})
		wantEP := gateway.EndpointName("c1", now)
		waitFor(t, 60*time.Second, "c2 to see c1's new Endpoint "+wantEP+" and only it", func(ctx context.Context) (bool, error) {
			var eps v1.EndpointList
			if err := c2.List(ctx, &eps, client.InNamespace(v1.ComponentNamespace), client.MatchingLabels{v1.ClusterIDLabel: "c1"}); err != nil {
				return false, nil
			}
			return len(eps.Items) == 1 && eps.Items[0].Name == wantEP, nil
		})
		t.Logf("active gateway moved from %s to %s; c2 saw the new Endpoint %s after %s", old, now, wantEP, time.Since(start).Round(10*time.Millisecond))
	})

	t.Run("a broker outage loses nothing and sync resumes", func(t *testing.T) {
		pid := controlPlanePID(t, "c1", "kube-apiserver")
		// Freeze the broker's apiserver (c1's): connections hang, as in an outage.
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				_ = syscall.Kill(pid, syscall.SIGCONT)
				resumed = true
			}
		}
		t.Cleanup(resume)
		// Meanwhile c2 changes its Cluster record.
		var cl v1.Cluster
		if err := c2.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "c2"}, &cl); err != nil {
			t.Fatal(err)
		}
		cl.Spec.Topology.Zone = "changed-during-outage"
		if err := c2.Update(ctx, &cl); err != nil {
			t.Fatal(err)
		}
		// Not synchronisation: an outage that lasts (longer than the
		// syncer's back-off and the informers' relist) is what is under test.
		time.Sleep(20 * time.Second)
		if got := records(ctx, c2); !strings.Contains(got, "cluster c1") || !strings.Contains(got, "endpoint c1.") {
			t.Fatalf("c2 lost c1's records during the outage: %s", got)
		}
		resume()
		waitFor(t, 90*time.Second, "c2's change to reach c1 after the outage", func(ctx context.Context) (bool, error) {
			var got v1.Cluster
			err := c1.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "c2"}, &got)
			return err == nil && got.Spec.Topology.Zone == "changed-during-outage", nil
		})
	})

	t.Run("leave leaves no trace", func(t *testing.T) {
		if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig("c2")); err != nil {
			t.Fatalf("leave c2: %v\n%s", err, out)
		}
		// The gateways took their node state with them.
		for _, node := range []string{"c2-n1", "c2-n2"} {
			ns := sandbox.NodeNS(node)
			if out, err := exec.Command("ip", "-n", ns, "link", "show", gateway.CableInterface).CombinedOutput(); err == nil {
				t.Errorf("%s still has the cable device:\n%s", node, out)
			}
			if out, _ := exec.Command("ip", "-n", ns, "rule").Output(); strings.Contains(string(out), "lookup 150") {
				t.Errorf("%s still has Strait's rules:\n%s", node, out)
			}
			if out, _ := exec.Command("ip", "netns", "exec", ns, "iptables-save", "-t", "nat").Output(); strings.Contains(string(out), "STRAIT-") {
				t.Errorf("%s still has Strait's chains:\n%s", node, out)
			}
		}
		cs := kubeClient(t, "c2")
		if _, err := cs.CoreV1().Namespaces().Get(ctx, v1.ComponentNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("c2 still has %s (%v)", v1.ComponentNamespace, err)
		}
		if nodes, _ := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "strait.dev/gateway"}); len(nodes.Items) > 0 {
			t.Errorf("c2 nodes still labelled as gateways: %d", len(nodes.Items))
		}
		crds, err := cs.Discovery().ServerResourcesForGroupVersion(v1.SchemeGroupVersion.String())
		if err == nil && len(crds.APIResources) > 0 {
			t.Errorf("c2 still serves %s", v1.SchemeGroupVersion)
		}
		broker := kubeClient(t, "c1")
		if _, err := broker.CoreV1().ServiceAccounts(v1.BrokerNamespace).Get(ctx, "strait-member-c2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("c2's broker credential is still there (%v)", err)
		}
		var eps v1.EndpointList
		if err := c1.List(ctx, &eps, client.InNamespace(v1.BrokerNamespace), client.MatchingLabels{v1.ClusterIDLabel: "c2"}); err != nil || len(eps.Items) > 0 {
			t.Errorf("c2's records at the broker: %d (%v)", len(eps.Items), err)
		}
		waitFor(t, 60*time.Second, "c1 to drop c2's records", func(ctx context.Context) (bool, error) {
			got := records(ctx, c1)
			return !strings.Contains(got, "c2"), nil
		})
		if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig("c1")); err != nil {
			t.Fatalf("leave c1: %v\n%s", err, out)
		}
	})

	t.Run("VXLAN cables between c1 and c3", func(t *testing.T) {
		// Plain VXLAN needs gateways that reach each other without NAT: c1
		// and c3. The broker is still there after c1 left it.
		for _, c := range []string{"c1", "c3"} {
			if out, err := join(c, "--cable-driver", "vxlan"); err != nil {
				t.Fatalf("join %s with vxlan: %v\n%s", c, err, out)
			}
		}
		checkCable(t, "c1", "c3")
		c3 := ctrlClient(t, "c3")
		waitFor(t, 60*time.Second, "c3's gateway to report c1 connected", func(ctx context.Context) (bool, error) {
			var gw v1.Gateway
			if err := c3.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: active(ctx, c3)}, &gw); err != nil {
				return false, nil
			}
			if len(gw.Status.Connections) != 1 {
				return false, nil
			}
			c := gw.Status.Connections[0]
			// NAT discovery: c1's private address is on another network, so
			// c3 uses c1's public one; nobody is behind NAT here.
			return c.Status == v1.Connected && !c.UsingNAT && strings.HasPrefix(string(c.UsingIP), "198.18.1."), nil
		})
		for _, c := range []string{"c3", "c1"} {
			if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig(c)); err != nil {
				t.Fatalf("leave %s: %v\n%s", c, err, out)
			}
		}
	})
}

func podCIDR(cluster string) string {
	n, _ := strconv.Atoi(strings.TrimPrefix(cluster, "c"))
	return fmt.Sprintf("10.%d.0.0/16", n)
}

// sameModuloNode compares record lists, taking any gateway node as a match.
func sameModuloNode(got, want string) bool {
	norm := func(s string) string { return strings.NewReplacer("-n1", "-nX", "-n2", "-nX").Replace(s) }
	return norm(got) == norm(want)
}

// controlPlanePID finds a control-plane process of a cluster of this sandbox.
func controlPlanePID(t *testing.T, cluster, binary string) int {
	t.Helper()
	for _, pid := range sandbox.MarkedProcesses(layout.Dir) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == binary && strings.Contains(string(cmdline), filepath.Join(layout.Dir, "clusters", cluster)+"/") {
			return pid
		}
	}
	t.Fatalf("no %s of %s found", binary, cluster)
	return 0
}

// gatewayPID finds the process of the gateway pod on a node.
func gatewayPID(t *testing.T, cluster, node string) int {
	t.Helper()
	pods, err := kubeClient(t, cluster).CoreV1().Pods(v1.ComponentNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=gateway", FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("gateway pod on %s: %d pods, %v", node, len(pods.Items), err)
	}
	_, info, err := layout.Runtime(context.Background(), sandbox.PodRef{Cluster: cluster, Namespace: v1.ComponentNamespace, Name: pods.Items[0].Name})
	if err != nil || info.Containers["gateway"] == 0 {
		t.Fatalf("gateway process on %s: %v", node, err)
	}
	return info.Containers["gateway"]
}

// checkCable puts a pod on the active gateway node of each cluster and
// proves traffic between them: HTTP keeping the client's own address (no
// masquerade across the cable), a 3 MB TCP echo, and 3000-byte pings.
func checkCable(t *testing.T, from, to string) (ips, nss map[string]string) {
	t.Helper()
	ctx := context.Background()
	ips, nss = map[string]string{}, map[string]string{}
	for _, cl := range []string{from, to} {
		cs := kubeClient(t, cl)
		ns := testNamespace(t, cs)
		// This test is about the cable alone: pin the pod on the active
		// gateway node (TestDataplane covers the other nodes).
		var node string
		waitFor(t, 60*time.Second, "an active gateway in "+cl, func(ctx context.Context) (bool, error) {
			node = active(ctx, ctrlClient(t, cl))
			return node != "", nil
		})
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "gw-side", Labels: map[string]string{"app": "gw-side"}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{testpodContainer("c", "serve")}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := runningPods(t, cs, ns, "app=gw-side", 1)[0]
		ips[cl], nss[cl] = p.Status.PodIP, ns
	}
	var r connectReport
	if err := poll(60*time.Second, func(context.Context) (bool, error) {
		r = connect(t, from, nss[from], "gw-side", "--http", "http://"+net.JoinHostPort(ips[to], "8080")+"/", "--timeout", "2s")
		return r.OK, nil
	}); err != nil {
		var diag []string
		for _, cl := range []string{from, to} {
			out, _ := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig(cl))
			node := active(ctx, ctrlClient(t, cl))
			ns := sandbox.NodeNS(node)
			rules, _ := exec.Command("ip", "-n", ns, "rule").CombinedOutput()
			routes, _ := exec.Command("ip", "-n", ns, "route", "show", "table", "150").CombinedOutput()
			neigh, _ := exec.Command("ip", "-n", ns, "neigh").CombinedOutput()
			links, _ := exec.Command("ip", "-n", ns, "-d", "link", "show", "strait-cable").CombinedOutput()
			diag = append(diag, fmt.Sprintf("== %s (active %s)\n%s\n%s\n%s\n%s\n%s", cl, node, out, rules, routes, neigh, links))
		}
		t.Fatalf("HTTP from %s's pod (%s) to %s's pod (%s) through the cable: %+v\n%s", from, ips[from], to, ips[to], r, strings.Join(diag, "\n"))
	}
	var body struct{ Client string }
	_ = json.Unmarshal(r.Body, &body)
	if host, _, _ := net.SplitHostPort(body.Client); host != ips[from] {
		t.Errorf("%s's pod saw %s, want %s's pod address %s (no masquerade across the cable)", to, body.Client, from, ips[from])
	}
	if r := connect(t, to, nss[to], "gw-side", "--tcp", net.JoinHostPort(ips[from], "9000"), "--bytes", "3000000"); !r.OK {
		t.Errorf("TCP 3 MB from %s to %s: %+v", to, from, r)
	}
	if out, err := execIn(t, from, nss[from], "gw-side", "ping", "-c", "2", "-s", "3000", "-W", "2", ips[to]); err != nil {
		t.Errorf("3000-byte ping %s → %s: %v\n%s", from, to, err, out)
	}
	return ips, nss
}

// deployBroker deploys the broker in c1 with straitctl, as a user does, and
// returns the path of the broker-info file that joins need (in t's
// temporary directory).
func deployBroker(t *testing.T) string {
	t.Helper()
	info := filepath.Join(t.TempDir(), "broker-info.strait")
	if out, err := straitctl(t, "deploy-broker", "--kubeconfig", adminKubeconfig("c1"), "--output", info); err != nil {
		t.Fatalf("deploy-broker: %v\n%s", err, out)
	}
	return info
}
