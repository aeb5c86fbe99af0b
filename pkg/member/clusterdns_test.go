package member_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/corefile"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/test/kubetest"
)

// kubeadmCorefile is the Corefile kubeadm puts in kube-system/coredns
// (pkg/corefile's test data).
var kubeadmCorefile = func() string {
	b, err := os.ReadFile("../corefile/testdata/kubeadm.Corefile")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// kubeadmManager is the field manager kubeadm writes the ConfigMap as.
const kubeadmManager = "kubeadm"

// logLines collects what Join and Leave log, and passes it on to the test's
// log.
type logLines struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.t.Helper()
	s := fmt.Sprintf(format, args...)
	l.t.Log(s)
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

// take returns what was logged since the last take.
func (l *logLines) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.lines, "\n")
	l.lines = nil
	return s
}

// dnsEnv is a cluster that hosts a broker and joins it, with the
// controllers leave needs; opts are extra kube-apiserver flags.
type dnsEnv struct {
	env  *kubetest.Env
	c    client.Client
	info *broker.Info
	log  *logLines
}

func newDNSEnv(t *testing.T, apiserverArgs ...string) *dnsEnv {
	t.Helper()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true, APIServerArgs: apiserverArgs})
	startControllers(t, env)
	info, err := broker.Deploy(context.Background(), env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	c := newClient(t, env.Config)
	if err := c.Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	return &dnsEnv{env: env, c: c, info: info, log: &logLines{t: t}}
}

func (e *dnsEnv) join(t *testing.T) {
	t.Helper()
	if err := member.Join(context.Background(), e.env.Config, e.info, member.JoinOptions{
		ClusterID: clusterID, CableDriver: v1.CableDriverVXLAN, GatewayNodes: []string{"n1"},
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		ServiceCIDRs:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		ImageRepository: "strait", ImageTag: "devel",
		Log: e.log.logf,
	}); err != nil {
		t.Fatalf("join: %v", err)
	}
}

func (e *dnsEnv) leave(t *testing.T) {
	t.Helper()
	if err := member.Leave(context.Background(), e.env.Config, member.LeaveOptions{Log: e.log.logf}); err != nil {
		t.Fatalf("leave: %v", err)
	}
}

// createCoreDNS creates kube-system/coredns with data, as kubeadm.
func (e *dnsEnv) createCoreDNS(t *testing.T, data map[string]string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: member.CoreDNSNamespace, Name: member.CoreDNSConfigMap}, Data: data}
	if err := e.c.Create(context.Background(), cm, client.FieldOwner(kubeadmManager)); err != nil {
		t.Fatal(err)
	}
	return cm
}

func (e *dnsEnv) coreDNS(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: member.CoreDNSNamespace, Name: member.CoreDNSConfigMap}, cm); err != nil {
		t.Fatal(err)
	}
	return cm
}

// dnsServiceIPs reads the cluster IPs of strait-dns's Service.
func (e *dnsEnv) dnsServiceIPs(t *testing.T) []netip.Addr {
	t.Helper()
	svc := &corev1.Service{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}, svc); err != nil {
		t.Fatalf("strait-dns's Service: %v", err)
	}
	var out []netip.Addr
	for _, s := range svc.Spec.ClusterIPs {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// On a kubeadm-style cluster with both address families, join appends the
// marked block with both of strait-dns's cluster IPs to the Corefile, with
// an Update that takes no ownership of the Corefile; a second join writes
// nothing; leave takes the block out first, while strait-dns's Service
// still stands, and leaves the ConfigMap's data as it was before join.
func TestJoinForwardsClustersetToStraitDNS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newDNSEnv(t, "--service-cluster-ip-range=10.0.0.0/24,fd00:10::/108")
	before := e.createCoreDNS(t, map[string]string{member.CorefileKey: kubeadmCorefile, "other": "kept"})

	e.join(t)
	ips := e.dnsServiceIPs(t)
	if len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() {
		t.Fatalf("strait-dns's Service has cluster IPs %v, want one of each family (ipFamilyPolicy PreferDualStack)", ips)
	}
	joined := e.coreDNS(t)
	want := kubeadmCorefile + "# BEGIN strait clusterset.local: added by straitctl join, removed by straitctl leave\n" +
		"clusterset.local:53 {\n" +
		"    forward . " + ips[0].String() + " " + ips[1].String() + "\n" +
		"}\n" +
		"# END strait clusterset.local\n"
	if got := joined.Data[member.CorefileKey]; got != want {
		t.Errorf("Corefile after join:\n%s\nwant\n%s", got, want)
	}
	if joined.Data["other"] != "kept" {
		t.Errorf("the ConfigMap's other key: %q", joined.Data["other"])
	}
	if l := e.log.take(); !strings.Contains(l, "forwards clusterset.local to "+ips[0].String()+", "+ips[1].String()) {
		t.Errorf("join's log does not say it added the forward:\n%s", l)
	}
	// kubeadm still owns the Corefile; straitctl has written it, not applied it.
	for _, m := range joined.ManagedFields {
		if m.Manager == kubeapply.FieldManagerCLI && m.Operation != metav1.ManagedFieldsOperationUpdate {
			t.Errorf("straitctl wrote the ConfigMap with %s, want Update", m.Operation)
		}
	}
	if !kubeapply.WrittenBy(joined, kubeadmManager) {
		t.Errorf("kubeadm no longer owns fields of the ConfigMap: %+v", joined.ManagedFields)
	}

	e.join(t)
	if again := e.coreDNS(t); again.ResourceVersion != joined.ResourceVersion {
		t.Errorf("joining again wrote the ConfigMap (resourceVersion %s, was %s):\n%s", again.ResourceVersion, joined.ResourceVersion, again.Data[member.CorefileKey])
	}
	if l := e.log.take(); !strings.Contains(l, "already forwards clusterset.local") {
		t.Errorf("the second join's log does not say the forward was there:\n%s", l)
	}

	// A strait-dns pod that takes its time to stop holds leave after its
	// first step.
	d := &appsv1.Deployment{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}, d); err != nil {
		t.Fatalf("the strait-dns Deployment after join: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "strait-dns-5c9d7-x2k4q", Namespace: v1.ComponentNamespace,
			Labels:     map[string]string{"app.kubernetes.io/component": "dns"},
			Finalizers: []string{nodeStateFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
				Controller: new(true), BlockOwnerDeletion: new(true)}},
		},
		Spec: corev1.PodSpec{ServiceAccountName: manifests.DNSServiceName, Containers: []corev1.Container{{Name: "dns", Image: "strait/strait-dns:devel"}}},
	}
	if err := e.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	left := make(chan error, 1)
	go func() { left <- member.Leave(ctx, e.env.Config, member.LeaveOptions{Log: e.log.logf}) }()
	poll(t, "the strait-dns pod to be terminating", func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), p)
		return err == nil && p.DeletionTimestamp != nil, nil
	})
	if got := e.coreDNS(t).Data[member.CorefileKey]; got != kubeadmCorefile {
		t.Errorf("the Corefile while strait-dns was stopping:\n%s\nwant kubeadm's as it was", got)
	}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}, &corev1.Service{}); err != nil {
		t.Errorf("strait-dns's Service went before the Corefile's forward: %v", err)
	}
	release(t, e.c, pod)
	if err := <-left; err != nil {
		t.Fatalf("leave: %v", err)
	}
	after := e.coreDNS(t)
	if fmt.Sprint(after.Data) != fmt.Sprint(before.Data) || len(after.BinaryData) != 0 {
		t.Errorf("the ConfigMap after leave: %q, want as before join: %q", after.Data, before.Data)
	}
	if l := e.log.take(); !strings.Contains(l, "removed the clusterset.local forward") {
		t.Errorf("leave's log does not say it removed the forward:\n%s", l)
	}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}, &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("strait-dns's Service after leave: %v, want it gone", err)
	}
}

// A cluster whose DNS is not a CoreDNS join recognises (no
// kube-system/coredns, or one without a Corefile) joins all the same; the
// log says what to add by hand, with the address; leave has nothing to take
// out and writes nothing.
func TestJoinWithoutCoreDNS(t *testing.T) {
	t.Parallel()
	e := newDNSEnv(t)
	e.join(t)
	ips := e.dnsServiceIPs(t)
	block := strings.TrimSuffix(corefile.Block(ips, "\n"), "\n")
	if !strings.Contains(block, "    forward . "+ips[0].String()+"\n") {
		t.Fatalf("the block %q lacks the Service's address %s", block, ips[0])
	}
	if l := e.log.take(); !strings.Contains(l, "no ConfigMap kube-system/coredns") || !strings.Contains(l, "by hand") || !strings.Contains(l, block) {
		t.Errorf("join's log does not say how to add the forward by hand:\n%s", l)
	}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: member.CoreDNSNamespace, Name: member.CoreDNSConfigMap}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("kube-system/coredns after join: %v, want none made", err)
	}

	other := e.createCoreDNS(t, map[string]string{"config.yaml": "not a Corefile"})
	e.join(t)
	if l := e.log.take(); !strings.Contains(l, "has no key Corefile") || !strings.Contains(l, block) {
		t.Errorf("join's log does not say how to add the forward by hand:\n%s", l)
	}
	e.leave(t)
	if got := e.coreDNS(t); got.ResourceVersion != other.ResourceVersion {
		t.Errorf("join or leave wrote a ConfigMap without a Corefile: %q", got.Data)
	}
}

// A Corefile that already serves clusterset.local in a block of the user's
// own keeps it: join adds no second one (CoreDNS would refuse the Corefile)
// and says so; leave writes nothing either.
func TestJoinLeavesAUsersClustersetBlockAlone(t *testing.T) {
	t.Parallel()
	e := newDNSEnv(t)
	own := kubeadmCorefile + "clusterset.local:53 {\n    forward . 10.0.0.99\n}\n"
	cm := e.createCoreDNS(t, map[string]string{member.CorefileKey: own})
	e.join(t)
	if got := e.coreDNS(t); got.ResourceVersion != cm.ResourceVersion {
		t.Errorf("join wrote the Corefile:\n%s", got.Data[member.CorefileKey])
	}
	if l := e.log.take(); !strings.Contains(l, "left the Corefile of kube-system/coredns alone") || !strings.Contains(l, "server block of its own for clusterset.local (line 24") {
		t.Errorf("join's log does not say it found the user's block:\n%s", l)
	}
	e.leave(t)
	if got := e.coreDNS(t); got.ResourceVersion != cm.ResourceVersion {
		t.Errorf("leave wrote the Corefile:\n%s", got.Data[member.CorefileKey])
	}
}
