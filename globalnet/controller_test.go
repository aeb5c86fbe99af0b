package globalnet

// Integration tests: a real etcd and kube-apiserver (test/kubetest), the
// controller running as its ServiceAccount with exactly the RBAC of
// deploy/charts/strait/templates/globalnet.yaml, and a fake kernel (nodenettest) for the
// NAT. The harness runs no kube-controller-manager: the tests write the
// EndpointSlices and pod status the cluster would.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

const saName = "strait-globalnet"

type cluster struct {
	env  *kubetest.Env
	c    client.Client
	k    *nodenettest.Kernel
	cidr netip.Prefix
	stop func()
	// metrics are those of the controller on the node whose kernel is k.
	metrics *prometheus.Registry
}

func newCluster(t *testing.T, cidr string) *cluster {
	t.Helper()
	env := kubetest.New(t, kubetest.Options{})
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{env: env, c: c, k: &nodenettest.Kernel{}, cidr: netip.MustParsePrefix(cidr)}
	cl.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}})
	cl.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	// No controller-manager makes it; pods need it.
	cl.create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "default"}})
	objs, err := manifests.Render("globalnet.yaml", manifests.GatewayValues{Namespace: v1.ComponentNamespace, ClusterID: "c1",
		PodCIDRs: "10.0.0.0/16", ServiceCIDRs: "10.100.0.0/16", CableDriver: "wireguard", GlobalCIDR: cidr, ImageRepository: "strait", ImageTag: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			cl.create(t, o)
		}
	}
	return cl
}

func (cl *cluster) create(t *testing.T, o client.Object) {
	t.Helper()
	if err := cl.c.Create(context.Background(), o); err != nil {
		t.Fatalf("create %T %s: %v", o, o.GetName(), err)
	}
}

// start runs a controller, as its ServiceAccount, with leader election,
// until cl.stop or the end of the test.
func (cl *cluster) start(t *testing.T) {
	t.Helper()
	cl.stop = cl.run(t, cl.k)
}

// run runs a controller on the node whose kernel is k until the returned
// func or the end of the test.
func (cl *cluster) run(t *testing.T, k nodenet.Kernel) func() {
	t.Helper()
	return cl.runWrapped(t, k, nil)
}

// runWrapped is run with the controller's HTTP transport wrapped by wrap
// (nil: not wrapped).
func (cl *cluster) runWrapped(t *testing.T, k nodenet.Kernel, wrap func(http.RoundTripper) http.RoundTripper) func() {
	t.Helper()
	rc := rest.CopyConfig(cl.env.Config)
	rc.WrapTransport = wrap
	rc.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + v1.ComponentNamespace + ":" + saName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + v1.ComponentNamespace, "system:authenticated"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	reg := prometheus.NewRegistry()
	if k == cl.k {
		cl.metrics = reg
	}
	cfg := Config{ClusterID: "c1", Namespace: v1.ComponentNamespace, NodeName: "gw1", GlobalCIDR: cl.cidr,
		LeaderElection: true, Kernel: k, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg}
	go func() { done <- Run(ctx, rc, cfg) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// wait polls until cond holds (an error from cond ends the wait).
func wait4(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func allocated(conds []metav1.Condition) *metav1.Condition {
	return meta.FindStatusCondition(conds, v1.ConditionAllocated)
}

// egressIPs waits for a GlobalEgressIP (or, ns "", the ClusterGlobalEgressIP)
// to have an Allocated condition and returns its status.
func (cl *cluster) egressStatus(t *testing.T, ns, name string) v1.GlobalEgressIPStatus {
	t.Helper()
	var st v1.GlobalEgressIPStatus
	wait4(t, "Allocated on "+ns+"/"+name, func(ctx context.Context) (bool, error) {
		if ns == "" {
			var o v1.ClusterGlobalEgressIP
			if err := cl.c.Get(ctx, types.NamespacedName{Name: name}, &o); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			st = o.Status
		} else {
			var o v1.GlobalEgressIP
			if err := cl.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &o); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			st = o.Status
		}
		return allocated(st.Conditions) != nil, nil
	})
	return st
}

func (cl *cluster) ingressIP(t *testing.T, name string) v1.GlobalIngressIP {
	t.Helper()
	var g v1.GlobalIngressIP
	wait4(t, "GlobalIngressIP app/"+name+" allotted", func(ctx context.Context) (bool, error) {
		if err := cl.c.Get(ctx, types.NamespacedName{Namespace: "app", Name: name}, &g); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return g.Status.AllocatedIP != "", nil
	})
	return g
}

func ipStrings(ips []v1.IP) string {
	var s []string
	for _, ip := range ips {
		s = append(s, string(ip))
	}
	return strings.Join(s, ",")
}

func egress(name string, n int32, sel map[string]string) *v1.GlobalEgressIP {
	g := &v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name}, Spec: v1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(n)}}
	if sel != nil {
		g.Spec.PodSelector = &metav1.LabelSelector{MatchLabels: sel}
	}
	return g
}

// One controller allots, exports get their GlobalIngressIPs and strait-gn
// Service, an object asking for more than is left is told so while the
// others keep theirs, the node's NAT follows, and a new controller after a
// restart keeps every address even where a fresh allocation would differ.
func TestController(t *testing.T) {
	ctx := context.Background()
	// A /27: 32 addresses, 30 usable (the network's and the health-check
	// IP reserved).
	cl := newCluster(t, "242.1.0.0/27")
	cl.start(t)

	// The cluster's egress: made by the controller, 8 addresses after the
	// two reserved.
	st := cl.egressStatus(t, "", v1.ClusterEgressName)
	if got, want := ipStrings(st.AllocatedIPs), "242.1.0.2,242.1.0.3,242.1.0.4,242.1.0.5,242.1.0.6,242.1.0.7,242.1.0.8,242.1.0.9"; got != want {
		t.Fatalf("cluster-egress: %s, want %s", got, want)
	}
	if c := allocated(st.Conditions); c.Status != metav1.ConditionTrue || c.Reason != v1.ReasonSuccess {
		t.Errorf("cluster-egress condition %+v", c)
	}

	// A GlobalEgressIP for the web pods: two consecutive addresses.
	cl.create(t, egress("web", 2, map[string]string{"app": "web"}))
	if got := ipStrings(cl.egressStatus(t, "app", "web").AllocatedIPs); got != "242.1.0.10,242.1.0.11" {
		t.Errorf("web: %s", got)
	}

	// An exported ClusterIP Service: a GlobalIngressIP and a Service with
	// the global IP as its external IP, its selector and ports.
	cl.create(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{
			{Name: "sql", Port: 5432, TargetPort: intstr.FromInt32(5433), Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}})
	cl.create(t, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}})
	db := cl.ingressIP(t, "svc-db")
	if db.Spec.Target != v1.ClusterIPService || db.Spec.ServiceRef.Name != "db" || db.Status.AllocatedIP != "242.1.0.12" {
		t.Errorf("svc-db: %+v %+v", db.Spec, db.Status)
	}
	var gnSvc corev1.Service
	wait4(t, "the strait-gn Service", func(ctx context.Context) (bool, error) {
		err := cl.c.Get(ctx, types.NamespacedName{Namespace: "app", Name: ServiceName("db")}, &gnSvc)
		return err == nil, client.IgnoreNotFound(err)
	})
	if !slices.Equal(gnSvc.Spec.ExternalIPs, []string{"242.1.0.12"}) || gnSvc.Spec.Selector["app"] != "db" || len(gnSvc.Spec.Ports) != 2 ||
		gnSvc.Spec.Ports[0].Port != 5432 || gnSvc.Spec.Ports[0].TargetPort.IntVal != 5433 || gnSvc.Spec.Ports[1].Protocol != corev1.ProtocolUDP {
		t.Errorf("strait-gn Service spec: %+v", gnSvc.Spec)
	}
	if o := metav1.GetControllerOf(&gnSvc); o == nil || o.Kind != "GlobalIngressIP" || o.UID != db.UID {
		t.Errorf("strait-gn Service owner %+v, want the GlobalIngressIP %s", o, db.UID)
	}

	// An exported headless Service: one GlobalIngressIP per ready pod.
	cl.create(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "hl"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "hl"}, Ports: []corev1.ServicePort{{Port: 80}}}})
	for i, ip := range []string{"10.0.1.5", "10.0.1.6"} {
		name := []string{"hl-0", "hl-1"}[i]
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, Labels: map[string]string{"app": "hl"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
		cl.create(t, p)
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if err := cl.c.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	cl.create(t, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "hl-x", Labels: map[string]string{discoveryv1.LabelServiceName: "hl"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.1.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "hl-0"}},
			{Addresses: []string{"10.0.1.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "hl-1"}},
		}})
	cl.create(t, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "hl"}})
	hl0 := cl.ingressIP(t, "pod-hl-0")
	if hl0.Spec.Target != v1.HeadlessServicePod || hl0.Spec.PodRef == nil || hl0.Spec.PodRef.Name != "hl-0" || hl0.Status.AllocatedIP != "242.1.0.13" {
		t.Errorf("pod-hl-0: %+v %+v", hl0.Spec, hl0.Status)
	}
	if err := cl.c.Get(ctx, types.NamespacedName{Namespace: "app", Name: "pod-hl-1"}, &v1.GlobalIngressIP{}); !apierrors.IsNotFound(err) {
		t.Errorf("the unready pod hl-1 has a GlobalIngressIP: %v", err)
	}

	// The node's NAT follows the objects.
	wait4(t, "the NAT on the node", func(context.Context) (bool, error) {
		save, err := cl.k.Save(nodenet.IPv4, "nat")
		return err == nil &&
			strings.Contains(save, "-A STRAIT-GN-INGRESS -d 242.1.0.13/32 -m comment --comment \"strait: global IP of a headless pod\" -j DNAT --to-destination 10.0.1.5") &&
			strings.Contains(save, "-A STRAIT-GN-EGRESS -s 10.0.1.5/32 -o strait-cable -m comment --comment \"strait: headless pod leaves with its global IP\" -j SNAT --to-source 242.1.0.13") &&
			strings.Contains(save, "-A STRAIT-GN-EGRESS ! -s 242.1.0.0/27 -o strait-cable -m comment --comment \"strait: cluster leaves with its ClusterGlobalEgressIP\" -j SNAT --to-source 242.1.0.2-242.1.0.9"), nil
	})

	// A second instance (another gateway node) does not hold the Lease,
	// yet applies the same NAT on its node.
	k2 := &nodenettest.Kernel{}
	stop2 := cl.run(t, k2)
	wait4(t, "the NAT on the standby's node", func(context.Context) (bool, error) {
		save, err := k2.Save(nodenet.IPv4, "nat")
		s1, _ := cl.k.Save(nodenet.IPv4, "nat")
		return err == nil && save == s1, nil
	})
	stop2()

	// Exhaustion: 18 addresses are left (14-31); 20 are asked for. The
	// object is told, and nobody else loses anything.
	cl.create(t, egress("big", 20, nil))
	big := cl.egressStatus(t, "app", "big")
	if c := allocated(big.Conditions); c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonIPPoolExhausted || len(big.AllocatedIPs) != 0 {
		t.Errorf("big: %+v", big)
	} else if !strings.Contains(c.Message, "242.1.0.0/27") {
		t.Errorf("big's message does not name the CIDR: %q", c.Message)
	}
	if got := ipStrings(cl.egressStatus(t, "app", "web").AllocatedIPs); got != "242.1.0.10,242.1.0.11" {
		t.Errorf("web after the exhaustion: %s", got)
	}
	// The metrics: 12 of the 30 addresses allotted, one object refused.
	var got string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = ""
		for _, n := range []string{"strait_globalnet_pool_ips", "strait_globalnet_allocated_ips", "strait_globalnet_exhausted_requests"} {
			got += fmt.Sprintf("%s %g\n", n, gaugeValue(t, cl.metrics, n))
		}
		return got == "strait_globalnet_pool_ips 30\nstrait_globalnet_allocated_ips 12\nstrait_globalnet_exhausted_requests 1\n", nil
	}); err != nil {
		t.Errorf("metrics after the exhaustion:\n%s", got)
	}
	// A second namespace-wide GlobalEgressIP: the older (big) selects
	// every pod of the namespace already.
	cl.create(t, egress("wide2", 1, nil))
	if c := allocated(cl.egressStatus(t, "app", "wide2").Conditions); c.Status != metav1.ConditionFalse || c.Reason != v1.ReasonSuperseded {
		t.Errorf("wide2: %+v, want Superseded", c)
	}

	// Restart: stopped, web deleted meanwhile (a fresh allocation in
	// creation order would now give svc-db 242.1.0.10), started anew.
	before := map[string]string{}
	for _, n := range []string{"svc-db", "pod-hl-0"} {
		before[n] = string(cl.ingressIP(t, n).Status.AllocatedIP)
	}
	before[v1.ClusterEgressName] = ipStrings(cl.egressStatus(t, "", v1.ClusterEgressName).AllocatedIPs)
	cl.stop()
	if err := cl.c.Delete(ctx, egress("web", 2, nil)); err != nil {
		t.Fatal(err)
	}
	cl.start(t)
	cl.create(t, egress("after", 1, map[string]string{"app": "after"})) // a selector: big covers the namespace already
	if got := ipStrings(cl.egressStatus(t, "app", "after").AllocatedIPs); got != "242.1.0.10" {
		t.Errorf("after (the first free address, freed by web): %s", got)
	}
	for _, n := range []string{"svc-db", "pod-hl-0"} {
		if got := string(cl.ingressIP(t, n).Status.AllocatedIP); got != before[n] {
			t.Errorf("%s after the restart: %s, before %s", n, got, before[n])
		}
	}
	if got := ipStrings(cl.egressStatus(t, "", v1.ClusterEgressName).AllocatedIPs); got != before[v1.ClusterEgressName] {
		t.Errorf("cluster-egress after the restart: %s, before %s", got, before[v1.ClusterEgressName])
	}

	// The export goes: its GlobalIngressIP and Service go too.
	if err := cl.c.Delete(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}}); err != nil {
		t.Fatal(err)
	}
	wait4(t, "svc-db and its Service gone", func(ctx context.Context) (bool, error) {
		e1 := cl.c.Get(ctx, types.NamespacedName{Namespace: "app", Name: "svc-db"}, &v1.GlobalIngressIP{})
		e2 := cl.c.Get(ctx, types.NamespacedName{Namespace: "app", Name: ServiceName("db")}, &corev1.Service{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2), nil
	})
	// A deleted cluster-egress comes back.
	if err := cl.c.Delete(ctx, &v1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterEgressName}}); err != nil {
		t.Fatal(err)
	}
	cl.egressStatus(t, "", v1.ClusterEgressName)
}

// gaugeValue is the value of the gauge name in reg, -1 without it.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}
