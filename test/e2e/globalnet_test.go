package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/test/sandbox"
)

// gnClusters are the overlapping sandbox's clusters (overlappingArgs).
var gnClusters = []string{"c1", "c2"}

// TestGlobalnet is Globalnet as users drive it, in the sandbox whose two
// clusters have the same pod and Service CIDRs: without
// Globalnet the second join is refused; with "straitctl join --globalnet"
// both join, each gets its own global CIDR, and a pod in c1 reaches a
// Service exported from c2 by its clusterset name, over TCP and UDP and
// with large packets, coming in from c1's egress global IPs (or the
// GlobalEgressIP that selects it); a headless Service's and a StatefulSet's
// names resolve to per-pod global IPs; an exported Service without a
// selector is reached through its hand-written endpoints; a StatefulSet pod
// that comes back with another pod IP keeps its global IP, and a re-created
// Service is reached again; host-network processes reach remote global IPs;
// a restart of the controller and a failover of the gateway keep every
// address and add no rule twice; a GlobalEgressIP that asks for more than
// is left gets a condition while the others keep theirs; leave removes
// every rule and keeps users' objects; and joined again over VXLAN, the
// Service is reached as before.
func TestGlobalnet(t *testing.T) {
	needOverlapping(t)
	ctx := context.Background()
	info := deployBroker(t)
	driver := "wireguard"
	join := func(c string, extra ...string) (string, error) {
		args := append([]string{"join", info, "--kubeconfig", adminKubeconfig(c), "--clusterid", c,
			"--gateway-nodes", c + "-n1," + c + "-n2", "--cable-driver", driver}, extra...)
		return straitctl(t, args...)
	}
	leave := func(c string) {
		if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig(c)); err != nil && !strings.Contains(out, "has not joined") {
			t.Errorf("leave %s: %v\n%s", c, err, out)
		}
	}
	t.Cleanup(func() {
		for _, c := range slices.Backward(gnClusters) {
			leave(c)
		}
	})

	t.Run("without Globalnet the overlapping cluster is refused", func(t *testing.T) {
		if out, err := join("c1", "--globalnet"); err != nil {
			t.Fatalf("join c1 --globalnet: %v\n%s", err, out)
		}
		out, err := join("c2")
		if err == nil || !strings.Contains(out, "c1") || !strings.Contains(out, "c2") {
			t.Fatalf("join c2 without Globalnet: %v, want a refusal naming c1 and c2:\n%s", err, out)
		}
		t.Logf("refused as wanted: %s", strings.TrimSpace(out))
	})
	// A small block for c2, so that exhaustion is reachable: 64 addresses,
	// two reserved, eight for the cluster's egress.
	if out, err := join("c2", "--globalnet", "--globalnet-cidr-size", "64"); err != nil {
		t.Fatalf("join c2 --globalnet: %v\n%s", err, out)
	}
	waitConnected(t, gnClusters)

	global, egress := globalAddresses(t)

	const ns = "globalnet-e2e"
	mcsNamespace(t, ns, gnClusters...)
	cs2 := kubeClient(t, "c2")
	web := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "c2-n3", TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers: []corev1.Container{testpodContainer("c", "serve")}},
	}
	var heads []*corev1.Pod
	for i := range 2 {
		heads = append(heads, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("db-%d", i), Labels: map[string]string{"app": "db"}},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("c2-n%d", 3-i), TerminationGracePeriodSeconds: ptr.To(int64(1)),
				Containers: []corev1.Container{testpodContainer("c", "serve")}},
		})
	}
	ports := []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		{Name: "udp", Port: 9001, TargetPort: intstr.FromInt32(9001), Protocol: corev1.ProtocolUDP},
	}
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: ports}},
		{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"}, Ports: ports}},
	} {
		if _, err := cs2.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createRunning(t, "c2", cs2, ns, append([]*corev1.Pod{web}, heads...)...)
	// A StatefulSet of two behind headless Service ss: its pods have
	// hostnames (ss-0, ss-1), so each has a name in the clusterset.
	ss := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ss"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "ss", Replicas: ptr.To(int32(2)),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ss"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ss"}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(int64(1)),
					Containers: []corev1.Container{testpodContainer("c", "serve")}},
			},
		},
	}
	if _, err := cs2.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ss"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "ss"}, Ports: ports}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs2.AppsV1().StatefulSets(ns).Create(ctx, ss, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runningPods(t, cs2, ns, "app=ss", 2)
	tools := toolPod("tools")
	tools.Labels["role"] = "client"
	tools.Spec.NodeName = "c1-n3"
	createRunning(t, "c1", kubeClient(t, "c1"), ns, tools)
	exportService(t, "c2", ns, "web", nil)
	exportService(t, "c2", ns, "db", nil)
	exportService(t, "c2", ns, "ss", nil)

	var webIP string
	t.Run("a pod reaches a remote Service by its clusterset name, from the cluster's egress IPs", func(t *testing.T) {
		si := waitImport(t, "c1", ns, "web", "with an IP", func(si *mcsv1beta1.ServiceImport) bool { return len(si.Spec.IPs) == 1 })
		t.Logf("c1's import of web: %v", si.Spec.IPs)
		webIP = waitIngress(t, "c2", ns, "web", v1.ClusterIPService)
		if !global["c2"].Contains(netip.MustParseAddr(webIP)) {
			t.Errorf("web's global IP %s is outside c2's global CIDR %s", webIP, global["c2"])
		}
		// Every slice c1 imported for web holds c2's global IP, never
		// a pod IP of c2 (which c1's own pods may have).
		waitSliceAddrs(t, "c1", ns, "web", []string{webIP})
		if client := reachWeb(t, ns, webIP); !slices.Contains(egress["c1"], client) {
			t.Errorf("web saw the client as %s, want one of c1's egress IPs %v", client, egress["c1"])
		}
	})

	t.Run("a GlobalEgressIP gives the pods it selects their own source address", func(t *testing.T) {
		c1 := ctrlClient(t, "c1")
		gip := &v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "clients", Namespace: ns},
			Spec: v1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}}
		if err := c1.Create(ctx, gip); err != nil {
			t.Fatal(err)
		}
		own := waitEgress(t, "c1", ns, "clients", 1)
		if slices.Contains(egress["c1"], own[0]) {
			t.Errorf("the GlobalEgressIP got %s, one of the cluster's egress IPs", own[0])
		}
		waitFor(t, 60*time.Second, "web to see the client as "+own[0], func(context.Context) (bool, error) {
			return identity(t, "c1", ns, webIP).Client == own[0], nil
		})
	})

	t.Run("a headless Service's names resolve to per-pod global IPs that connect", func(t *testing.T) {
		var ips []string
		for _, p := range heads {
			ips = append(ips, waitPodIngress(t, "c2", ns, "db", p.Name))
		}
		slices.Sort(ips)
		waitSliceAddrs(t, "c1", ns, "db", ips)
		var got []string
		waitFor(t, 60*time.Second, "db.globalnet-e2e.svc.clusterset.local to resolve to "+strings.Join(ips, ","), func(context.Context) (bool, error) {
			got = strings.Fields(execTools(t, "c1", ns, "dig +short db.globalnet-e2e.svc.clusterset.local | sort"))
			return slices.Equal(got, ips), nil
		})
		// A headless Service's clients connect to the pods' own port
		// (the target port, 8080), as within a cluster.
		for _, ip := range ips {
			if id := identity(t, "c1", ns, ip+":8080"); !strings.HasPrefix(id.Pod, "db-") {
				t.Errorf("HTTP to %s:8080 answered by %q, want a db pod", ip, id.Pod)
			}
		}
	})

	t.Run("a StatefulSet's pods resolve by hostname to their own global IPs, kept when a pod comes back elsewhere", func(t *testing.T) {
		// <hostname>.<clusterid>.<svc>.<ns>.svc.clusterset.local (KEP-1645).
		podName := func(pod string) string { return pod + ".c2.ss." + ns + ".svc.clusterset.local" }
		reached := func(pod, ip string) bool {
			got := execTools(t, "c1", ns, "dig +short "+podName(pod))
			return got == ip && identity(t, "c1", ns, ip+":8080").Pod == pod
		}
		ips := map[string]string{}
		for _, pod := range []string{"ss-0", "ss-1"} {
			ips[pod] = waitPodIngress(t, "c2", ns, "ss", pod)
			waitFor(t, 60*time.Second, podName(pod)+" to resolve to "+ips[pod]+" and connect", func(context.Context) (bool, error) {
				return reached(pod, ips[pod]), nil
			})
		}
		// ss-0 comes back on another node (its own cordoned), so with
		// another pod IP: its global IP stays and leads to the new pod.
		old, err := cs2.CoreV1().Pods(ns).Get(ctx, "ss-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r := kubectl(t, "c2", "cordon", old.Spec.NodeName); r.code != 0 {
			t.Fatalf("cordon %s: %s", old.Spec.NodeName, r.stderr)
		}
		t.Cleanup(func() { kubectl(t, "c2", "uncordon", old.Spec.NodeName) })
		if err := cs2.CoreV1().Pods(ns).Delete(ctx, "ss-0", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var back *corev1.Pod
		waitFor(t, 2*time.Minute, "ss-0 back on another node", func(ctx context.Context) (bool, error) {
			p, err := cs2.CoreV1().Pods(ns).Get(ctx, "ss-0", metav1.GetOptions{})
			if err != nil || p.UID == old.UID || !podReady(p) {
				return false, nil
			}
			back = p
			return true, nil
		})
		readyAt := time.Now()
		if back.Status.PodIP == old.Status.PodIP {
			t.Fatalf("ss-0 came back with the same pod IP %s: the test wants a new one", back.Status.PodIP)
		}
		waitFor(t, 60*time.Second, podName("ss-0")+" to connect to the new pod at "+ips["ss-0"], func(context.Context) (bool, error) {
			return reached("ss-0", ips["ss-0"]), nil
		})
		t.Logf("ss-0 moved from %s (%s) to %s (%s); reached at its global IP %s %v after it was Ready",
			old.Spec.NodeName, old.Status.PodIP, back.Spec.NodeName, back.Status.PodIP, ips["ss-0"], time.Since(readyAt).Round(time.Millisecond))
		if got := waitPodIngress(t, "c2", ns, "ss", "ss-0"); got != ips["ss-0"] {
			t.Errorf("ss-0's global IP changed from %s to %s", ips["ss-0"], got)
		}
	})

	t.Run("a re-created Service is reached again through its clusterset name", func(t *testing.T) {
		svc, err := cs2.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cs2.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "web's Service gone", func(ctx context.Context) (bool, error) {
			_, err := cs2.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		again := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Selector: svc.Spec.Selector, Ports: svc.Spec.Ports}}
		made, err := cs2.CoreV1().Services(ns).Create(ctx, again, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		madeAt := time.Now()
		// The name resolves to c1's clusterset IP of the import, whose
		// endpoint is web's global IP: web answering through it while the
		// imported slice holds the current global IP (a new one would not
		// answer at the old) shows both were updated.
		var ip string
		waitFor(t, 2*time.Minute, "web through its clusterset name at its (kept or new) global IP", func(ctx context.Context) (bool, error) {
			ip = ""
			for _, g := range ingressIPs(t, "c2", ns) {
				if g.Spec.Target == v1.ClusterIPService && g.Spec.ServiceRef.Name == "web" && g.Status.AllocatedIP != "" {
					ip = string(g.Status.AllocatedIP)
				}
			}
			if ip == "" {
				return false, nil
			}
			l, err := kubeClient(t, "c1").DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: mcsv1beta1.LabelServiceName + "=web"})
			if err != nil || len(l.Items) != 1 || len(l.Items[0].Endpoints) != 1 || !slices.Equal(l.Items[0].Endpoints[0].Addresses, []string{ip}) {
				return false, nil
			}
			return identity(t, "c1", ns, "web."+ns+".svc.clusterset.local").Pod == "web", nil
		})
		t.Logf("web re-created (ClusterIP %s, was %s): reached through its name at global IP %s (was %s) %v after the create",
			made.Spec.ClusterIP, svc.Spec.ClusterIP, ip, webIP, time.Since(madeAt).Round(time.Millisecond))
		webIP = ip
	})

	t.Run("an exported Service without a selector is reached at its global IP", func(t *testing.T) {
		// Its endpoints written by hand: web's pod.
		wp, err := cs2.CoreV1().Pods(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs2.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs2.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "ext-1", Labels: map[string]string{discoveryv1.LabelServiceName: "ext", discoveryv1.LabelManagedBy: "e2e"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{wp.Status.PodIP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		exportService(t, "c2", ns, "ext", nil)
		extIP := waitIngress(t, "c2", ns, "ext", v1.ClusterIPService)
		waitClient(t, "c1", ns, "ext."+ns+".svc.clusterset.local", "web")
		t.Logf("ext (no selector) at global IP %s answered by web through its clusterset name", extIP)
	})

	t.Run("a host-network process reaches a remote global IP", func(t *testing.T) {
		hostTools := toolPod("host-tools")
		hostTools.Spec.HostNetwork = true
		hostTools.Spec.NodeName = "c1-n3"
		createRunning(t, "c1", kubeClient(t, "c1"), ns, hostTools)
		waitFor(t, 60*time.Second, "HTTP from c1-n3's host network to "+webIP, func(context.Context) (bool, error) {
			r := kubectl(t, "c1", "exec", "-n", ns, "host-tools", "--", "curl", "-s", "--max-time", "5", "http://"+webIP+"/")
			return r.code == 0 && strings.Contains(r.stdout, `"pod":"web"`), nil
		})
	})

	t.Run("a controller restart and a gateway failover keep every address", func(t *testing.T) {
		before := addresses(t, "c2", ns)
		pods, err := cs2.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=globalnet"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("no globalnet pods in c2: %v", err)
		}
		for _, p := range pods.Items {
			if err := cs2.CoreV1().Pods(v1.ComponentNamespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 2*time.Minute, "c2's globalnet pods back", func(ctx context.Context) (bool, error) {
			l, err := cs2.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=globalnet"})
			if err != nil || len(l.Items) != len(pods.Items) {
				return false, nil
			}
			for _, p := range l.Items {
				if p.Status.Phase != corev1.PodRunning || slices.ContainsFunc(pods.Items, func(o corev1.Pod) bool { return o.UID == p.UID }) {
					return false, nil
				}
			}
			return true, nil
		})
		if after := addresses(t, "c2", ns); !slices.Equal(before, after) {
			t.Errorf("addresses changed over a restart:\nbefore %v\nafter  %v", before, after)
		}
		waitClient(t, "c1", ns, webIP, "web")

		// A UDP probe every 10 ms from c1's tools pod to web's global IP
		// across a kill -9 of c2's active gateway: the gap is logged
		// (make bench-dataplane measures gaps), not asserted.
		p := startProbeFrom(t, sandbox.PodRef{Cluster: "c1", Namespace: ns, Name: "tools"}, hostTestpod(), net.JoinHostPort(webIP, "9001"))
		first := holder(t, "c2")
		if err := syscall.Kill(gatewayPID(t, "c2", first), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killedAt := p.now()
		var second string
		waitFor(t, 90*time.Second, "c2's other gateway to take over", func(context.Context) (bool, error) {
			second = holder(t, "c2")
			return second != "" && second != first, nil
		})
		p.waitReplyAfter(t, "kill -9 of c2's active gateway", killedAt)
		rep := p.stop(t)
		t.Logf("kill -9 of c2's active gateway on %s: %s took over; probe to web's global IP: longest gap %.0f ms (sent %d, lost %d)",
			first, second, rep.MaxGapMs, rep.Sent, rep.Lost)
		waitClient(t, "c1", ns, webIP, "web")
		if after := addresses(t, "c2", ns); !slices.Equal(before, after) {
			t.Errorf("addresses changed over a failover:\nbefore %v\nafter  %v", before, after)
		}
		// Every node of both clusters holds each of Strait's rules once:
		// the restarted and the new active instances added none twice.
		for _, c := range gnClusters {
			for _, node := range clusterNodes(c) {
				if dup := duplicateRules(t, sandbox.NodeNS(node)); len(dup) > 0 {
					t.Errorf("%s: rules of Strait's chains held twice:\n%s", node, strings.Join(dup, "\n"))
				}
			}
		}
	})

	t.Run("a GlobalEgressIP asking for more than is left gets a condition, the others keep theirs", func(t *testing.T) {
		c2 := ctrlClient(t, "c2")
		before := addresses(t, "c2", ns)
		// 64 - 2 reserved - 8 cluster egress - 1 web - 2 db - 2 ss - 1 ext
		// = 48 left: two of 20 fit, the third does not.
		for i := range 3 {
			g := &v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i), Namespace: ns},
				Spec: v1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(int32(20)),
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"big": fmt.Sprint(i)}}}}
			if err := c2.Create(ctx, g); err != nil {
				t.Fatal(err)
			}
			if i < 2 {
				waitEgress(t, "c2", ns, g.Name, 20)
			}
		}
		waitFor(t, 60*time.Second, "big-2 to say the pool is exhausted", func(ctx context.Context) (bool, error) {
			var g v1.GlobalEgressIP
			if err := c2.Get(ctx, types.NamespacedName{Namespace: ns, Name: "big-2"}, &g); err != nil {
				return false, nil
			}
			for _, c := range g.Status.Conditions {
				if c.Type == v1.ConditionAllocated && c.Status == metav1.ConditionFalse && c.Reason == v1.ReasonIPPoolExhausted {
					return len(g.Status.AllocatedIPs) == 0, nil
				}
			}
			return false, nil
		})
		after := addresses(t, "c2", ns)
		for _, a := range before {
			if !slices.Contains(after, a) {
				t.Errorf("%s lost its address when the pool ran out", a)
			}
		}
		waitClient(t, "c1", ns, webIP, "web")
	})

	t.Run("leave removes every Globalnet rule and keeps users' objects", func(t *testing.T) {
		for _, c := range slices.Backward(gnClusters) {
			leave(c)
		}
		for _, c := range gnClusters {
			for _, node := range clusterNodes(c) {
				if left := leftovers(nodeState(t, sandbox.NodeNS(node))); left != "" {
					t.Errorf("%s: Strait's state is left after leave:\n%s", node, left)
				}
			}
		}
		var gs v1.GlobalEgressIPList
		if err := ctrlClient(t, "c2").List(ctx, &gs, client.InNamespace(ns)); err != nil || len(gs.Items) != 3 {
			t.Errorf("c2's GlobalEgressIPs after leave: %d (%v), want the 3 users made", len(gs.Items), err)
		}
	})

	// The same clusters joined again with the other driver: new global
	// CIDRs, and the exported Service reached as before.
	driver = "vxlan"
	t.Run("over VXLAN a pod reaches a remote Service by its clusterset name", func(t *testing.T) {
		for _, c := range gnClusters {
			extra := []string{"--globalnet"}
			if c == "c2" {
				extra = append(extra, "--globalnet-cidr-size", "64")
			}
			if out, err := join(c, extra...); err != nil {
				t.Fatalf("join %s --globalnet --cable-driver vxlan: %v\n%s", c, err, out)
			}
		}
		waitConnected(t, gnClusters)
		global, _ := globalAddresses(t)
		webIP := waitIngress(t, "c2", ns, "web", v1.ClusterIPService)
		if !global["c2"].Contains(netip.MustParseAddr(webIP)) {
			t.Fatalf("web's global IP %s is outside c2's new global CIDR %s", webIP, global["c2"])
		}
		waitSliceAddrs(t, "c1", ns, "web", []string{webIP})
		if client := reachWeb(t, ns, webIP); !global["c1"].Contains(netip.MustParseAddr(client)) {
			t.Errorf("web saw the client as %s, outside c1's global CIDR %s", client, global["c1"])
		}
	})
}

// duplicateRules lists the rules of Strait's chains (STRAIT-*) that the
// node's iptables-save shows more than once in the same table.
func duplicateRules(t *testing.T, netns string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", netns, "iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v", netns, err)
	}
	var dup []string
	seen := map[string]int{}
	table := ""
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l
		case strings.HasPrefix(l, "-A STRAIT-"):
			if seen[table+l]++; seen[table+l] == 2 {
				dup = append(dup, table+" "+l)
			}
		}
	}
	return dup
}

// reachWeb checks, from c1's tools pod, web exported from c2 whose global
// IP is webIP: HTTP through its clusterset name, UDP through the name, a
// 1,300-byte datagram each way and a 4 MB download through the global IP.
// It returns the client address web saw.
func reachWeb(t *testing.T, ns, webIP string) string {
	t.Helper()
	name := "web." + ns + ".svc.clusterset.local"
	client := waitClient(t, "c1", ns, name, "web")
	// TCP hides a first packet lost while the path settles (the SYN is
	// sent again after 1 s); one UDP datagram does not. CI once saw the
	// first datagram after the first HTTP answer go unanswered (after a
	// rejoin over VXLAN), so the echo is asked again, and the misses are
	// logged: a path that never carries UDP still fails.
	httpAt, lost := time.Now(), 0
	var out string
	if err := poll(30*time.Second, func(context.Context) (bool, error) {
		if out = execTools(t, "c1", ns, "echo hello | nc -u -w 2 "+name+" 9001"); out == "hello" {
			return true, nil
		}
		lost++
		return false, nil
	}); err != nil {
		t.Errorf("UDP through the clusterset name: %q, want the echo (%d datagrams unanswered in 30 s)", out, lost)
	} else if lost > 0 {
		t.Logf("UDP through the clusterset name: echoed after %d unanswered datagrams, %v after the first HTTP answer", lost, time.Since(httpAt).Round(time.Millisecond))
	}
	big := strings.Repeat("x", 1300)
	out = execTools(t, "c1", ns, fmt.Sprintf("printf %s | nc -u -w 2 %s 9001", big, webIP))
	if out != big {
		t.Errorf("a 1,300-byte UDP datagram to %s came back as %d bytes", webIP, len(out))
	}
	out = execTools(t, "c1", ns, fmt.Sprintf("curl -s --max-time 10 -o /dev/null -w '%%{size_download}' http://%s/bytes?n=4000000", webIP))
	if out != "4000000" {
		t.Errorf("a 4 MB download from %s got %q bytes", webIP, out)
	}
	return client
}

// globalAddresses waits for each joined cluster's global CIDR (in its
// Cluster object) and its cluster egress IPs (eight, inside that CIDR), and
// checks the CIDRs are distinct and c2's a /26.
func globalAddresses(t *testing.T) (map[string]netip.Prefix, map[string][]string) {
	t.Helper()
	global := map[string]netip.Prefix{}
	for _, c := range gnClusters {
		var cl v1.Cluster
		waitFor(t, 2*time.Minute, c+"'s Cluster with its global CIDR", func(ctx context.Context) (bool, error) {
			err := ctrlClient(t, c).Get(ctx, types.NamespacedName{Namespace: v1.ComponentNamespace, Name: c}, &cl)
			return err == nil && len(cl.Spec.GlobalCIDRs) == 1, nil
		})
		global[c] = netip.MustParsePrefix(string(cl.Spec.GlobalCIDRs[0]))
	}
	t.Logf("global CIDRs: c1 %s, c2 %s", global["c1"], global["c2"])
	if global["c1"].Overlaps(global["c2"]) || global["c2"].Bits() != 26 {
		t.Fatalf("global CIDRs %v: want distinct ones, c2's a /26", global)
	}
	egress := map[string][]string{}
	for _, c := range gnClusters {
		egress[c] = waitEgress(t, c, "", v1.ClusterEgressName, 8)
		for _, ip := range egress[c] {
			if !global[c].Contains(netip.MustParseAddr(ip)) {
				t.Errorf("%s: cluster egress IP %s outside its global CIDR %s", c, ip, global[c])
			}
		}
	}

	return global, egress
}

// waitConnected waits until every cluster's active gateway reports every
// other cluster connected.
func waitConnected(t *testing.T, clusters []string) {
	t.Helper()
	for _, c := range clusters {
		cl := ctrlClient(t, c)
		var last string
		if err := poll(2*time.Minute, func(ctx context.Context) (bool, error) {
			last = connectionsOf(ctx, cl)
			for _, o := range clusters {
				if o != c && !strings.Contains(last, o+"=connected") {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			out, _ := straitctl(t, "show", "connections", "--kubeconfig", adminKubeconfig(c))
			t.Fatalf("%s: the active gateway never connected to every other cluster: %s\n%s", c, last, out)
		}
	}
}

// waitEgress waits until the egress object (a ClusterGlobalEgressIP when
// ns is "") has n allocated IPs, and returns them.
func waitEgress(t *testing.T, cluster, ns, name string, n int) []string {
	t.Helper()
	cl := ctrlClient(t, cluster)
	var ips []v1.IP
	var last string
	if err := poll(2*time.Minute, func(ctx context.Context) (bool, error) {
		var st v1.GlobalEgressIPStatus
		if ns == "" {
			var o v1.ClusterGlobalEgressIP
			if err := cl.Get(ctx, types.NamespacedName{Name: name}, &o); err != nil {
				last = err.Error()
				return false, nil
			}
			st = o.Status
		} else {
			var o v1.GlobalEgressIP
			if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &o); err != nil {
				last = err.Error()
				return false, nil
			}
			st = o.Status
		}
		last = fmt.Sprintf("%+v", st)
		ips = st.AllocatedIPs
		return len(ips) == n, nil
	}); err != nil {
		t.Fatalf("%s: egress %s/%s never had %d IPs: %s", cluster, ns, name, n, last)
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = string(ip)
	}
	return out
}

// ingressIPs lists cluster's GlobalIngressIPs in ns.
func ingressIPs(t *testing.T, cluster, ns string) []v1.GlobalIngressIP {
	t.Helper()
	var l v1.GlobalIngressIPList
	if err := ctrlClient(t, cluster).List(context.Background(), &l, client.InNamespace(ns)); err != nil {
		t.Logf("%s: list GlobalIngressIPs: %v", cluster, err)
		return nil
	}
	return l.Items
}

// waitIngress waits for the allocated global IP of Service ns/svc.
func waitIngress(t *testing.T, cluster, ns, svc string, target v1.GlobalIngressTarget) string {
	t.Helper()
	var ip string
	waitFor(t, 2*time.Minute, cluster+": a global IP for Service "+ns+"/"+svc, func(context.Context) (bool, error) {
		for _, g := range ingressIPs(t, cluster, ns) {
			if g.Spec.Target == target && g.Spec.ServiceRef.Name == svc && g.Status.AllocatedIP != "" {
				ip = string(g.Status.AllocatedIP)
			}
		}
		return ip != "", nil
	})
	return ip
}

// waitPodIngress waits for the allocated global IP of pod behind the
// headless Service ns/svc.
func waitPodIngress(t *testing.T, cluster, ns, svc, pod string) string {
	t.Helper()
	var ip string
	waitFor(t, 2*time.Minute, cluster+": a global IP for pod "+ns+"/"+pod, func(context.Context) (bool, error) {
		for _, g := range ingressIPs(t, cluster, ns) {
			if g.Spec.Target == v1.HeadlessServicePod && g.Spec.ServiceRef.Name == svc && g.Spec.PodRef != nil &&
				g.Spec.PodRef.Name == pod && g.Status.AllocatedIP != "" {
				ip = string(g.Status.AllocatedIP)
			}
		}
		return ip != "", nil
	})
	return ip
}

// addresses is every global IP cluster allotted, sorted, as
// "<object>=<ip>": the cluster's egress, and ns's egress and ingress.
func addresses(t *testing.T, cluster, ns string) []string {
	t.Helper()
	var out []string
	cl := ctrlClient(t, cluster)
	var ce v1.ClusterGlobalEgressIP
	if err := cl.Get(context.Background(), types.NamespacedName{Name: v1.ClusterEgressName}, &ce); err == nil {
		for _, ip := range ce.Status.AllocatedIPs {
			out = append(out, "cluster-egress="+string(ip))
		}
	}
	var ge v1.GlobalEgressIPList
	if err := cl.List(context.Background(), &ge, client.InNamespace(ns)); err == nil {
		for _, g := range ge.Items {
			for _, ip := range g.Status.AllocatedIPs {
				out = append(out, "egress/"+g.Name+"="+string(ip))
			}
		}
	}
	for _, g := range ingressIPs(t, cluster, ns) {
		if g.Status.AllocatedIP != "" {
			out = append(out, "ingress/"+g.Name+"="+string(g.Status.AllocatedIP))
		}
	}
	slices.Sort(out)
	return out
}

// waitSliceAddrs waits until the EndpointSlices cluster imported for
// Service ns/svc hold exactly addrs (sorted).
func waitSliceAddrs(t *testing.T, cluster, ns, svc string, addrs []string) {
	t.Helper()
	var got []string
	waitFor(t, 2*time.Minute, fmt.Sprintf("%s: the imported slices of %s/%s to hold %v", cluster, ns, svc, addrs), func(ctx context.Context) (bool, error) {
		got = nil
		l, err := kubeClient(t, cluster).DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: mcsv1beta1.LabelServiceName + "=" + svc})
		if err != nil {
			return false, nil
		}
		for _, s := range l.Items {
			for _, e := range s.Endpoints {
				got = append(got, e.Addresses...)
			}
		}
		slices.Sort(got)
		return slices.Equal(got, addrs), nil
	})
}

// webIdentity is the test workload's answer to "GET /".
type webIdentity struct {
	Pod    string `json:"pod"`
	Client string `json:"client"`
}

// identity fetches http://target/ from cluster's tools pod: who answered
// and the client address it saw (without the port).
func identity(t *testing.T, cluster, ns, target string) webIdentity {
	t.Helper()
	var id webIdentity
	out := execTools(t, cluster, ns, "curl -s --max-time 5 http://"+target+"/")
	if err := json.Unmarshal([]byte(out), &id); err != nil {
		return webIdentity{}
	}
	if ap, err := netip.ParseAddrPort(id.Client); err == nil {
		id.Client = ap.Addr().String()
	}
	return id
}

// waitClient waits until HTTP to target from cluster's tools pod is
// answered by pod, and returns the client address the pod saw.
func waitClient(t *testing.T, cluster, ns, target, pod string) string {
	t.Helper()
	var id webIdentity
	waitFor(t, 90*time.Second, fmt.Sprintf("%s: HTTP to %s answered by %s", cluster, target, pod), func(context.Context) (bool, error) {
		id = identity(t, cluster, ns, target)
		return id.Pod == pod, nil
	})
	return id.Client
}
