package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/proc"
	"strait.dev/strait/test/sandbox"
	"strait.dev/strait/test/sandbox/node"
)

// These tests prove the sandbox itself: the base every later end-to-end test
// of Strait stands on.

// TestSandboxNodesReady checks every node of c1 and c2: Ready, a pod CIDR of
// its own per family of the sandbox (primary first), an InternalIP per
// family, topology labels, and the gateway-capable ones with a public IP.
func TestSandboxNodesReady(t *testing.T) {
	need(t)
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	for _, plan := range state.Clusters[:2] {
		cluster := plan.Name
		families := prefixFamilies(plan.PodCIDRs)
		if want := wantFamilies(); families != want {
			t.Fatalf("%s: pod CIDRs %v, want families %s (%s=%s)", cluster, plan.PodCIDRs, want, sandboxEnv, os.Getenv(sandboxEnv))
		}
		nodes, err := kubeClient(t, cluster).CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != state.Options.Nodes {
			t.Fatalf("%s has %d nodes, want %d", cluster, len(nodes.Items), state.Options.Nodes)
		}
		cidrs := map[string]bool{}
		gateways := 0
		for _, n := range nodes.Items {
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready {
				t.Errorf("%s/%s is not Ready: %+v", cluster, n.Name, n.Status.Conditions)
			}
			if n.Spec.PodCIDR == "" || cidrs[n.Spec.PodCIDR] {
				t.Errorf("%s/%s pod CIDR %q missing or shared", cluster, n.Name, n.Spec.PodCIDR)
			}
			cidrs[n.Spec.PodCIDR] = true
			if got := addrFamilies(n.Spec.PodCIDRs); got != families {
				t.Errorf("%s/%s pod CIDRs %v: families %s, want %s", cluster, n.Name, n.Spec.PodCIDRs, got, families)
			}
			var internal []string
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					internal = append(internal, a.Address)
				}
			}
			if got := addrFamilies(internal); got != families {
				t.Errorf("%s/%s InternalIPs %v: families %s, want %s", cluster, n.Name, internal, got, families)
			}
			if n.Labels["topology.kubernetes.io/region"] == "" || n.Labels["topology.kubernetes.io/zone"] == "" {
				t.Errorf("%s/%s lacks topology labels: %v", cluster, n.Name, n.Labels)
			}
			if n.Labels[node.GatewayCapableLabel] == "true" {
				gateways++
				if net.ParseIP(n.Annotations[node.PublicIPAnnotation]) == nil {
					t.Errorf("gateway-capable %s/%s has no public IP annotation", cluster, n.Name)
				}
			}
		}
		if gateways != state.Options.GatewayNodes {
			t.Errorf("%s has %d gateway-capable nodes, want %d", cluster, gateways, state.Options.GatewayNodes)
		}
	}
}

// addrFamilies names the families of addresses or prefixes, in order:
// "IPv4", "IPv6" or "IPv4,IPv6"; "?" for what does not parse.
func addrFamilies(addrs []string) string {
	var fams []string
	for _, s := range addrs {
		s, _, _ = strings.Cut(s, "/")
		switch ip, err := netip.ParseAddr(s); {
		case err != nil:
			fams = append(fams, "?")
		case ip.Is4():
			fams = append(fams, "IPv4")
		default:
			fams = append(fams, "IPv6")
		}
	}
	return strings.Join(fams, ",")
}

// prefixFamilies is addrFamilies of a plan's prefixes.
func prefixFamilies(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return addrFamilies(s)
}

// TestSandboxNAT checks the internet and the NAT router: c2 sits behind
// NAT, so c1 sees c2's gateway nodes at the router's public address and
// cannot reach their private ones, in every family of the sandbox (NAT66 in
// IPv6).
func TestSandboxNAT(t *testing.T) {
	need(t)
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	c1n1, c2n1 := state.Clusters[0].Nodes[0], state.Clusters[1].Nodes[0]
	if !state.Clusters[1].NAT || c2n1.PublicIP != state.Clusters[1].RouterPublicIP {
		t.Fatalf("c2 is not behind NAT: %+v", state.Clusters[1])
	}
	testpod := filepath.Join(binDir, "strait-testpod")
	srv := exec.Command("ip", "netns", "exec", sandbox.NodeNS(c1n1.Name), testpod, "serve", "--http", "7080")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	if len(c1n1.PublicIPs) != len(c2n1.PublicIPs) || len(c2n1.PublicIPs) != len(c2n1.IPs) || len(c2n1.IPs) == 0 {
		t.Fatalf("c1-n1 public %v, c2-n1 public %v and private %v: want one of each per family", c1n1.PublicIPs, c2n1.PublicIPs, c2n1.IPs)
	}
	for i, public := range c1n1.PublicIPs {
		t.Run(addrFamilies([]string{public.String()}), func(t *testing.T) {
			var r connectReport
			waitFor(t, 10*time.Second, "c2-n1 to reach c1-n1 over the internet at "+public.String(), func(context.Context) (bool, error) {
				out, _ := exec.Command("ip", "netns", "exec", sandbox.NodeNS(c2n1.Name), testpod, "connect",
					"--http", "http://"+net.JoinHostPort(public.String(), "7080")+"/", "--timeout", "1s").Output()
				return json.Unmarshal([]byte(lastLine(string(out))), &r) == nil && r.OK, nil
			})
			var body struct{ Client string }
			_ = json.Unmarshal(r.Body, &body)
			if host, _, _ := net.SplitHostPort(body.Client); host != c2n1.PublicIPs[i].String() || c2n1.PublicIPs[i] != state.Clusters[1].RouterPublicIPs[i] {
				t.Errorf("c1-n1 saw c2-n1 as %s, want the NAT router's %s", body.Client, state.Clusters[1].RouterPublicIPs[i])
			}
			private := c2n1.IPs[i]
			out, err := exec.Command("ip", "netns", "exec", sandbox.NodeNS(c1n1.Name), "ping", "-c1", "-W1", private.String()).CombinedOutput()
			if err == nil {
				t.Errorf("c1-n1 reached c2-n1's private address %s through the NAT:\n%s", private, out)
			}
		})
	}
}

// TestSandboxPodNetworkAndServices checks pods on every node of c1: an
// address per family of the sandbox (status.podIPs, primary first), pod to
// pod across nodes in each family with no NAT, and a Service (with
// ipFamilyPolicy RequireDualStack in a dual-stack sandbox, so a ClusterIP
// per family) reachable on each ClusterIP; in a dual-stack sandbox the
// cluster DNS answers the Service's name with A and AAAA, over either
// family.
func TestSandboxPodNetworkAndServices(t *testing.T) {
	need(t)
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	plan := state.Clusters[0]
	families := prefixFamilies(plan.PodCIDRs)
	isDual := len(plan.PodCIDRs) > 1
	nodeCount := len(plan.Nodes)
	cs := kubeClient(t, "c1")
	ns := testNamespace(t, cs)
	ctx := context.Background()

	web := testpodContainer("web", "serve")
	web.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1,
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("web", int32(nodeCount), web), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "echo", Port: 9000, TargetPort: intstr.FromInt32(9000)},
				{Name: "udp", Port: 9001, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(9001)},
			},
		},
	}
	if isDual {
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	}
	svc, err = cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := addrFamilies(svc.Spec.ClusterIPs); got != families {
		t.Errorf("Service ClusterIPs %v: families %s, want %s", svc.Spec.ClusterIPs, got, families)
	}

	pods := runningPods(t, cs, ns, "app=web", nodeCount)
	nodes := map[string]bool{}
	for _, p := range pods {
		nodes[p.Spec.NodeName] = true
		if p.Status.PodIP == "" || p.Status.PodIP == p.Status.HostIP {
			t.Errorf("pod %s has IP %q (host %s)", p.Name, p.Status.PodIP, p.Status.HostIP)
		}
		var ips []string
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		if got := addrFamilies(ips); got != families || ips[0] != p.Status.PodIP {
			t.Errorf("pod %s: podIPs %v (podIP %s), want families %s, podIP first", p.Name, ips, p.Status.PodIP, families)
		}
	}
	if len(nodes) != nodeCount {
		t.Fatalf("pods landed on %v, want %d different nodes", nodes, nodeCount)
	}

	from := pods[0]
	for _, to := range pods[1:] {
		for i, toIP := range to.Status.PodIPs {
			fromIP := from.Status.PodIPs[i].IP
			t.Run("pod to pod across nodes/"+to.Spec.NodeName+"/"+addrFamilies([]string{toIP.IP}), func(t *testing.T) {
				r := connect(t, "c1", ns, from.Name, "--http", "http://"+net.JoinHostPort(toIP.IP, "8080")+"/")
				if !r.OK || r.Status != 200 {
					t.Fatalf("HTTP %s → %s: %+v", from.Spec.NodeName, to.Spec.NodeName, r)
				}
				var body struct{ Pod, Node, Client string }
				_ = json.Unmarshal(r.Body, &body)
				if body.Pod != to.Name || body.Node != to.Spec.NodeName {
					t.Errorf("answered by %s on %s, want %s on %s", body.Pod, body.Node, to.Name, to.Spec.NodeName)
				}
				// The server sees the client pod's own address: no NAT inside the cluster.
				if host, _, _ := net.SplitHostPort(body.Client); host != fromIP {
					t.Errorf("server saw client %s, want pod IP %s", body.Client, fromIP)
				}
				if r := connect(t, "c1", ns, from.Name, "--tcp", net.JoinHostPort(toIP.IP, "9000"), "--bytes", "100000"); !r.OK {
					t.Errorf("TCP echo: %+v", r)
				}
				if r := connect(t, "c1", ns, from.Name, "--udp", net.JoinHostPort(toIP.IP, "9001"), "--bytes", "3000"); !r.OK {
					t.Errorf("UDP echo, 3000 bytes: %+v", r)
				}
			})
		}
	}

	for _, clusterIP := range svc.Spec.ClusterIPs {
		t.Run("pod to service ClusterIP/"+addrFamilies([]string{clusterIP}), func(t *testing.T) {
			url := "http://" + net.JoinHostPort(clusterIP, "80") + "/"
			// kube-proxy programs a new Service within a sync period or so; until
			// then it rejects the unallocated-looking address.
			waitFor(t, 30*time.Second, "kube-proxy to program the Service", func(context.Context) (bool, error) {
				return connect(t, "c1", ns, from.Name, "--http", url, "--timeout", "1s").OK, nil
			})
			// The pods are ready, but the EndpointSlice controller and then
			// kube-proxy add them one by one: keep asking until every pod has
			// answered (CI once saw 30 requests, right after the first reply,
			// all reach the one pod programmed so far).
			seen := map[string]bool{}
			requests := 0
			err := poll(30*time.Second, func(context.Context) (bool, error) {
				r := connect(t, "c1", ns, from.Name, "--http", url)
				if !r.OK || r.Status != 200 {
					return false, fmt.Errorf("HTTP via ClusterIP %s: %+v", clusterIP, r)
				}
				requests++
				var body struct{ Pod string }
				_ = json.Unmarshal(r.Body, &body)
				seen[body.Pod] = true
				return len(seen) == len(pods), nil
			})
			if err != nil {
				t.Fatalf("%d requests through the ClusterIP in 30 s reached %v, want all %d pods: %v", requests, seen, len(pods), err)
			}
			if r := connect(t, "c1", ns, from.Name, "--tcp", net.JoinHostPort(clusterIP, "9000")); !r.OK {
				t.Errorf("TCP via ClusterIP: %+v", r)
			}
			if r := connect(t, "c1", ns, from.Name, "--udp", net.JoinHostPort(clusterIP, "9001")); !r.OK {
				t.Errorf("UDP via ClusterIP: %+v", r)
			}
		})
	}

	t.Run("no route to a closed port", func(t *testing.T) {
		r := connect(t, "c1", ns, from.Name, "--tcp", net.JoinHostPort(pods[1].Status.PodIP, "9999"), "--timeout", "2s")
		if r.OK {
			t.Fatalf("connecting to a closed port succeeded: %+v", r)
		}
	})

	if !isDual {
		return
	}
	t.Run("DNS answers A and AAAA over both families", func(t *testing.T) {
		createRunning(t, "c1", cs, ns, toolPod("tools"))
		name := "web." + ns + ".svc.cluster.local"
		for _, server := range plan.DNSServiceIPs {
			for i, qtype := range []string{"A", "AAAA"} {
				args := []string{"dig", "+tries=1", "+timeout=1", "+short", "@" + server.String(), qtype, name}
				r := kubectl(t, "c1", append([]string{"exec", "-n", ns, "tools", "--"}, args...)...)
				if got := strings.TrimSpace(r.stdout); r.code != 0 || got != svc.Spec.ClusterIPs[i] {
					t.Errorf("%s: exit %d, %q (%s), want %s", strings.Join(args[4:], " "), r.code, got, strings.TrimSpace(r.stderr), svc.Spec.ClusterIPs[i])
				}
			}
		}
	})
}

func TestSandboxServiceAccountTokenAndRBAC(t *testing.T) {
	need(t)
	cs := kubeClient(t, "c2")
	ns := testNamespace(t, cs)
	ctx := context.Background()

	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "configmap-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A tool pod: the request below is a shell script of curl and cat,
	// which the test workload's image does not carry.
	pod := toolPod("client")
	pod.Spec.ServiceAccountName = "reader"
	createRunning(t, "c2", cs, ns, pod)

	// In-cluster configuration, exactly as client-go's rest.InClusterConfig
	// reads it: the projected token and CA, and KUBERNETES_SERVICE_HOST/PORT,
	// through the kubernetes Service's ClusterIP (kube-proxy) to the apiserver.
	request := func(resource string) string {
		t.Helper()
		// An IPv6 host goes in brackets in the URL, as client-go's
		// net.JoinHostPort puts it.
		script := `d=/var/run/secrets/kubernetes.io/serviceaccount
h=$KUBERNETES_SERVICE_HOST; case $h in *:*) h="[$h]";; esac
curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert $d/ca.crt -H "Authorization: Bearer $(cat $d/token)" \
  https://$h:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $d/namespace)/` + resource
		out, err := execIn(t, "c2", ns, "client", "sh", "-c", script)
		if err != nil {
			t.Fatalf("request %s: %v", resource, err)
		}
		return strings.TrimSpace(out)
	}
	if code := request("configmaps"); code != "200" {
		t.Errorf("listing configmaps (allowed by the role): HTTP %s, want 200", code)
	}
	if code := request("secrets"); code != "403" {
		t.Errorf("listing secrets (not allowed): HTTP %s, want 403", code)
	}
}

func TestSandboxPodLifecycle(t *testing.T) {
	need(t)
	cs := kubeClient(t, "c1")
	ns := testNamespace(t, cs)
	ctx := context.Background()

	t.Run("unknown image is an image pull error", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "unknown-image"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "docker.io/library/nginx:1.27"}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "ErrImagePull", func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil || len(p.Status.ContainerStatuses) == 0 {
				return false, nil
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			return w != nil && w.Reason == "ErrImagePull" && strings.Contains(w.Message, "nginx"), nil
		})
	})

	t.Run("exit code and restart policy Never", func(t *testing.T) {
		// Connecting to a closed port makes the test workload exit 1.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "fails"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{testpodContainer("c", "connect", "--tcp", "127.0.0.1:1", "--timeout", "1s")},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "pod Failed with exit code 1", func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodFailed || len(p.Status.ContainerStatuses) == 0 {
				return false, nil
			}
			term := p.Status.ContainerStatuses[0].State.Terminated
			return term != nil && term.ExitCode == 1, nil
		})
	})

	t.Run("liveness failure restarts with back-off", func(t *testing.T) {
		c := testpodContainer("c", "serve")
		c.LivenessProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/status/500", Port: intstr.FromInt32(8080)}},
			PeriodSeconds:    1,
			FailureThreshold: 1,
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "unhealthy"}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "two restarts", func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			return err == nil && len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 2, nil
		})
	})

	t.Run("deletion stops the processes", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "deleted", Labels: map[string]string{"app": "deleted"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{testpodContainer("c", "serve")}, TerminationGracePeriodSeconds: ptr.To(int64(5))},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		runningPods(t, cs, ns, "app=deleted", 1)
		_, info, err := layout.Runtime(ctx, sandboxRef(ns, "deleted"))
		if err != nil {
			t.Fatal(err)
		}
		pids := []int{info.SandboxPID, info.Containers["c"]}
		if err := cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "pod gone", func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		for _, pid := range pids {
			if pid == 0 || proc.Alive(pid) {
				t.Errorf("process %d of the deleted pod is still running (pids %v)", pid, pids)
			}
		}
	})

	t.Run("hostNetwork pod runs in the node's namespace", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "hostnet", Labels: map[string]string{"app": "hostnet"}},
			Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{testpodContainer("c", "sleep")}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := runningPods(t, cs, ns, "app=hostnet", 1)[0]
		if p.Status.PodIP != p.Status.HostIP {
			t.Errorf("hostNetwork pod IP %s, want the node's %s", p.Status.PodIP, p.Status.HostIP)
		}
		if len(p.Status.PodIPs) != len(p.Status.HostIPs) {
			t.Errorf("hostNetwork pod IPs %v, want the node's %v", p.Status.PodIPs, p.Status.HostIPs)
		}
		// Every address of the node, in every family of the sandbox.
		for _, host := range p.Status.HostIPs {
			out, err := execIn(t, "c1", ns, "hostnet", "ip", "-o", "addr", "show", "dev", "eth0")
			if err != nil || !strings.Contains(out, " "+host.IP+"/") {
				t.Errorf("eth0 in the hostNetwork pod: %q (%v), want the node address %s", out, err, host.IP)
			}
		}
	})
}

func sandboxRef(ns, name string) sandbox.PodRef {
	return sandbox.PodRef{Cluster: "c1", Namespace: ns, Name: name}
}

// TestSandboxUpFigure records how long "up" took, for the README.
func TestSandboxUpFigure(t *testing.T) {
	need(t)
	for _, line := range strings.Split(upOutput, "\n") {
		if strings.HasPrefix(line, "sandbox up in") {
			t.Log(line)
			return
		}
	}
	t.Errorf("'up' did not report its time: %q", upOutput)
}
