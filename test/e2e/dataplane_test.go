package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/gateway"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/routeagent"
	"strait.dev/strait/test/sandbox"
	"strait.dev/strait/test/testutil"
)

// placement is where the test workload of one cluster runs, seen in one
// IP family (the cluster's primary one unless inFamily chose another).
type placement struct {
	cluster, ns string
	gwNode      string            // the active gateway's node when set up
	nonGateway  string            // the node of srv-ngw and host-ngw, never a gateway
	ips         map[string]string // pod name -> IP of the family: srv-gw, srv-ngw
	svc         string            // ClusterIP of Service srv, of the family
	cidr        netip.Prefix      // the cluster's pod CIDR of the family
	// Every family's, primary first: pod name -> IPs, the Service's
	// ClusterIPs, the cluster's pod CIDRs (from the sandbox's plan).
	allIPs map[string][]string
	svcs   []string
	cidrs  []netip.Prefix
}

// inFamily is p seen in one IP family: ips, svc and cidr are those of
// that family (4 or 6). It fails the test when the cluster lacks the
// family or a pod or the Service has no address of it.
func (p placement) inFamily(t *testing.T, family int) placement {
	t.Helper()
	of := func(addrs []string) string {
		for _, a := range addrs {
			if ip, err := netip.ParseAddr(a); err == nil && ipFamily(ip) == family {
				return a
			}
		}
		return ""
	}
	q := p
	q.ips = map[string]string{}
	for name, addrs := range p.allIPs {
		if q.ips[name] = of(addrs); q.ips[name] == "" {
			t.Fatalf("%s/%s has no IPv%d address: %v", p.cluster, name, family, addrs)
		}
	}
	if q.svc = of(p.svcs); q.svc == "" {
		t.Fatalf("%s's Service srv has no IPv%d ClusterIP: %v", p.cluster, family, p.svcs)
	}
	q.cidr = netip.Prefix{}
	for _, c := range p.cidrs {
		if ipFamily(c.Addr()) == family {
			q.cidr = c
		}
	}
	if !q.cidr.IsValid() {
		t.Fatalf("%s has no IPv%d pod CIDR: %v", p.cluster, family, p.cidrs)
	}
	return q
}

// family names p's family: "IPv4" or "IPv6".
func (p placement) family() string { return fmt.Sprintf("IPv%d", ipFamily(p.cidr.Addr())) }

// ipFamily is 4 or 6.
func ipFamily(ip netip.Addr) int {
	if ip.Is4() || ip.Is4In6() {
		return 4
	}
	return 6
}

// TestDataplane joins clusters with each cable driver and proves that every
// pod and host of one cluster reaches every pod and Service of the other,
// through the route agents' overlay and the active gateways, and that this
// survives route-agent restarts, a gateway kill -9, the active gateway's pod
// deleted (a clean stop), a gateway node losing its links, and (WireGuard) a
// broker outage of 75 s.
func TestDataplane(t *testing.T) {
	need(t)
	leaveClusterSet(t) // this test joins clusters its own way
	info := deployBroker(t)
	for _, tc := range cablePairs {
		t.Run(tc.driver, func(t *testing.T) {
			for _, c := range []string{tc.a, tc.b} {
				if out, err := straitctl(t, "join", info, "--kubeconfig", adminKubeconfig(c), "--clusterid", c,
					"--gateway-nodes", c+"-n1,"+c+"-n2", "--pod-cidr", podCIDR(c), "--cable-driver", tc.driver); err != nil {
					t.Fatalf("join %s: %v\n%s", c, err, out)
				}
			}
			pa, pb := place(t, tc.a, tc.a+"-n3"), place(t, tc.b, tc.b+"-n3")
			waitCrossCluster(t, pa, pb)

			t.Run("connectivity matrix", func(t *testing.T) {
				matrix(t, pa, pb)
				matrix(t, pb, pa)
			})
			// Every node of both clusters as it is before any restart or
			// failover, with pa.gwNode active: each disruption below must
			// end with the nodes exactly so. A failover moves the active
			// role, and the active and the standby node legitimately
			// differ, so each one that moves it also fails back to
			// pa.gwNode before comparing: then every node has its original
			// role and must match its own original state line for line.
			// (Comparing the set of states after a role move would not
			// work: the states name the nodes' own addresses.) On a
			// loaded machine a standby that misses heartbeats may have
			// taken the role during the matrix: failBack puts it back.
			failBack(t, pa, pb)
			orig := takeNodeStates(t, pa.cluster, pb.cluster)
			t.Run("route agent restarts change nothing and keep traffic", func(t *testing.T) {
				routeAgentRestarts(t, pa, pb, orig)
			})
			t.Run("gateway restarts change nothing", func(t *testing.T) {
				gatewayRestarts(t, pa, pb, orig)
			})
			t.Run("gateway failover: kill -9, clean stop, links down", func(t *testing.T) {
				failover(t, pa, pb, orig)
			})
			t.Run("a gateway that cannot carry traffic is replaced", func(t *testing.T) {
				cannotCarryFaults(t, pa, pb, orig)
			})
			if tc.driver == "wireguard" {
				t.Run("a broker outage does not interrupt traffic", func(t *testing.T) {
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
// node and one on the non-gateway node nonGateway (both behind Service
// srv, of every family the cluster has), and a host-network pod on
// nonGateway. The placement is seen in the cluster's primary family.
func place(t *testing.T, cluster, nonGateway string) placement {
	t.Helper()
	ctx := context.Background()
	cs := kubeClient(t, cluster)
	p := placement{cluster: cluster, ns: testNamespace(t, cs), nonGateway: nonGateway, allIPs: map[string][]string{}}
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range state.Clusters {
		if c.Name == cluster {
			p.cidrs = c.PodCIDRs
		}
	}
	waitFor(t, 60*time.Second, "an active gateway in "+cluster, func(ctx context.Context) (bool, error) {
		p.gwNode = active(ctx, ctrlClient(t, cluster))
		return p.gwNode != "", nil
	})
	for name, node := range map[string]string{"srv-gw": p.gwNode, "srv-ngw": nonGateway} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "srv", "pod": name}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{testpodContainer("c", "serve")}},
		}
		if _, err := cs.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	host := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "host-ngw", Labels: map[string]string{"app": "host"}},
		Spec: corev1.PodSpec{NodeName: nonGateway, HostNetwork: true,
			Containers: []corev1.Container{testpodContainer("c", "sleep")}},
	}
	if _, err := cs.CoreV1().Pods(p.ns).Create(ctx, host, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// PreferDualStack: a ClusterIP of every family the cluster has, and
	// a single-stack Service where it has one.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "srv"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "srv"}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack), Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
			{Name: "echo", Port: 9000, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
		}},
	}
	s, err := cs.CoreV1().Services(p.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.svcs = s.Spec.ClusterIPs
	for _, pod := range runningPods(t, cs, p.ns, "app=srv", 2) {
		for _, ip := range pod.Status.PodIPs {
			p.allIPs[pod.Name] = append(p.allIPs[pod.Name], ip.IP)
		}
	}
	runningPods(t, cs, p.ns, "app=host", 1)
	if len(p.cidrs) == 0 {
		t.Fatalf("the sandbox's state has no pod CIDRs of %s", cluster)
	}
	return p.inFamily(t, ipFamily(p.cidrs[0].Addr()))
}

// waitCrossCluster waits until a's non-gateway node's pod reaches b's.
func waitCrossCluster(t *testing.T, a, b placement) {
	t.Helper()
	var r connectReport
	if err := poll(90*time.Second, func(context.Context) (bool, error) {
		r = connect(t, a.cluster, a.ns, "srv-ngw", "--http", "http://"+net.JoinHostPort(b.ips["srv-ngw"], "8080")+"/", "--timeout", "2s")
		return r.OK, nil
	}); err != nil {
		out, _ := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig(a.cluster))
		t.Fatalf("%s/srv-ngw never reached %s/srv-ngw (%s): %+v\n%s\n%s", a.cluster, b.cluster, b.ips["srv-ngw"], r, out, nodeState(t, sandbox.NodeNS(a.nonGateway)))
	}
}

// matrix checks every client of from against every server of to.
func matrix(t *testing.T, from, to placement) {
	for _, client := range []string{"srv-gw", "srv-ngw", "host-ngw"} {
		for _, server := range []string{"srv-gw", "srv-ngw"} {
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
				if addr, err := netip.ParseAddr(host); err != nil || !from.cidr.Contains(addr) {
					t.Errorf("the server saw %q, outside %s's pod CIDR %s", host, from.cluster, from.cidr)
				}
				// Several MB over TCP, verified byte for byte by the echo.
				if r := connect(t, from.cluster, from.ns, client, "--tcp", net.JoinHostPort(ip, "9000"), "--bytes", "4000000", "--timeout", "20s"); !r.OK {
					t.Errorf("TCP 4 MB echo: %+v", r)
				}
				// Datagrams larger than any MTU on the path: fragmented, reassembled.
				// Over IPv6 no node fragments them: a fresh pair's first try
				// teaches the client its path MTU (a Packet Too Big from its
				// node or gateway), the second the server, the third passes.
				// A node that answered in two steps (an unlocked IPv6 route
				// MTU, docs/dataplane.md) needed five.
				if r := connect(t, from.cluster, from.ns, client, "--udp", net.JoinHostPort(ip, "9001"), "--bytes", "3000", "--count", "3"); !r.OK {
					t.Errorf("UDP 3000 bytes: %+v", r)
				}
				if out, err := execIn(t, from.cluster, from.ns, client, "ping", "-c", "2", "-s", "3000", "-W", "2", ip); err != nil {
					t.Errorf("3000-byte ping: %v\n%s", err, out)
				}
			})
		}
		t.Run(fmt.Sprintf("%s/%s→%s/Service", from.cluster, client, to.cluster), func(t *testing.T) {
			if r := connect(t, from.cluster, from.ns, client, "--http", "http://"+net.JoinHostPort(to.svc, "80")+"/", "--timeout", "3s"); !r.OK {
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
	Final       bool     `json:"final"`
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

// probe is a continuous UDP ping (every 10 ms) from a's srv-ngw to b's
// srv-ngw, running until stop: it spans exactly the disruption under test,
// however long that takes on a busy machine.
type probe struct {
	cmd     *exec.Cmd
	out     testutil.SyncBuffer
	errOut  testutil.SyncBuffer
	started time.Time
	done    chan error
}

// startProbe starts the ping and returns once a reply came back, so that
// the traffic is known to flow before the disruption.
func startProbe(t *testing.T, a, b placement) *probe {
	t.Helper()
	return startProbeFrom(t, sandbox.PodRef{Cluster: a.cluster, Namespace: a.ns, Name: "srv-ngw"}, testpodProgram, net.JoinHostPort(b.ips["srv-ngw"], "9001"))
}

// startProbeFrom starts a UDP ping every 10 ms from pod to target (ip:port,
// a UDP echo) and returns once a reply came back. testpod is strait-testpod
// as the pod's container finds it (testpodProgram for the test workload,
// hostTestpod for a tool pod).
func startProbeFrom(t *testing.T, pod sandbox.PodRef, testpod, target string) *probe {
	t.Helper()
	cmd, err := layout.ExecCommand(context.Background(), pod,
		testpod, "ping", "--udp", target,
		"--interval", "10ms", "--report-every", "100ms")
	if err != nil {
		t.Fatal(err)
	}
	p := &probe{cmd: cmd, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = &p.out, &p.errOut
	// The ping's own clock starts a little after this: offsets measured
	// from here are never earlier than the ping's (see replyAfter).
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor(t, 30*time.Second, "the probe's first reply", func(context.Context) (bool, error) {
		r, ok := p.latest()
		return ok && r.Received > 0, nil
	})
	return p
}

// latest is the ping's latest report.
func (p *probe) latest() (pingReport, bool) {
	var r pingReport
	lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if json.Unmarshal([]byte(lines[i]), &r) == nil {
			return r, true
		}
	}
	return r, false
}

// now is the time since the probe started, on the test's clock.
func (p *probe) now() time.Duration { return time.Since(p.started) }

// waitReplyAfter waits until a reply arrives later than at (a p.now() taken
// at the disruption, or better once the other cluster moved to the new
// gateway, waitConverged): the traffic came back. The ping's clock started
// after p.started, so a reply it timed after at came after that moment. The
// bound only catches traffic that never comes back; how long it took is
// logged, and measured by make bench-dataplane.
func (p *probe) waitReplyAfter(t *testing.T, what string, at time.Duration) {
	t.Helper()
	if err := poll(90*time.Second, func(context.Context) (bool, error) {
		r, ok := p.latest()
		return ok && r.LastReplyMs != nil && *r.LastReplyMs > float64(at.Milliseconds()), nil
	}); err != nil {
		r, _ := p.latest()
		t.Fatalf("%s: traffic did not come back (disruption at %d ms): %+v", what, at.Milliseconds(), r)
	}
}

// stop ends the ping with SIGTERM and returns its final report.
func (p *probe) stop(t *testing.T) pingReport {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the probe ignored SIGTERM: %s", p.errOut.String())
	}
	r, ok := p.latest()
	if !ok || !r.Final {
		t.Fatalf("probe: no final report: %s%s", p.out.String(), p.errOut.String())
	}
	return r
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

// restarts is how many times each restart is repeated: once could leave
// state a second restart trips over (a duplicate rule, a stale route).
const restarts = 2

// brokerOutageLength outlasts what an outage of c1's apiserver sets off:
// the gateway Lease (15 s) running out unrenewed, and the node lifecycle
// controller's grace (50 s), after which it marks c1's nodes and their pods
// NotReady until the nodes report again.
const brokerOutageLength = 75 * time.Second

// routeAgentRestarts restarts the route agent on the active gateway's node
// and on the non-gateway node, restarts times each, while traffic flows
// between the non-gateway nodes' pods. After each round, once the new agents report their
// first applied state, every node of both clusters must be as in orig.
func routeAgentRestarts(t *testing.T, a, b placement, orig nodeStates) {
	nodes := []string{a.gwNode, a.nonGateway}
	p := startProbe(t, a, b)
	for round := 1; round <= restarts; round++ {
		for _, n := range nodes {
			// A graceful restart (delete the pod; the DaemonSet makes a
			// new one) must leave the data plane in place.
			restartPod(t, a.cluster, "routeagent", n)
			waitFor(t, 60*time.Second, "the new route agent on "+n+" to apply its state", func(ctx context.Context) (bool, error) {
				return routeAgentApplied(ctx, n)
			})
		}
		orig.requireSame(t, fmt.Sprintf("route agent restart %d on %v", round, nodes))
	}
	rep := p.stop(t)
	// A restart that removed the state even for a moment loses a run of
	// probes; a lost one here or there is the machine being busy.
	if !rep.OK || rep.Lost*100 > rep.Sent {
		t.Errorf("traffic across route agent restarts: sent %d, lost %d, gaps %+v", rep.Sent, rep.Lost, rep.Gaps)
	}
	t.Logf("%d route agent restarts on each of %v: sent %d, lost %d, longest gap %.0f ms", restarts, nodes, rep.Sent, rep.Lost, rep.MaxGapMs)
}

// routeAgentApplied reports whether the route agent on node has applied
// its desired state since it started, from its metrics on :9477 in the
// node's network namespace: strait_routeagent_state_applied is 1 once the
// current desired state is in the kernel, and
// strait_routeagent_state_generation counts the states applied, from 0 at
// the process's start. Call it once the agent's new pod runs: the old
// process has exited by then, so the port is the new one's.
func routeAgentApplied(ctx context.Context, node string) (bool, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", sandbox.NodeNS(node),
		"curl", "-s", "--max-time", "2", "http://127.0.0.1:9477/metrics").Output()
	if err != nil {
		return false, nil // not listening yet
	}
	applied, generation := false, 0
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			switch f[0] {
			case "strait_routeagent_state_applied":
				applied = f[1] == "1"
			case "strait_routeagent_state_generation":
				generation, _ = strconv.Atoi(f[1])
			}
		}
	}
	return applied && generation >= 1, nil
}

// restartPod deletes the pod of a component ("routeagent", "gateway") on
// a node, as a rolling restart does, and waits for the DaemonSet's new pod
// there to run. It returns the new pod's name.
func restartPod(t *testing.T, cluster, component, node string) string {
	t.Helper()
	ctx := context.Background()
	cs := kubeClient(t, cluster)
	list := func(ctx context.Context) ([]corev1.Pod, error) {
		pods, err := cs.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/component=" + component, FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return nil, err
		}
		return pods.Items, nil
	}
	pods, err := list(ctx)
	if err != nil || len(pods) != 1 {
		t.Fatalf("%s pod on %s: %v (%d)", component, node, err, len(pods))
	}
	old := pods[0].Name
	if err := cs.CoreV1().Pods(v1.ComponentNamespace).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var now string
	waitFor(t, 90*time.Second, "a new "+component+" pod on "+node, func(ctx context.Context) (bool, error) {
		pods, err := list(ctx)
		if err != nil || len(pods) != 1 || pods[0].Name == old || pods[0].Status.Phase != corev1.PodRunning || !podReady(&pods[0]) {
			return false, nil
		}
		now = pods[0].Name
		return true, nil
	})
	return now
}

// gatewayRestarts restarts the standby gateway and then the active one,
// restarts times each. The active gateway's clean stop may hand the role
// to the standby; the test then fails back (failBack) so that every node
// has its original role, and every node of both clusters must then be as
// in orig.
func gatewayRestarts(t *testing.T, a, b placement, orig nodeStates) {
	standby := otherGateway(a.cluster, a.gwNode)
	for round := 1; round <= restarts; round++ {
		restartPod(t, a.cluster, "gateway", standby)
		settle(t, a, b, a.gwNode)
		orig.waitSame(t, fmt.Sprintf("restart %d of the standby gateway on %s", round, standby))

		restartPod(t, a.cluster, "gateway", a.gwNode)
		failBack(t, a, b)
		orig.waitSame(t, fmt.Sprintf("restart %d of the active gateway on %s", round, a.gwNode))
	}
}

// otherGateway is the gateway node of a cluster that is not node: the
// clusters have two, n1 and n2.
func otherGateway(cluster, node string) string {
	if node == cluster+"-n1" {
		return cluster + "-n2"
	}
	return cluster + "-n1"
}

// failBack waits for a's gateways to settle, and when the active role is
// no longer on a.gwNode, gives it back. A restart of the active gateway
// does not do that reliably: its clean stop frees the Lease, but its new
// pod may take it again before the standby does. So the node holding the
// role leaves the gateway set for a moment (its gateway pod goes, freeing
// the Lease, and a.gwNode is the only candidate), then comes back, and its
// new gateway starts as the standby.
//
// On a loaded machine a standby can miss the active gateway's heartbeats
// and take the role (a false takeover, docs/gateway-failover.md) while the
// gateways settle; then the role is failed back again, up to three times.
func failBack(t *testing.T, a, b placement) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := tryFailBack(t, a, b)
		if err == nil {
			break
		}
		if attempt == 3 || holder(t, a.cluster) == a.gwNode {
			t.Fatal(err)
		}
		t.Logf("%v: the role moved again, failing back once more", err)
	}
	waitCrossCluster(t, a, b)
}

func tryFailBack(t *testing.T, a, b placement) error {
	t.Helper()
	var now string
	waitFor(t, 90*time.Second, "an active gateway in "+a.cluster, func(ctx context.Context) (bool, error) {
		now = holder(t, a.cluster)
		return now != "", nil
	})
	if now != a.gwNode {
		if err := trySettle(t, a, b, now); err != nil {
			return err
		}
		t.Logf("the active role moved to %s; failing back to %s", now, a.gwNode)
		setGatewayLabel(t, a.cluster, now, false)
		t.Cleanup(func() { setGatewayLabel(t, a.cluster, now, true) })
		cs := kubeClient(t, a.cluster)
		waitFor(t, 90*time.Second, a.gwNode+" to take over from "+now+", out of the gateway set", func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{
				LabelSelector: "app.kubernetes.io/component=gateway", FieldSelector: "spec.nodeName=" + now})
			return err == nil && len(pods.Items) == 0 && holder(t, a.cluster) == a.gwNode, nil
		})
		setGatewayLabel(t, a.cluster, now, true)
	}
	return trySettle(t, a, b, a.gwNode)
}

// setGatewayLabel puts a node in the gateway set or takes it out, as
// "straitctl join --gateway-nodes" labels it.
func setGatewayLabel(t *testing.T, cluster, node string, on bool) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"strait.dev/gateway":null}}}`)
	if on {
		patch = []byte(`{"metadata":{"labels":{"strait.dev/gateway":"true"}}}`)
	}
	if _, err := kubeClient(t, cluster).CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("label %s as a gateway (%v): %v", node, on, err)
	}
}

// settle waits until active holds a's gateway Lease and says so in its
// status, a's other gateway is the standby, both gateway pods run, both
// clusters' active gateways report their cable connected to each other,
// and traffic flows between the non-gateway nodes' pods.
func settle(t *testing.T, a, b placement, active string) {
	t.Helper()
	if err := trySettle(t, a, b, active); err != nil {
		t.Fatal(err)
	}
	waitCrossCluster(t, a, b)
}

// trySettle is settle's wait for the gateways, without the traffic check,
// returning what was still wrong when it gave up.
func trySettle(t *testing.T, a, b placement, active string) error {
	t.Helper()
	ca, cb := ctrlClient(t, a.cluster), ctrlClient(t, b.cluster)
	connected := func(ctx context.Context, c client.Client, node, remote string) bool {
		var gw v1.Gateway
		if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: node}, &gw); err != nil || gw.Status.HAStatus != v1.HAStatusActive {
			return false
		}
		for _, conn := range gw.Status.Connections {
			if conn.ClusterID == v1.ClusterID(remote) && conn.Status == v1.Connected {
				return true
			}
		}
		return false
	}
	var state string
	if err := poll(120*time.Second, func(ctx context.Context) (bool, error) {
		state = ""
		if h := holder(t, a.cluster); h != active {
			state = "Lease held by " + h
			return false, nil
		}
		var gws v1.GatewayList
		if err := ca.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
			return false, nil
		}
		for _, g := range gws.Items {
			want := v1.HAStatusPassive
			if g.Name == active {
				want = v1.HAStatusActive
			}
			if g.Status.HAStatus != want {
				state = fmt.Sprintf("%s is %s", g.Name, g.Status.HAStatus)
				return false, nil
			}
		}
		pods, err := kubeClient(t, a.cluster).CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=gateway"})
		if err != nil {
			return false, nil
		}
		running := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				running++
			}
		}
		if running != 2 {
			state = fmt.Sprintf("%d gateway pods running", running)
			return false, nil
		}
		if !connected(ctx, ca, active, b.cluster) {
			state = active + " not connected to " + b.cluster
			return false, nil
		}
		if bActive := holder(t, b.cluster); !connected(ctx, cb, bActive, a.cluster) {
			state = b.cluster + "'s " + bActive + " not connected to " + a.cluster
			return false, nil
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("%s's gateways did not settle with %s active: %s", a.cluster, active, state)
	}
	return nil
}

// failover kills a's active gateway (kill -9: killActive) and, once the
// standby holds the Lease and traffic flows, fails back; then deletes the
// active gateway's pod (a clean stop: cleanStop), and again; then the
// active gateway's node loses its links. Each time a probe runs between
// the non-gateway nodes' pods, in a's family, and the traffic must come
// back through the other gateway; the gaps are logged (make
// bench-dataplane measures them), not asserted. After each failing back
// every node of both clusters must be as in orig.
func failover(t *testing.T, a, b placement, orig nodeStates) {
	ca := ctrlClient(t, a.cluster)
	killActive(t, a, b, orig)
	for round := 1; round <= restarts; round++ {
		cleanStop(t, a, b, orig, round)
	}

	// The active gateway's node loses its links (LAN and internet): the
	// switch ports go down, as when its cables are pulled.
	first, second := holder(t, a.cluster), ""
	index, _ := strconv.Atoi(strings.TrimPrefix(first, a.cluster+"-n"))
	setLinks := func(state string) {
		for _, sp := range sandbox.SwitchPorts(a.cluster, index) {
			if out, err := exec.Command("ip", "-n", sp[0], "link", "set", sp[1], state).CombinedOutput(); err != nil {
				t.Logf("ip link set %s %s in %s: %v %s", sp[1], state, sp[0], err, out)
			}
		}
	}
	t.Cleanup(func() { setLinks("up") })
	p := startProbe(t, a, b)
	setLinks("down")
	waitFor(t, 90*time.Second, "another gateway to hold the Lease after "+first+" lost its links", func(context.Context) (bool, error) {
		second = holder(t, a.cluster)
		return second != "" && second != first, nil
	})
	p.waitReplyAfter(t, "links down", waitConverged(t, p, a, b, second))
	rep := p.stop(t)
	t.Logf("links of %s down: %s took over; longest gap of the %s probe %.0f ms (sent %d, lost %d)", first, second, a.family(), rep.MaxGapMs, rep.Sent, rep.Lost)

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
		return n == 1 && holder(t, a.cluster) == second, nil
	})
	failBack(t, a, b)
	// Traffic for three seconds' worth of probes: the window is the thing
	// under test, counted in probes rather than timed.
	p = startProbe(t, a, b)
	waitFor(t, 60*time.Second, "300 probes", func(context.Context) (bool, error) {
		r, _ := p.latest()
		return r.Sent >= 300, nil
	})
	rep = p.stop(t)
	if !rep.OK || rep.Lost*100 > rep.Sent*5 {
		t.Errorf("traffic after the old gateway came back and the role went back to %s: %+v", a.gwNode, rep)
	}
	orig.waitSame(t, first+"'s links down and up, and failing back")
}

// killActive kills a's active gateway (kill -9) while a probe runs from
// a's srv-ngw to b's (in a's family); see disruptActive.
func killActive(t *testing.T, a, b placement, orig nodeStates) {
	t.Helper()
	disruptActive(t, a, b, orig, "kill -9", func(first string) {
		if err := syscall.Kill(gatewayPID(t, a.cluster, first), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	})
}

// cleanStop deletes a's active gateway's pod, as a rolling update or an
// operator does (SIGTERM, then its grace period), while a probe runs as in
// killActive; round numbers the log line. See disruptActive.
func cleanStop(t *testing.T, a, b placement, orig nodeStates, round int) {
	t.Helper()
	disruptActive(t, a, b, orig, fmt.Sprintf("clean stop %d (pod deleted)", round), func(first string) {
		deleteGatewayPod(t, a.cluster, first)
	})
}

// disruptActive runs disrupt on a's active gateway node while a probe runs
// from a's srv-ngw to b's (in a's family), waits for another gateway to
// hold the Lease and for b to report its cable to it connected, logs the
// probe's longest gap, fails back, and waits for every node of both
// clusters to be as in orig.
func disruptActive(t *testing.T, a, b placement, orig nodeStates, what string, disrupt func(first string)) {
	t.Helper()
	first := holder(t, a.cluster)
	p := startProbe(t, a, b)
	disrupt(first)
	var second string
	waitFor(t, 90*time.Second, "another gateway to hold the Lease after "+what+" of the active gateway on "+first, func(context.Context) (bool, error) {
		second = holder(t, a.cluster)
		return second != "" && second != first, nil
	})
	p.waitReplyAfter(t, what, waitConverged(t, p, a, b, second))
	rep := p.stop(t)
	t.Logf("%s of the active gateway on %s: %s took over; longest gap of the %s probe %.0f ms (sent %d, lost %d)", what, first, second, a.family(), rep.MaxGapMs, rep.Sent, rep.Lost)
	failBack(t, a, b)
	orig.waitSame(t, what+" of the active gateway on "+first+" and failing back")
}

// cannotCarryFaults breaks the path to the other cluster of one cluster's
// active gateway while its process runs and answers heartbeats over its
// cluster network (cannotCarry), in every way its driver allows; each time
// a standby that reaches the other cluster must take over, and the role
// is failed back. c2 sits behind NAT, so c1's standby cannot reach c2's
// gateways (nothing opens a path in) while c2's reach c1's: the WireGuard
// run breaks c2's active gateway, the VXLAN run c1's.
func cannotCarryFaults(t *testing.T, a, b placement, orig nodeStates) {
	cut, other, faults := cannotCarrySide(a, b)
	for _, f := range faults {
		cannotCarryAndFailBack(t, cut, other, f, orig)
	}
}

// cannotCarrySide is the one of a and b whose active gateway
// cannotCarryFaults breaks (c2 when it is one of them, else a), the other,
// and the faults the pair's driver allows there.
func cannotCarrySide(a, b placement) (cut, other placement, faults []cableFault) {
	if b.cluster == "c2" {
		return b, a, []cableFault{faultUplinkCut, faultCablePortBlocked, faultForwardDropped, faultCableDown, faultWireGuardWedged}
	}
	return a, b, []cableFault{faultForwardDropped, faultCableDown}
}

// cannotCarryAndFailBack is cannotCarry, then failing both clusters back
// to their original active gateways and waiting for every node of both
// to be as in orig.
func cannotCarryAndFailBack(t *testing.T, cut, other placement, f cableFault, orig nodeStates) {
	t.Helper()
	cannotCarry(t, cut, other, f)
	failBack(t, cut, other)
	if holder(t, other.cluster) != other.gwNode {
		failBack(t, other, cut)
	}
	orig.waitSame(t, f.name+" at "+cut.cluster+"'s active gateway, and failing back")
}

// cableFault breaks an active gateway's path to the other clusters, on its
// node (netns), while its process runs; undo repairs it. peer is the other
// cluster's pod CIDR of the family under test.
type cableFault struct {
	name  string
	apply func(t *testing.T, netns string, cablePort int32, peer netip.Prefix) (undo func() error)
}

// nsRun runs a command in a node's network namespace.
func nsRun(netns string, args ...string) error {
	if out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s in %s: %v %s", strings.Join(args, " "), netns, err, out)
	}
	return nil
}

// iptablesFault inserts rules (each a chain and a match, the filter
// table's unless it starts with "-t" and a table; "PORT" stands for the
// cable port, "PEER" for the other cluster's pod CIDR) and deletes them on
// undo. A rule that names an IPv6 address or prefix goes to ip6tables,
// any other to iptables.
func iptablesFault(rules ...[]string) func(*testing.T, string, int32, netip.Prefix) func() error {
	return func(t *testing.T, netns string, port int32, peer netip.Prefix) func() error {
		var inserts, deletes [][]string
		for _, r := range rules {
			r = slices.Clone(r)
			cmd := "iptables"
			for i, a := range r {
				switch a {
				case "PORT":
					r[i] = strconv.Itoa(int(port))
				case "PEER":
					r[i] = peer.String()
				}
				if p, err := netip.ParsePrefix(r[i]); err == nil && p.Addr().Is6() {
					cmd = "ip6tables"
				}
			}
			table := "filter"
			if r[0] == "-t" {
				table, r = r[1], r[2:]
			}
			inserts = append(inserts, append([]string{cmd, "-w", "-t", table, "-I"}, r...))
			deletes = append(deletes, append([]string{cmd, "-w", "-t", table, "-D"}, r...))
		}
		for i, c := range inserts {
			if err := nsRun(netns, c...); err != nil {
				for _, d := range deletes[:i] {
					_ = nsRun(netns, d...)
				}
				t.Fatal(err)
			}
		}
		return func() error {
			var errs []error
			for _, c := range deletes {
				errs = append(errs, nsRun(netns, c...))
			}
			return errors.Join(errs...)
		}
	}
}

var (
	// The node's link to the internet (the other clusters' gateways, the
	// broker) is gone; its LAN works.
	faultUplinkCut = cableFault{"uplink cut", iptablesFault(
		[]string{"OUTPUT", "-d", sandbox.InternetCIDR.String(), "-j", "DROP"},
		[]string{"INPUT", "-s", sandbox.InternetCIDR.String(), "-j", "DROP"})}
	// The cable's UDP port dropped both ways, as a wedged WireGuard that
	// neither sends nor receives.
	faultCablePortBlocked = cableFault{"cable port blocked", iptablesFault(
		[]string{"OUTPUT", "-p", "udp", "--sport", "PORT", "-j", "DROP"},
		[]string{"INPUT", "-p", "udp", "--dport", "PORT", "-j", "DROP"})}
	// Forwarding to the other cluster dropped, as a firewall rule an
	// operator added for the wrong addresses: in the mangle table, which
	// the route agent does not keep clear (it keeps its own jump first in
	// the filter table's FORWARD, before any DROP there). The gateway's
	// own health probes start on its node and do not cross FORWARD: only
	// the standby's probes through it see the fault.
	faultForwardDropped = cableFault{"forwarding to the other cluster dropped", iptablesFault(
		[]string{"-t", "mangle", "FORWARD", "-d", "PEER", "-j", "DROP"})}
	// The cable device set down, as by an operator's "ip link set down":
	// the kernel drops its routes, nothing brings it up again.
	faultCableDown = cableFault{"cable device down", linkDownFault(routeagent.CableInterface)}
	// The userspace WireGuard's TUN carries nothing either way while its
	// UDP socket still works (handshakes and keepalives go on): what a
	// wireguard-go whose TUN reader and writer are stuck looks like from
	// outside. The packets are dropped on their way into the TUN and on
	// their way out of it, before routing. (The mangle table: the route
	// agent has chains there, so the table is in every node's state
	// already; a fault in the raw table would leave it there, empty.)
	faultWireGuardWedged = cableFault{"WireGuard's TUN wedged", iptablesFault(
		[]string{"-t", "mangle", "POSTROUTING", "-o", routeagent.CableInterface, "-j", "DROP"},
		[]string{"-t", "mangle", "PREROUTING", "-i", routeagent.CableInterface, "-j", "DROP"})}
)

// linkDownFault sets a device down, and up again on undo unless it is gone
// by then (a gateway that stands by again removes its cable device).
func linkDownFault(dev string) func(*testing.T, string, int32, netip.Prefix) func() error {
	return func(t *testing.T, netns string, _ int32, _ netip.Prefix) func() error {
		if err := nsRun(netns, "ip", "link", "set", dev, "down"); err != nil {
			t.Fatal(err)
		}
		return func() error {
			if err := nsRun(netns, "ip", "link", "set", dev, "up"); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				return err
			}
			return nil
		}
	}
}

// cannotCarry applies f to cut's active gateway node while a probe runs
// between the non-gateway nodes' pods, and waits for a standby to take over and the
// traffic to come back through it; then it undoes f. The gap is logged,
// not asserted.
func cannotCarry(t *testing.T, cut, other placement, f cableFault) {
	t.Helper()
	ctx := context.Background()
	first := holder(t, cut.cluster)
	var eps v1.EndpointList
	if err := ctrlClient(t, cut.cluster).List(ctx, &eps, client.InNamespace(v1.ComponentNamespace), client.MatchingLabels{v1.ClusterIDLabel: cut.cluster}); err != nil {
		t.Fatal(err)
	}
	var port int32
	for _, ep := range eps.Items {
		switch {
		case ep.Spec.Hostname != first:
		case ep.Spec.WireGuard != nil:
			port = ep.Spec.WireGuard.Port
		case ep.Spec.VXLAN != nil:
			port = ep.Spec.VXLAN.Port
		}
	}
	if port == 0 {
		t.Fatalf("no Endpoint of %s's active gateway %s with a cable port", cut.cluster, first)
	}
	p := startProbe(t, cut, other)
	undo := f.apply(t, sandbox.NodeNS(first), port, other.cidr)
	undone := false
	restore := func() {
		if !undone {
			undone = true
			if err := undo(); err != nil {
				t.Errorf("undo %s: %v", f.name, err)
			}
		}
	}
	t.Cleanup(restore)
	var second string
	if err := poll(120*time.Second, func(context.Context) (bool, error) {
		second = holder(t, cut.cluster)
		return second != "" && second != first, nil
	}); err != nil {
		var logs string
		pods, _ := kubeClient(t, cut.cluster).CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=gateway"})
		for _, pod := range pods.Items {
			r := kubectl(t, cut.cluster, "logs", "-n", v1.ComponentNamespace, pod.Name, "--tail", "60")
			logs += fmt.Sprintf("\n--- %s on %s:\n%s%s", pod.Name, pod.Spec.NodeName, r.stdout, r.stderr)
		}
		t.Fatalf("no standby of %s took over from %s (%s): %v%s", cut.cluster, first, f.name, err, logs)
	}
	p.waitReplyAfter(t, f.name, waitConverged(t, p, cut, other, second))
	rep := p.stop(t)
	t.Logf("%s at %s's active gateway %s: %s took over; longest gap of the %s probe %.0f ms (sent %d, lost %d)",
		f.name, cut.cluster, first, second, cut.family(), rep.MaxGapMs, rep.Sent, rep.Lost)
	if h := holder(t, other.cluster); h != other.gwNode {
		// A fault of the cable alone (its device down, its port blocked,
		// WireGuard wedged) looks the same from both ends when the two
		// clusters have no third: each active gateway loses its only
		// remote cluster, and each standby reaches the other cluster's
		// gateways by NAT discovery (docs/gateway-failover.md).
		t.Logf("%s's active gateway moved too, to %s: it lost its only remote cluster as well", other.cluster, h)
	}
	restore()
}

// waitConverged waits until b's active gateway reports its cable to a's
// gateway on node connected (in its Gateway status: b's side of the
// failover is done), and returns p.now() then. A reply later than that
// came back through node's gateway. A reply later than the disruption
// alone proves less: after a kill -9 the old gateway node's cable still
// forwards until b moves to the new one, and a probe stopped in between
// reports no gap at all.
func waitConverged(t *testing.T, p *probe, a, b placement, node string) time.Duration {
	t.Helper()
	cb := ctrlClient(t, b.cluster)
	want := gateway.EndpointName(a.cluster, node)
	var seen string
	if err := poll(90*time.Second, func(ctx context.Context) (bool, error) {
		var gw v1.Gateway
		h := holder(t, b.cluster)
		if err := cb.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: h}, &gw); err != nil {
			return false, nil
		}
		seen = fmt.Sprintf("%s: %+v", h, gw.Status.Connections)
		for _, c := range gw.Status.Connections {
			if c.ClusterID == v1.ClusterID(a.cluster) && c.Endpoint == want && c.Status == v1.Connected {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("%s's active gateway never reported its cable to %s connected: %v; last seen %s", b.cluster, want, err, seen)
	}
	return p.now()
}

// deleteGatewayPod deletes the gateway pod on a node with the default
// grace period (SIGTERM first), as kubectl delete pod does, and returns at
// once: the DaemonSet makes a new one there.
func deleteGatewayPod(t *testing.T, cluster, node string) {
	t.Helper()
	cs := kubeClient(t, cluster)
	pods, err := cs.CoreV1().Pods(v1.ComponentNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=gateway", FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("gateway pod on %s: %d pods, %v", node, len(pods.Items), err)
	}
	if err := cs.CoreV1().Pods(v1.ComponentNamespace).Delete(context.Background(), pods.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the gateway pod on %s: %v", node, err)
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

// brokerOutage freezes the broker's apiserver (c1's, so also c1's own
// control plane) for brokerOutageLength while traffic flows between a and
// b, and checks a change made meanwhile arrives afterwards.
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
	p := startProbe(t, a, b)
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
	// Not synchronisation: the outage's length is what is under test.
	time.Sleep(brokerOutageLength)
	thaw()
	rep := p.stop(t)
	if !rep.OK || rep.Lost*100 > rep.Sent {
		t.Errorf("traffic during the broker outage: sent %d, lost %d, gaps %+v", rep.Sent, rep.Lost, rep.Gaps)
	}
	t.Logf("%v broker outage: sent %d, lost %d, longest gap %.0f ms", brokerOutageLength, rep.Sent, rep.Lost, rep.MaxGapMs)
	ca := ctrlClient(t, "c1")
	waitFor(t, 90*time.Second, b.cluster+"'s change to reach c1 after the outage", func(ctx context.Context) (bool, error) {
		var got v1.Cluster
		err := ca.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: b.cluster}, &got)
		return err == nil && got.Spec.Topology.Zone == "changed-during-the-outage", nil
	})
}

// cablePairs are the cluster pairs the data-plane tests join, one per
// cable driver: c2 sits behind NAT, so WireGuard between c1 and c2; c1 and
// c3 reach each other, so VXLAN between them.
var cablePairs = []struct {
	driver string
	a, b   string
}{
	{"wireguard", "c1", "c2"},
	{"vxlan", "c1", "c3"},
}
