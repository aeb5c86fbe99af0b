package clusterdns

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestObjects(t *testing.T) {
	ip := netip.MustParseAddr("10.101.0.10")
	objs, err := Objects(Values{DNSServiceIP: ip})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	byKind := map[string]client.Object{}
	for _, o := range objs {
		k := typeName(o)
		kinds = append(kinds, k)
		byKind[k] = o
		if _, cluster := o.(*rbacv1.ClusterRole); !cluster {
			if _, binding := o.(*rbacv1.ClusterRoleBinding); !binding && o.GetNamespace() != Namespace {
				t.Errorf("%s %s in namespace %q, want %s", k, o.GetName(), o.GetNamespace(), Namespace)
			}
		}
	}
	wantKinds := "*v1.ServiceAccount *v1.ClusterRole *v1.ClusterRoleBinding *v1.ConfigMap *v1.Deployment *v1.Service"
	if got := strings.Join(kinds, " "); got != wantKinds {
		t.Fatalf("objects %s, want %s", got, wantKinds)
	}

	svc := byKind["*v1.Service"].(*corev1.Service)
	if svc.Name != ServiceName || svc.Spec.ClusterIP != ip.String() {
		t.Errorf("Service %s with cluster IP %q, want %s with %s", svc.Name, svc.Spec.ClusterIP, ServiceName, ip)
	}
	if svc.Spec.Selector[AppLabel] != AppValue || svc.Labels[AppLabel] != AppValue {
		t.Errorf("Service selector %v, labels %v: want %s=%s in both", svc.Spec.Selector, svc.Labels, AppLabel, AppValue)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Name+"="+string(p.Protocol)+"/"+p.TargetPort.String())
	}
	if got, want := strings.Join(ports, " "), "dns=UDP/53 dns-tcp=TCP/53 metrics=TCP/9153"; got != want {
		t.Errorf("Service ports %s, want %s", got, want)
	}

	d := byKind["*v1.Deployment"].(*appsv1.Deployment)
	pod := d.Spec.Template
	if d.Name != DeploymentName || *d.Spec.Replicas != 2 || pod.Labels[AppLabel] != AppValue ||
		d.Spec.Selector.MatchLabels[AppLabel] != AppValue {
		t.Errorf("Deployment %s, %d replicas, pod labels %v, selector %v", d.Name, *d.Spec.Replicas, pod.Labels, d.Spec.Selector)
	}
	if pod.Spec.DNSPolicy != corev1.DNSDefault || pod.Spec.PriorityClassName != "system-cluster-critical" ||
		pod.Spec.ServiceAccountName != "coredns" {
		t.Errorf("pod dnsPolicy %s, priority class %s, service account %s", pod.Spec.DNSPolicy, pod.Spec.PriorityClassName, pod.Spec.ServiceAccountName)
	}
	if a := pod.Spec.Affinity; a == nil || a.PodAntiAffinity == nil ||
		len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("pod affinity %+v, want a preferred anti-affinity across nodes", a)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "registry.k8s.io/coredns/coredns:"+Version || strings.Join(c.Args, " ") != "-conf /etc/coredns/Corefile" {
		t.Errorf("container image %s, args %v", c.Image, c.Args)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/ready" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 8181 ||
		c.LivenessProbe.HTTPGet.Path != "/health" || c.LivenessProbe.HTTPGet.Port.IntValue() != 8080 {
		t.Errorf("probes: readiness %+v, liveness %+v", c.ReadinessProbe.HTTPGet, c.LivenessProbe.HTTPGet)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/coredns" ||
		pod.Spec.Volumes[0].ConfigMap == nil || pod.Spec.Volumes[0].ConfigMap.Name != ConfigMapName {
		t.Errorf("mounts %+v, volumes %+v: want the ConfigMap %s at /etc/coredns", c.VolumeMounts, pod.Spec.Volumes, ConfigMapName)
	}

	cm := byKind["*v1.ConfigMap"].(*corev1.ConfigMap)
	want, err := Corefile(CorefileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["Corefile"] != want {
		t.Errorf("ConfigMap's Corefile:\n%q\nwant:\n%q", cm.Data["Corefile"], want)
	}

	role := byKind["*v1.ClusterRole"].(*rbacv1.ClusterRole)
	var rules []string
	for _, r := range role.Rules {
		rules = append(rules, strings.Join(r.APIGroups, ",")+":"+strings.Join(r.Resources, ",")+":"+strings.Join(r.Verbs, ","))
	}
	if got, want := strings.Join(rules, " "), ":endpoints,services,pods,namespaces:list,watch discovery.k8s.io:endpointslices:list,watch"; got != want {
		t.Errorf("ClusterRole rules %s, want %s", got, want)
	}
}

func TestObjectsWithoutIP(t *testing.T) {
	if _, err := Objects(Values{}); err == nil {
		t.Fatal("Objects without a Service IP: no error")
	}
}

func TestCorefile(t *testing.T) {
	// The cluster's Corefile is kubeadm's, but for forward's upstream, the
	// stand-in block after it and reload's interval.
	got, err := Corefile(CorefileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . 127.0.0.1:5301
    cache 30
    loop
    reload 4s 1s
    loadbalance
}
.:5301 {
    bind 127.0.0.1
    template ANY ANY {
        rcode NXDOMAIN
        authority ". 30 IN SOA stand-in.strait-sandbox.invalid. hostmaster.strait-sandbox.invalid. 1 3600 600 86400 30"
    }
}
`
	if got != want {
		t.Errorf("Corefile:\n%s\nwant:\n%s", got, want)
	}

	// A test's Corefile differs only in its ports, addresses and kubeconfig.
	test, err := Corefile(CorefileOptions{Port: 1053, Kubeconfig: "/tmp/kc", HealthAddr: "127.0.0.1:1", ReadyAddr: "127.0.0.1:2", MetricsAddr: "127.0.0.1:3", StandInPort: 4})
	if err != nil {
		t.Fatal(err)
	}
	replaced := strings.NewReplacer(
		".:53 {", ".:1053 {",
		"health {", "health 127.0.0.1:1 {",
		"    ready\n", "    ready 127.0.0.1:2\n",
		"ip6.arpa {\n", "ip6.arpa {\n        kubeconfig /tmp/kc\n",
		":9153", "127.0.0.1:3",
		"5301", "4",
	).Replace(want)
	if test != replaced {
		t.Errorf("test Corefile:\n%s\nwant:\n%s", test, replaced)
	}
}

// TestVersionIsGoMods checks that the image tag the Deployment names is the
// CoreDNS version the root go.mod pins, which "make kube-binaries" builds.
func TestVersionIsGoMods(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var version string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == "github.com/coredns/coredns" {
			version = fields[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if version != Version {
		t.Errorf("go.mod pins github.com/coredns/coredns %q; clusterdns.Version is %q", version, Version)
	}
}

func typeName(o client.Object) string {
	return fmt.Sprintf("%T", o)
}

func TestRolledOut(t *testing.T) {
	available := func(s corev1.ConditionStatus) []appsv1.DeploymentCondition {
		return []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: s}}
	}
	two := int32(2)
	tests := []struct {
		name   string
		gen    int64
		status appsv1.DeploymentStatus
		want   bool
	}{
		{"all ready", 1, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, Conditions: available(corev1.ConditionTrue)}, true},
		{"one of two ready", 1, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, Conditions: available(corev1.ConditionTrue)}, false},
		{"spec not yet seen", 2, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, Conditions: available(corev1.ConditionTrue)}, false},
		{"old replica still running", 1, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 2, ReadyReplicas: 2, Conditions: available(corev1.ConditionTrue)}, false},
		{"not available", 1, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, Conditions: available(corev1.ConditionFalse)}, false},
		{"no conditions", 1, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &two}, Status: tc.status}
			d.Generation = tc.gen
			if got := rolledOut(d); got != tc.want {
				t.Errorf("rolledOut = %v, want %v (%s)", got, tc.want, deploymentStatus(d))
			}
		})
	}
}

// In a dual-stack cluster the kube-dns Service asks for both families, with
// the primary family's address first; two addresses of one family are an
// error.
func TestObjectsDualStack(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.101.0.10"), netip.MustParseAddr("fd00:10:101::a")
	objs, err := Objects(Values{DNSServiceIP: v4, SecondaryDNSServiceIP: v6})
	if err != nil {
		t.Fatal(err)
	}
	svc := objs[len(objs)-1].(*corev1.Service)
	if got := strings.Join(svc.Spec.ClusterIPs, ","); svc.Spec.ClusterIP != v4.String() || got != "10.101.0.10,fd00:10:101::a" ||
		svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyRequireDualStack {
		t.Errorf("Service clusterIP %s, clusterIPs %s, policy %v: want %s, both, RequireDualStack", svc.Spec.ClusterIP, got, svc.Spec.IPFamilyPolicy, v4)
	}
	if _, err := Objects(Values{DNSServiceIP: v4, SecondaryDNSServiceIP: netip.MustParseAddr("10.101.0.11")}); err == nil || !strings.Contains(err.Error(), "one family") {
		t.Errorf("two IPv4 addresses: %v, want an error naming the family", err)
	}
	// Single-stack: no clusterIPs or policy of the sandbox's own.
	objs, err = Objects(Values{DNSServiceIP: v6})
	if err != nil {
		t.Fatal(err)
	}
	if svc := objs[len(objs)-1].(*corev1.Service); svc.Spec.ClusterIP != v6.String() || len(svc.Spec.ClusterIPs) != 0 || svc.Spec.IPFamilyPolicy != nil {
		t.Errorf("single-stack Service: %s %v %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.IPFamilyPolicy)
	}
}

func TestPodsStatus(t *testing.T) {
	if got := podsStatus(nil); got != "no pods" {
		t.Errorf("no pods: %q", got)
	}
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns-a"},
		Spec:       corev1.PodSpec{NodeName: "c2-n1"},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [coredns]"}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "coredns", RestartCount: 2,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}},
			}},
		},
	}
	want := `pod coredns-a on "c2-n1": Running, not ready (ContainersNotReady: containers with unready status: [coredns]), coredns ready false restarts 2 waiting CrashLoopBackOff, last exit 1 Error`
	if got := podsStatus([]corev1.Pod{p}); got != want {
		t.Errorf("podsStatus:\n got %s\nwant %s", got, want)
	}
	p.Status.Conditions[0].Reason, p.Status.Conditions[0].Message = "", ""
	p.Status.ContainerStatuses = nil
	if got, want := podsStatus([]corev1.Pod{p}), `pod coredns-a on "c2-n1": Running, not ready`; got != want {
		t.Errorf("podsStatus without a reason:\n got %s\nwant %s", got, want)
	}
}
