package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/lighthouse"
)

// TestMCS is the Multi-Cluster Services API as an app team uses it: three
// clusters joined with WireGuard (c2 behind NAT), Services exported with
// kubectl, and a network-tools pod in c1 (and c3) reaching them through
// their imports' clusterset IPs with curl and nc:
//
//   - exported from c2 only, the service answers from c2, over TCP and UDP;
//   - exported from c2 and c3 under the Balanced policy, it answers from
//     both;
//   - under the default policy, a c1 client of a service c1 also exports
//     stays in c1, and once c1's pods are gone moves to one healthy remote
//     cluster;
//   - with c2's gateways gone, c2's endpoints are withdrawn in c1, and come
//     back with them;
//   - a Service that is not exported (hidden, with the same pods) gets no
//     import and no slices anywhere.
func TestMCS(t *testing.T) {
	need(t)
	joinClusterSet(t)
	const ns = "mcs-e2e"
	mcsNamespace(t, ns, mcsClusters...)
	c1 := ctrlClient(t, "c1")

	// A server in every cluster, named after it, behind Services srv (to
	// export under Balanced), near (the default policy) and hidden (never
	// exported).
	for _, c := range mcsClusters {
		cs := kubeClient(t, c)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "srv-" + c, Labels: map[string]string{"app": "srv"}},
			Spec: corev1.PodSpec{NodeName: c + "-n3", TerminationGracePeriodSeconds: new(int64(1)),
				Containers: []corev1.Container{testpodContainer("c", "serve")}},
		}
		for _, name := range []string{"srv", "near", "hidden"} {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "srv"}, Ports: []corev1.ServicePort{
					{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
					{Name: "echo", Port: 9000, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
					{Name: "udp", Port: 9001, TargetPort: intstr.FromInt32(9001), Protocol: corev1.ProtocolUDP},
				}},
			}
			if _, err := cs.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		pods := []*corev1.Pod{pod}
		if c != "c2" {
			pods = append(pods, toolPod("tools"))
		}
		createRunning(t, c, cs, ns, pods...)
	}

	balanced := map[string]string{lighthouse.TrafficPolicyAnnotation: string(lighthouse.TrafficPolicyBalanced)}
	var srvIP string
	t.Run("exported from c2, reachable from c1 and c3 over TCP and UDP", func(t *testing.T) {
		exportService(t, "c2", ns, "srv", balanced)
		for _, c := range []string{"c1", "c3"} {
			si := waitImport(t, c, ns, "srv", "with an IP and cluster c2", func(si *mcsv1beta1.ServiceImport) bool {
				return len(si.Spec.IPs) == 1 && slices.Equal(importClusters(si), []string{"c2"})
			})
			ip := si.Spec.IPs[0]
			if c == "c1" {
				srvIP = ip
			}
			waitAnswer(t, c, ns, ip, "c2")
			if got := execTools(t, c, ns, fmt.Sprintf("echo hello-tcp | nc -N -w 3 %s 9000", ip)); got != "hello-tcp" {
				t.Errorf("%s: TCP echo through %s: %q", c, ip, got)
			}
			if got := execTools(t, c, ns, fmt.Sprintf("echo hello-udp | nc -u -w 2 %s 9001", ip)); got != "hello-udp" {
				t.Errorf("%s: UDP echo through %s: %q", c, ip, got)
			}
		}
	})
	if srvIP == "" {
		t.FailNow()
	}

	t.Run("exported from c2 and c3, balanced over both", func(t *testing.T) {
		exportService(t, "c3", ns, "srv", balanced)
		waitImport(t, "c1", ns, "srv", "with clusters c2 and c3", func(si *mcsv1beta1.ServiceImport) bool {
			return slices.Equal(importClusters(si), []string{"c2", "c3"})
		})
		seen := map[string]int{}
		waitFor(t, 90*time.Second, "answers from both c2 and c3 through "+srvIP, func(context.Context) (bool, error) {
			if who := answer(t, "c1", ns, srvIP); who != "" {
				seen[who]++
			}
			return seen["c2"] > 0 && seen["c3"] > 0, nil
		})
		if seen["c1"] > 0 {
			t.Errorf("c1 answered, but it does not export: %v", seen)
		}
		t.Logf("answers through %s: %v", srvIP, seen)
	})

	t.Run("c2's gateways gone: its endpoints withdrawn in c1, back with them", func(t *testing.T) {
		for _, n := range []string{"c2-n1", "c2-n2"} {
			setGatewayLabel(t, "c2", n, false)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				for _, n := range []string{"c2-n1", "c2-n2"} {
					setGatewayLabel(t, "c2", n, true)
				}
			}
		}
		t.Cleanup(restore)
		// For the log: when c1's active gateway stopped reporting c2
		// connected, and when c2's slice was unbound.
		start := time.Now()
		var lost, unbound time.Duration
		waitFor(t, 90*time.Second, "c2's slice unbound in c1", func(ctx context.Context) (bool, error) {
			if lost == 0 && !strings.Contains(connectionsOf(ctx, c1), "c2=connected") {
				lost = time.Since(start)
			}
			b := boundClusters(ctx, c1, ns, "srv")
			if slices.Equal(b, []string{"c3"}) {
				unbound = time.Since(start)
				return true, nil
			}
			return false, nil
		})
		t.Logf("c2's gateways stopped: c1's gateway stopped reporting c2 connected after %v, c2's slice unbound in c1 after %v (polled every 200 ms)",
			lost.Round(100*time.Millisecond), unbound.Round(100*time.Millisecond))
		// kube-proxy follows the slice within its sync period: then every
		// answer comes from c3.
		waitFor(t, 60*time.Second, "six answers in a row from c3", func(context.Context) (bool, error) {
			for range 6 {
				if who := answer(t, "c1", ns, srvIP); who != "c3" {
					return false, nil
				}
			}
			return true, nil
		})
		restore()
		waitFor(t, 2*time.Minute, "c2's slice bound again in c1", func(ctx context.Context) (bool, error) {
			return slices.Equal(boundClusters(ctx, c1, ns, "srv"), []string{"c2", "c3"}), nil
		})
		waitAnswer(t, "c1", ns, srvIP, "c2")
	})

	t.Run("local first, then one healthy remote cluster", func(t *testing.T) {
		for _, c := range mcsClusters {
			exportService(t, c, ns, "near", nil)
		}
		si := waitImport(t, "c1", ns, "near", "with clusters c1, c2 and c3", func(si *mcsv1beta1.ServiceImport) bool {
			return len(si.Spec.IPs) == 1 && slices.Equal(importClusters(si), []string{"c1", "c2", "c3"})
		})
		ip := si.Spec.IPs[0]
		waitFor(t, 60*time.Second, "only c1 bound for near in c1", func(ctx context.Context) (bool, error) {
			return slices.Equal(boundClusters(ctx, c1, ns, "near"), []string{"c1"}), nil
		})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("c1's view of near:\n%s", kubectl(t, "c1", "get", "svc,endpointslices,serviceimports", "-n", ns, "-o", "yaml").stdout)
			}
		})
		waitFor(t, 60*time.Second, "six answers in a row from c1", func(context.Context) (bool, error) {
			for range 6 {
				if who := answer(t, "c1", ns, ip); who != "c1" {
					return false, nil
				}
			}
			return true, nil
		})
		if err := kubeClient(t, "c1").CoreV1().Pods(ns).Delete(context.Background(), "srv-c1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var bound []string
		waitFor(t, 60*time.Second, "one remote cluster bound for near in c1", func(ctx context.Context) (bool, error) {
			bound = boundClusters(ctx, c1, ns, "near")
			return len(bound) == 1 && bound[0] != "c1", nil
		})
		// The choice may move with the measured RTTs; what matters is
		// that every answer comes from one remote cluster at a time.
		waitFor(t, 60*time.Second, "six answers in a row from one remote cluster", func(context.Context) (bool, error) {
			first := answer(t, "c1", ns, ip)
			if first == "" || first == "c1" {
				return false, nil
			}
			for range 5 {
				if answer(t, "c1", ns, ip) != first {
					return false, nil
				}
			}
			t.Logf("c1's pods gone: near answered by %s", first)
			return true, nil
		})
	})

	t.Run("a Service that is not exported is not imported", func(t *testing.T) {
		cl := ctrlClient(t, "c1")
		var si mcsv1beta1.ServiceImport
		if err := cl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "hidden"}, &si); err == nil {
			t.Errorf("c1 imports hidden, which nobody exported: %+v", si.Spec)
		}
		var sl discoveryv1.EndpointSliceList
		if err := cl.List(context.Background(), &sl, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: "hidden"}); err != nil || len(sl.Items) != 0 {
			t.Errorf("c1 has %d imported slices of hidden (%v)", len(sl.Items), err)
		}
	})
}

// importClusters lists the clusters in a ServiceImport's status, sorted.
func importClusters(si *mcsv1beta1.ServiceImport) []string {
	var out []string
	for _, c := range si.Status.Clusters {
		out = append(out, c.Cluster)
	}
	slices.Sort(out)
	return out
}

// boundClusters lists the source clusters of the imported slices of ns/name
// in c's cluster that are bound to the derived Service (kube-proxy routes only
// those), sorted.
func boundClusters(ctx context.Context, c client.Client, ns, name string) []string {
	var sl discoveryv1.EndpointSliceList
	if err := c.List(ctx, &sl, client.InNamespace(ns), client.MatchingLabels{
		mcsv1beta1.LabelServiceName: name, discoveryv1.LabelManagedBy: lighthouse.ManagedBy}); err != nil {
		return nil
	}
	var out []string
	for _, s := range sl.Items {
		if s.Labels[discoveryv1.LabelServiceName] != "" {
			out = append(out, s.Labels[mcsv1beta1.LabelSourceCluster])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// execTools runs a shell command in cluster's tools pod and returns its
// trimmed stdout ("" when it failed).
func execTools(t *testing.T, cluster, ns, script string) string {
	t.Helper()
	r := kubectl(t, cluster, "exec", "-n", ns, "tools", "--", "sh", "-c", script)
	if r.code != 0 {
		t.Logf("%s: %s: exit %d %s", cluster, script, r.code, r.stderr)
		return ""
	}
	return strings.TrimSpace(r.stdout)
}

// answer asks the HTTP server behind ip:80 once from cluster's tools pod
// (httpAnswers) and returns the cluster it runs in (its pod is
// "srv-<cluster>"), or "" when nothing answered.
func answer(t *testing.T, cluster, ns, ip string) string {
	t.Helper()
	got, err := httpAnswers(t, cluster, ns, "tools", ip, 80, 1)
	if err != nil || len(got) != 1 || !strings.HasPrefix(got[0], "srv-") {
		t.Logf("%s: HTTP to %s: %v %v", cluster, ip, got, err)
		return ""
	}
	return strings.TrimPrefix(got[0], "srv-")
}

// waitAnswer waits until the HTTP server behind ip answers from cluster
// want: the slices and kube-proxy's rules take a moment to follow an import.
func waitAnswer(t *testing.T, cluster, ns, ip, want string) {
	t.Helper()
	var got string
	if err := poll(90*time.Second, func(context.Context) (bool, error) {
		got = answer(t, cluster, ns, ip)
		return got == want, nil
	}); err != nil {
		t.Fatalf("%s: HTTP through %s never answered from %s (last: %q)", cluster, ip, want, got)
	}
}
