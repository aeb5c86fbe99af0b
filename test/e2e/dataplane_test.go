package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/routeagent"
	"strait.dev/strait/test/sandbox"
)

// placement is where the test workload of one cluster runs.
type placement struct {
	cluster, ns string
	gwNode      string            // the active gateway's node when set up
	ips         map[string]string // pod name -> IP: srv-gw, srv-n3
	svc         string            // ClusterIP of Service srv
}

// TestDataplane joins clusters with each cable driver and proves that every
// pod and host of one cluster reaches every pod and Service of the other,
// through the route agents' overlay and the active gateways, and that this
// survives route-agent restarts, a gateway kill -9, a gateway node losing
// its links, and (WireGuard) a two-minute broker outage.
func TestDataplane(t *testing.T) {
	need(t)
	info := filepath.Join(t.TempDir(), "broker-info.strait")
	if out, err := straitctl(t, "deploy-broker", "--kubeconfig", adminKubeconfig("c1"), "--output", info); err != nil {
		t.Fatalf("deploy-broker: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		driver string
		a, b   string
	}{
		// c2 sits behind NAT: WireGuard. c1 and c3 reach each other: VXLAN.
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
			pa, pb := place(t, tc.a), place(t, tc.b)
			waitCrossCluster(t, pa, pb)

			t.Run("connectivity matrix", func(t *testing.T) {
				matrix(t, pa, pb)
				matrix(t, pb, pa)
			})
			t.Run("route agent restarts change nothing and keep traffic", func(t *testing.T) {
				routeAgentRestart(t, pa, pb)
			})
			t.Run("gateway failover: kill -9 and links down", func(t *testing.T) {
				failover(t, pa, pb)
			})
			if tc.driver == "wireguard" {
				t.Run("a two-minute broker outage does not interrupt traffic", func(t *testing.T) {
					brokerOutage(t, pa, pb)
				})
			}
			for _, c := range []string{tc.b, tc.a} {
				if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig(c)); err != nil {
					t.Fatalf("leave %s: %v\n%s", c, err, out)
				}
				for i := 1; i <= 3; i++ {
					ns := sandbox.NodeNS(fmt.Sprintf("%s-n%d", c, i))
					if left := leftovers(nodeState(t, ns)); left != "" {
						t.Errorf("%s: Strait's state is left after leave:\n%s", ns, left)
					}
				}
			}
		})
	}
}

// place runs the workload in a cluster: a server pod on the active gateway
// node and one on the non-gateway node n3 (both behind Service srv), and a
// host-network pod on n3.
func place(t *testing.T, cluster string) placement {
	t.Helper()
	ctx := context.Background()
	cs := kubeClient(t, cluster)
	p := placement{cluster: cluster, ns: testNamespace(t, cs), ips: map[string]string{}}
	waitFor(t, 60*time.Second, "an active gateway in "+cluster, func(ctx context.Context) (bool, error) {
		p.gwNode = active(ctx, ctrlClient(t, cluster))
		return p.gwNode != "", nil
	})
	for name, node := range map[string]string{"srv-gw": p.gwNode, "srv-n3": cluster + "-n3"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "srv", "pod": name}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{testpodContainer("c", "serve")}},
		}
		if _, err := cs.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	host := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "host-n3", Labels: map[string]string{"app": "host"}},
		Spec: corev1.PodSpec{NodeName: cluster + "-n3", HostNetwork: true,
			Containers: []corev1.Container{testpodContainer("c", "sleep")}},
	}
	if _, err := cs.CoreV1().Pods(p.ns).Create(ctx, host, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "srv"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "srv"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
			{Name: "echo", Port: 9000, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
		}},
	}
	s, err := cs.CoreV1().Services(p.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.svc = s.Spec.ClusterIP
	for _, pod := range runningPods(t, cs, p.ns, "app=srv", 2) {
		p.ips[pod.Name] = pod.Status.PodIP
	}
	runningPods(t, cs, p.ns, "app=host", 1)
	return p
}

// waitCrossCluster waits until n3's pod in a reaches n3's pod in b.
func waitCrossCluster(t *testing.T, a, b placement) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := connect(t, a.cluster, a.ns, "srv-n3", "--http", "http://"+net.JoinHostPort(b.ips["srv-n3"], "8080")+"/", "--timeout", "2s")
		if r.OK {
			return
		}
		if time.Now().After(deadline) {
			out, _ := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig(a.cluster))
			t.Fatalf("%s/srv-n3 never reached %s/srv-n3: %+v\n%s\n%s", a.cluster, b.cluster, r, out, nodeState(t, sandbox.NodeNS(a.cluster+"-n3")))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// matrix checks every client of from against every server of to.
func matrix(t *testing.T, from, to placement) {
	for _, client := range []string{"srv-gw", "srv-n3", "host-n3"} {
		for _, server := range []string{"srv-gw", "srv-n3"} {
			ip := to.ips[server]
			name := fmt.Sprintf("%s/%s→%s/%s", from.cluster, client, to.cluster, server)
			t.Run(name, func(t *testing.T) {
				r := connect(t, from.cluster, from.ns, client, "--http", "http://"+net.JoinHostPort(ip, "8080")+"/", "--timeout", "3s")
				if !r.OK {
					t.Fatalf("HTTP: %+v", r)
				}
				var body struct{ Client string }
				_ = json.Unmarshal(r.Body, &body)
				host, _, _ := net.SplitHostPort(body.Client)
				if want := from.ips[client]; want != "" && host != want {
					t.Errorf("the server saw %s, want the client pod's own address %s (no masquerade)", host, want)
				}
				if !strings.HasPrefix(host, strings.TrimSuffix(podCIDR(from.cluster), "0.0/16")) {
					t.Errorf("the server saw %s, outside %s's pod CIDR", host, from.cluster)
				}
				// Several MB over TCP, verified byte for byte by the echo.
				if r := connect(t, from.cluster, from.ns, client, "--tcp", net.JoinHostPort(ip, "9000"), "--bytes", "4000000", "--timeout", "20s"); !r.OK {
					t.Errorf("TCP 4 MB echo: %+v", r)
				}
				// Datagrams larger than any MTU on the path: fragmented, reassembled.
				if r := connect(t, from.cluster, from.ns, client, "--udp", net.JoinHostPort(ip, "9001"), "--bytes", "3000", "--count", "3"); !r.OK {
					t.Errorf("UDP 3000 bytes: %+v", r)
				}
				if out, err := execIn(t, from.cluster, from.ns, client, "ping", "-c", "2", "-s", "3000", "-W", "2", ip); err != nil {
					t.Errorf("3000-byte ping: %v\n%s", err, out)
				}
			})
		}
		t.Run(fmt.Sprintf("%s/%s→%s/Service", from.cluster, client, to.cluster), func(t *testing.T) {
			if r := connect(t, from.cluster, from.ns, client, "--http", "http://"+to.svc+"/", "--timeout", "3s"); !r.OK {
				t.Errorf("HTTP to %s's Service %s: %+v", to.cluster, to.svc, r)
			}
			if r := connect(t, from.cluster, from.ns, client, "--tcp", net.JoinHostPort(to.svc, "9000"), "--bytes", "4000000", "--timeout", "20s"); !r.OK {
				t.Errorf("TCP 4 MB echo through %s's Service: %+v", to.cluster, r)
			}
		})
	}
}

// pingReport is what "strait-testpod ping" prints.
type pingReport struct {
	OK          bool     `json:"ok"`
	Sent        int64    `json:"sent"`
	Received    int64    `json:"received"`
	Lost        int64    `json:"lost"`
	MaxGapMs    float64  `json:"maxGapMs"`
	LastReplyMs *float64 `json:"lastReplyMs"`
	DurationMs  float64  `json:"durationMs"`
	Gaps        []struct {
		StartMs  float64 `json:"startMs"`
		LengthMs float64 `json:"lengthMs"`
	} `json:"gaps"`
}

// probe runs a continuous UDP ping (every 10 ms) from a's srv-n3 to b's
// srv-n3 for d, calling during after it has run for a second; it returns
// the report.
func probe(t *testing.T, a, b placement, d time.Duration, during func()) pingReport {
	t.Helper()
	type res struct {
		out string
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := execIn(t, a.cluster, a.ns, "srv-n3", filepath.Join(binDir, "strait-testpod"), "ping",
			"--udp", net.JoinHostPort(b.ips["srv-n3"], "9001"), "--interval", "10ms", "--duration", d.String())
		done <- res{out, err}
	}()
	time.Sleep(time.Second)
	during()
	r := <-done
	var rep pingReport
	if err := json.Unmarshal([]byte(lastLine(r.out)), &rep); err != nil {
		t.Fatalf("ping: no report (%v): %s", r.err, r.out)
	}
	return rep
}

// leftovers are the lines of a node's state that belong to Strait: its
// devices, rules, tables and chains.
func leftovers(state string) string {
	var out []string
	for _, l := range strings.Split(state, "\n") {
		if strings.HasPrefix(l, "$ ") || strings.Contains(l, "Cannot find device") {
			continue
		}
		if strings.Contains(l, "strait-") || strings.Contains(l, "STRAIT-") || strings.Contains(l, "lookup 15") || strings.Contains(l, "table 15") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// nodeState is what the route agent and the gateway own on a node, in a
// stable form: rules, routes of every table, overlay neighbors and FDB,
// and the packet filter without counters.
func nodeState(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-n", ns, "rule"},
		{"ip", "-n", ns, "route", "show", "table", "all"},
		{"ip", "-n", ns, "neigh", "show", "dev", routeagent.OverlayInterface, "nud", "permanent"},
		{"ip", "-n", ns, "-d", "link", "show", "type", "vxlan"},
	} {
		out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args[3:], " "), out)
	}
	out, _ := exec.Command("ip", "netns", "exec", ns, "iptables-save").Output()
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") || strings.Contains(l, "KUBE-") {
			continue // comments with dates; kube-proxy's own chains are not ours
		}
		fmt.Fprintln(&b, counters.ReplaceAllString(l, ""))
	}
	return b.String()
}

func routeAgentRestart(t *testing.T, a, b placement) {
	ctx := context.Background()
	cs := kubeClient(t, a.cluster)
	nodes := []string{a.gwNode, a.cluster + "-n3"}
	before := map[string]string{}
	for _, n := range nodes {
		before[n] = nodeState(t, sandbox.NodeNS(n))
	}
	rep := probe(t, a, b, 12*time.Second, func() {
		// A graceful restart (delete the pod; the DaemonSet makes a new one)
		// must leave the data plane in place.
		for _, n := range nodes {
			pods, err := cs.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{
				LabelSelector: "app.kubernetes.io/component=routeagent", FieldSelector: "spec.nodeName=" + n})
			if err != nil || len(pods.Items) != 1 {
				t.Fatalf("route agent pod on %s: %v (%d)", n, err, len(pods.Items))
			}
			if err := cs.CoreV1().Pods(v1.ComponentNamespace).Delete(ctx, pods.Items[0].Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			old := pods.Items[0].Name
			waitFor(t, 60*time.Second, "a new route agent on "+n, func(ctx context.Context) (bool, error) {
				pods, err := cs.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{
					LabelSelector: "app.kubernetes.io/component=routeagent", FieldSelector: "spec.nodeName=" + n})
				return err == nil && len(pods.Items) == 1 && pods.Items[0].Name != old && pods.Items[0].Status.Phase == corev1.PodRunning, nil
			})
		}
		time.Sleep(2 * time.Second) // the new agents have applied their state
	})
	for _, n := range nodes {
		if after := nodeState(t, sandbox.NodeNS(n)); after != before[n] {
			t.Errorf("%s: state changed across the route agent's restart\nbefore:\n%s\nafter:\n%s", n, before[n], after)
		}
	}
	// A restart that removed the state even for a moment loses a run of
	// probes; a lost one here or there is the machine being busy.
	if !rep.OK || rep.Lost*100 > rep.Sent {
		t.Errorf("traffic across route agent restarts: sent %d, lost %d, gaps %+v", rep.Sent, rep.Lost, rep.Gaps)
	}
	t.Logf("route agent restarts on %v: sent %d, lost %d, longest gap %.0f ms", nodes, rep.Sent, rep.Lost, rep.MaxGapMs)
}

// failover kills a's active gateway, then takes the new active gateway's
// node off the network, each while a probe runs between the n3 pods; the
// traffic must come back through the other gateway. The gaps are logged
// (make bench-dataplane measures them), not asserted.
func failover(t *testing.T, a, b placement) {
	ca := ctrlClient(t, a.cluster)
	first := holder(t, a.cluster)
	var killedAt time.Time
	started := time.Now()
	rep := probe(t, a, b, 10*time.Second, func() {
		if err := syscall.Kill(gatewayPID(t, a.cluster, first), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killedAt = time.Now()
	})
	second := holder(t, a.cluster)
	if second == "" || second == first {
		t.Fatalf("after kill -9 of %s's gateway on %s, the active gateway is %q", a.cluster, first, second)
	}
	resumed(t, "kill -9", rep, killedAt.Sub(started))
	t.Logf("kill -9 of the active gateway on %s: %s took over; longest gap %.0f ms (sent %d, lost %d)", first, second, rep.MaxGapMs, rep.Sent, rep.Lost)

	// The new active gateway's node loses its links (LAN and internet): the
	// switch ports go down, as when its cables are pulled.
	index, _ := strconv.Atoi(strings.TrimPrefix(second, a.cluster+"-n"))
	setLinks := func(state string) {
		for _, p := range sandbox.SwitchPorts(a.cluster, index) {
			if out, err := exec.Command("ip", "-n", p[0], "link", "set", p[1], state).CombinedOutput(); err != nil {
				t.Logf("ip link set %s %s in %s: %v %s", p[1], state, p[0], err, out)
			}
		}
	}
	t.Cleanup(func() { setLinks("up") })
	started = time.Now()
	rep = probe(t, a, b, 10*time.Second, func() {
		setLinks("down")
		killedAt = time.Now()
	})
	third := holder(t, a.cluster)
	if third == "" || third == second {
		t.Fatalf("after %s lost its links, the active gateway is %q", second, third)
	}
	resumed(t, "links down", rep, killedAt.Sub(started))
	t.Logf("links of %s down: %s took over; longest gap %.0f ms (sent %d, lost %d)", second, third, rep.MaxGapMs, rep.Sent, rep.Lost)

	// Back on the network, the old gateway sees the Lease taken and steps
	// down: one active gateway, and traffic flows.
	setLinks("up")
	waitFor(t, 120*time.Second, "exactly one active gateway in "+a.cluster, func(ctx context.Context) (bool, error) {
		var gws v1.GatewayList
		if err := ca.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
			return false, nil
		}
		n := 0
		for _, g := range gws.Items {
			if g.Status.HAStatus == v1.HAStatusActive {
				n++
			}
		}
		return n == 1 && holder(t, a.cluster) == third, nil
	})
	rep = probe(t, a, b, 3*time.Second, func() {})
	if !rep.OK || rep.Lost*100 > rep.Sent*5 {
		t.Errorf("traffic after the old gateway came back: %+v", rep)
	}
}

// holder is the node holding the cluster's gateway Lease: the active
// gateway. (A killed gateway's Gateway status still says active until it
// restarts; the Lease is the truth.)
func holder(t *testing.T, cluster string) string {
	t.Helper()
	l, err := kubeClient(t, cluster).CoordinationV1().Leases(v1.ComponentNamespace).Get(context.Background(), v1.GatewayLeaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// resumed checks that replies came again after the disruption at offset
// and until the end of the run.
func resumed(t *testing.T, what string, rep pingReport, offset time.Duration) {
	t.Helper()
	if !rep.OK || rep.LastReplyMs == nil {
		t.Fatalf("%s: no replies at all: %+v", what, rep)
	}
	if *rep.LastReplyMs < float64(offset.Milliseconds()) || rep.DurationMs-*rep.LastReplyMs > 1000 {
		t.Fatalf("%s: traffic did not come back (disruption at %d ms, last reply at %.0f ms of %.0f): gaps %+v",
			what, offset.Milliseconds(), *rep.LastReplyMs, rep.DurationMs, rep.Gaps)
	}
}

// brokerOutage freezes the broker's apiserver (c1's, so also c1's own
// control plane) for two minutes while traffic flows between a and b, and
// checks a change made meanwhile arrives afterwards.
func brokerOutage(t *testing.T, a, b placement) {
	ctx := context.Background()
	pid := controlPlanePID(t, "c1", "kube-apiserver")
	cb := ctrlClient(t, b.cluster)
	frozen := false
	thaw := func() {
		if frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			frozen = false
		}
	}
	t.Cleanup(thaw)
	rep := probe(t, a, b, 125*time.Second, func() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen = true
		var cl v1.Cluster
		if err := cb.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: b.cluster}, &cl); err != nil {
			t.Fatal(err)
		}
		cl.Spec.Topology.Zone = "changed-during-the-outage"
		if err := cb.Update(ctx, &cl); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		thaw()
	})
	if !rep.OK || rep.Lost*100 > rep.Sent {
		t.Errorf("traffic during the broker outage: sent %d, lost %d, gaps %+v", rep.Sent, rep.Lost, rep.Gaps)
	}
	t.Logf("2 min broker outage: sent %d, lost %d, longest gap %.0f ms", rep.Sent, rep.Lost, rep.MaxGapMs)
	ca := ctrlClient(t, "c1")
	waitFor(t, 90*time.Second, b.cluster+"'s change to reach c1 after the outage", func(ctx context.Context) (bool, error) {
		var got v1.Cluster
		err := ca.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: b.cluster}, &got)
		return err == nil && got.Spec.Topology.Zone == "changed-during-the-outage", nil
	})
}
