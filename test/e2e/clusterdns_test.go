package e2e

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestClusterDNS checks each cluster's DNS as a pod sees it: stock CoreDNS
// deployed as kubeadm does (kube-system/coredns, Service kube-dns at the
// tenth address of the service CIDR), the pod's resolv.conf per dnsPolicy
// ClusterFirst, Service and headless-Service records (the Kubernetes DNS
// specification), a StatefulSet pod's stable name, and a fast negative
// answer for names outside the cluster. Every lookup runs with a one-second
// timeout and no retry, so a lookup that waits out a timeout fails instead
// of passing late.
func TestClusterDNS(t *testing.T) {
	need(t)
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	plan := state.Clusters[0]
	cs := kubeClient(t, "c1")
	ctx := context.Background()

	t.Run("coredns deployed", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.AvailableReplicas != 2 {
			t.Errorf("coredns: %d available replicas, want 2", d.Status.AvailableReplicas)
		}
		svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.ClusterIP != plan.DNSServiceIP.String() {
			t.Errorf("kube-dns ClusterIP %s, want %s", svc.Spec.ClusterIP, plan.DNSServiceIP)
		}
		if _, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
	})

	ns := testNamespace(t, cs)
	echo := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "nothing"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	echo, err = cs.CoreV1().Services(ns).Create(ctx, echo, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "web"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName:         "web",
			Replicas:            ptr.To(int32(2)),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To(int64(1)),
					Containers: []corev1.Container{{
						Name:    "web",
						Image:   "nicolaka/netshoot",
						Command: []string{"sleep", "86400"},
						Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createRunning(t, "c1", cs, ns, toolPod("tools"))
	webPods := runningPods(t, cs, ns, "app=web", 2)
	var webIPs []string
	for _, p := range webPods {
		webIPs = append(webIPs, p.Status.PodIP)
	}
	sort.Strings(webIPs)

	// lookup runs a resolver tool in a pod: one second per try, and one
	// retransmission, as resolvers make (glibc's default is two tries of
	// 5 s). One UDP query lost on a loaded machine (the kernel's conntrack
	// race for a pod's parallel A and AAAA queries through a Service IP is
	// a known one) is not a fault of the sandbox's DNS; both tries lost is.
	lookup := func(t *testing.T, pod string, argv ...string) kubectlResult {
		t.Helper()
		start := time.Now()
		r := kubectl(t, "c1", append([]string{"exec", "-n", ns, pod, "--"}, argv...)...)
		t.Logf("%s: exit %d in %s", strings.Join(argv, " "), r.code, time.Since(start).Round(time.Millisecond))
		if strings.Contains(r.stdout, "timed out") {
			t.Logf("%v: a try timed out:\n%s", argv, r.stdout)
		}
		if r.code != 0 && (strings.Contains(r.stdout, "timed out") || strings.Contains(r.stdout, "no servers could be reached")) {
			t.Fatalf("%v waited out a timeout:\n%s%s", argv, r.stdout, r.stderr)
		}
		return r
	}
	nslookup := func(t *testing.T, pod, name string) string {
		t.Helper()
		r := lookup(t, pod, "nslookup", "-timeout=1", "-retry=1", name)
		if r.code != 0 {
			t.Fatalf("nslookup %s in %s: exit %d\n%s%s", name, pod, r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	dig := func(t *testing.T, args ...string) []string {
		t.Helper()
		r := lookup(t, "tools", append([]string{"dig", "+tries=2", "+timeout=1", "+short"}, args...)...)
		if r.code != 0 {
			t.Fatalf("dig %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		out := strings.Fields(strings.TrimSpace(r.stdout))
		return out
	}

	t.Run("resolv.conf", func(t *testing.T) {
		out := mustKubectl(t, "c1", "exec", "-n", ns, "tools", "--", "cat", "/etc/resolv.conf")
		for _, want := range []string{
			"nameserver " + plan.DNSServiceIP.String(),
			"search " + ns + ".svc.cluster.local svc.cluster.local cluster.local",
			"options ndots:5",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("/etc/resolv.conf lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("short name through the search list", func(t *testing.T) {
		if out := nslookup(t, "tools", "kubernetes.default"); !strings.Contains(out, "Address: "+plan.KubernetesServiceIP.String()) {
			t.Fatalf("nslookup kubernetes.default: no %s:\n%s", plan.KubernetesServiceIP, out)
		}
		if out := nslookup(t, "tools", "echo"); !strings.Contains(out, "Address: "+echo.Spec.ClusterIP) {
			t.Fatalf("nslookup echo: no %s:\n%s", echo.Spec.ClusterIP, out)
		}
	})

	t.Run("service FQDN", func(t *testing.T) {
		got := dig(t, "echo."+ns+".svc.cluster.local")
		if len(got) != 1 || got[0] != echo.Spec.ClusterIP {
			t.Fatalf("echo.%s.svc.cluster.local: %v, want [%s]", ns, got, echo.Spec.ClusterIP)
		}
	})

	t.Run("headless service", func(t *testing.T) {
		waitFor(t, 30*time.Second, "both web pods behind web."+ns, func(context.Context) (bool, error) {
			got := dig(t, "web."+ns+".svc.cluster.local")
			sort.Strings(got)
			return strings.Join(got, ",") == strings.Join(webIPs, ","), nil
		})
		for _, p := range []string{"web-0", "web-1"} {
			got := dig(t, p+".web."+ns+".svc.cluster.local")
			want := ""
			for _, wp := range webPods {
				if wp.Name == p {
					want = wp.Status.PodIP
				}
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("%s.web.%s.svc.cluster.local: %v, want [%s]", p, ns, got, want)
			}
		}
		srv := strings.Join(dig(t, "SRV", "_http._tcp.web."+ns+".svc.cluster.local"), " ")
		for _, p := range []string{"web-0", "web-1"} {
			if !strings.Contains(srv, "8080 "+p+".web."+ns+".svc.cluster.local.") {
				t.Errorf("SRV _http._tcp.web.%s: no port 8080 target %s: %s", ns, p, srv)
			}
		}
	})

	t.Run("statefulset peer", func(t *testing.T) {
		want := ""
		for _, wp := range webPods {
			if wp.Name == "web-1" {
				want = wp.Status.PodIP
			}
		}
		out := nslookup(t, "web-0", "web-1.web."+ns+".svc.cluster.local")
		if !strings.Contains(out, "Address: "+want) {
			t.Fatalf("web-0 looking up web-1.web.%s.svc.cluster.local: no %s:\n%s", ns, want, out)
		}
		// Through the search list, as a peer's configuration usually names it.
		if out := nslookup(t, "web-0", "web-1.web"); !strings.Contains(out, "Address: "+want) {
			t.Fatalf("web-0 looking up web-1.web: no %s:\n%s", want, out)
		}
		if host := strings.TrimSpace(mustKubectl(t, "c1", "exec", "-n", ns, "web-0", "--", "hostname")); host != "web-0" {
			t.Errorf("web-0's hostname is %q", host)
		}
		hosts := mustKubectl(t, "c1", "exec", "-n", ns, "web-0", "--", "cat", "/etc/hosts")
		if !strings.Contains(hosts, "web-0.web."+ns+".svc.cluster.local") {
			t.Errorf("web-0's /etc/hosts lacks its FQDN:\n%s", hosts)
		}
	})

	t.Run("unknown external name fails fast", func(t *testing.T) {
		// dig's one try of one second: a reply, not a timeout.
		r := lookup(t, "tools", "dig", "+tries=1", "+timeout=1", "no-such-name.example.")
		if !strings.Contains(r.stdout, "status: NXDOMAIN") {
			t.Fatalf("dig no-such-name.example.: want status NXDOMAIN within its one-second timeout:\n%s%s", r.stdout, r.stderr)
		}
		// Through the search list too: every suffix answers.
		r = lookup(t, "tools", "nslookup", "-timeout=1", "-retry=0", "no-such-name.example")
		if r.code == 0 || !strings.Contains(r.stdout, "NXDOMAIN") {
			t.Fatalf("nslookup no-such-name.example: exit %d, want NXDOMAIN:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}
