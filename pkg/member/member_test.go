package member_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/proc"
)

// These tests run a broker cluster and a member cluster on real
// kube-apiservers. The member cluster also runs kube-controller-manager's
// garbage collector and namespace controller: foreground deletion and the
// removal of a namespace are theirs. Each test has clusters of its own, so
// the tests run in parallel: most of their time is waiting (for pods a
// finalizer holds, for a frozen broker's timeout).

const (
	clusterID = "c1"
	// pollInterval and waitTimeout bound the test's own waits for the
	// controllers; the timeout only turns a hang into a failure.
	pollInterval = 100 * time.Millisecond
	waitTimeout  = time.Minute
	// nodeStateFinalizer stands for a gateway pod that removes its node
	// state as it stops, or a Lighthouse pod that takes its time: the pod is
	// not gone until the test says so.
	nodeStateFinalizer = "test.strait.dev/node-state"
	// lighthouseName names the Lighthouse Deployment, its ServiceAccount and
	// RBAC (deploy/charts/strait/templates/lighthouse.yaml).
	lighthouseName = "strait-lighthouse"
)

// service is a ClusterIP Service with one port.
func service(namespace, name string, labels map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

// endpointSlice is an IPv4 EndpointSlice of Service svc with one endpoint.
func endpointSlice(namespace, name, svc string, labels map[string]string) *discoveryv1.EndpointSlice {
	l := map[string]string{discoveryv1.LabelServiceName: svc}
	for k, v := range labels {
		l[k] = v
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: l},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.7"}}},
	}
}

// lighthouseObjects are what Lighthouse makes of imports, in two
// application namespaces (app and app2, which the caller makes): a
// ServiceImport, its derived Service and an EndpointSlice imported from
// another cluster; a headless ServiceImport and its EndpointSlice. The
// ServiceImports carry only an exported label, not Lighthouse's: the caller
// creates them as Lighthouse's field manager.
func lighthouseObjects() []client.Object {
	managed := map[string]string{v1.LighthouseManagedLabel: "true"}
	return []client.Object{
		&mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app", Labels: map[string]string{"team": "web"}},
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP,
				Ports: []mcsv1beta1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
		},
		service("app", "derived-0123456789", managed),
		endpointSlice("app", "web-c2-0a1b2c3d", "derived-0123456789", managed),
		&mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "app2"},
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless,
				Ports: []mcsv1beta1.ServicePort{{Port: 5432, Protocol: corev1.ProtocolTCP}}},
		},
		endpointSlice("app2", "db-c2-4e5f6a7b", "db", managed),
	}
}

// createAsLighthouse creates objs as Lighthouse's field manager.
func createAsLighthouse(t *testing.T, c client.Client, objs []client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o, client.FieldOwner(kubeapply.FieldManagerLighthouse)); err != nil {
			t.Fatal(err)
		}
	}
}

// assertExist checks that every one of objs exists; when says when they must.
func assertExist(t *testing.T, c client.Client, objs []client.Object, when string) {
	t.Helper()
	for _, o := range objs {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("%T %s/%s went %s: %v", o, o.GetNamespace(), o.GetName(), when, err)
		}
	}
}

// assertGone checks that none of objs exists (or its kind is gone).
func assertGone(t *testing.T, c client.Client, objs []client.Object) {
	t.Helper()
	for _, o := range objs {
		err := c.Get(context.Background(), client.ObjectKeyFromObject(o), o)
		if !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			t.Errorf("%T %s/%s after leave: %v, want it gone", o, o.GetNamespace(), o.GetName(), err)
		}
	}
}

// release removes the finalizers of pod, which lets it go.
func release(t *testing.T, c client.Client, pod *corev1.Pod) {
	t.Helper()
	got := &corev1.Pod{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	got.Finalizers = nil
	if err := c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
}

func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startControllers runs kube-controller-manager's garbage collector and
// namespace controller against env until the test ends.
func startControllers(t *testing.T, env *kubetest.Env) {
	t.Helper()
	bin, err := kubetest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "kube-controller-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+env.Kubeconfig,
		"--controllers=garbage-collector-controller,namespace-controller",
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := proc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop(cmd, 5*time.Second)
		logFile.Close()
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(data)), "\n")
				t.Logf("kube-controller-manager log (tail):\n%s", strings.Join(lines[max(0, len(lines)-20):], "\n"))
			}
		}
	})
}

// object is one object in a snapshot of a cluster.
type object struct {
	gvr             schema.GroupVersionResource
	namespace, name string
}

func (o object) String() string {
	return fmt.Sprintf("%s.%s %s/%s", o.gvr.Resource, o.gvr.Group, o.namespace, o.name)
}

// version is an object's identity and revision in a snapshot.
type version struct{ uid, resourceVersion string }

// snapshot lists every object of every listable resource in the cluster.
func snapshot(t *testing.T, cfg *rest.Config) map[object]version {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{} // deprecated kinds are listed too
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		t.Fatal(err)
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := map[object]version{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			items, err := mc.Resource(gvr).List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatalf("list %s: %v", gvr, err)
			}
			for _, it := range items.Items {
				out[object{gvr, it.Namespace, it.Name}] = version{string(it.UID), it.ResourceVersion}
			}
		}
	}
	return out
}

// changes returns what differs between two snapshots of the same cluster,
// leaving out the kinds that move on their own (the apiservers' identity
// Leases, Events).
func changes(before, after map[object]version) []string {
	var out []string
	for o, v := range before {
		if o.gvr.Resource == "leases" || o.gvr.Resource == "events" {
			continue
		}
		switch w, ok := after[o]; {
		case !ok:
			out = append(out, "removed "+o.String())
		case w != v:
			out = append(out, "changed "+o.String())
		}
	}
	for o := range after {
		if _, ok := before[o]; !ok && o.gvr.Resource != "leases" && o.gvr.Resource != "events" {
			out = append(out, "added "+o.String())
		}
	}
	slices.Sort(out)
	return out
}

func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), pollInterval, waitTimeout, true, cond); err != nil {
		t.Fatalf("wait for %s: %v", what, err)
	}
}

func TestJoinLeave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	startControllers(t, env)
	c := newClient(t, env.Config)
	bc := newClient(t, brokerEnv.Config)

	for _, n := range []string{"n1", "n2", "n3"} {
		if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	opts := member.JoinOptions{
		ClusterID: clusterID, CableDriver: v1.CableDriverWireGuard, GatewayNodes: []string{"n2", "n1"},
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		ServiceCIDRs:    []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")},
		ImageRepository: "registry.example:5000/strait", ImageTag: "v9",
		Log: t.Logf,
	}
	// What join is to apply: the namespace, the chart rendered with these
	// values (the ClusterProperty among it) and the broker credential.
	rendered, err := manifests.RenderMember(manifests.GatewayValues{
		Namespace: v1.ComponentNamespace, ClusterID: clusterID, PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
		CableDriver: "wireguard", ImageRepository: "registry.example:5000/strait", ImageTag: "v9",
	})
	if err != nil {
		t.Fatal(err)
	}
	joined := []*unstructured.Unstructured{}
	joined = append(joined, rendered...)
	for _, o := range []struct{ apiVersion, kind, ns, name string }{
		{"v1", "Namespace", "", v1.ComponentNamespace},
		{"v1", "Secret", v1.ComponentNamespace, broker.SecretName},
	} {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(o.apiVersion)
		u.SetKind(o.kind)
		u.SetNamespace(o.ns)
		u.SetName(o.name)
		joined = append(joined, u)
	}

	if err := member.Join(ctx, env.Config, info, opts); err != nil {
		t.Fatalf("join: %v", err)
	}

	t.Run("join applies what the manifests render", func(t *testing.T) {
		for _, want := range joined {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(want.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
				t.Errorf("%s %s: %v", want.GetKind(), want.GetName(), err)
				continue
			}
			for _, m := range got.GetManagedFields() {
				if m.Subresource == "" && (m.Manager != kubeapply.FieldManagerCLI || m.Operation != metav1.ManagedFieldsOperationApply) {
					t.Errorf("%s %s is written by %s (%s), want %s (Apply)", want.GetKind(), want.GetName(), m.Manager, m.Operation, kubeapply.FieldManagerCLI)
				}
			}
			if want.GetKind() == "DaemonSet" || want.GetKind() == "Deployment" {
				// The values reached the cluster.
				gotCtrs, _, _ := unstructured.NestedSlice(got.Object, "spec", "template", "spec", "containers")
				wantCtrs, _, _ := unstructured.NestedSlice(want.Object, "spec", "template", "spec", "containers")
				g, w := gotCtrs[0].(map[string]any), wantCtrs[0].(map[string]any)
				if fmt.Sprint(g["args"]) != fmt.Sprint(w["args"]) || g["image"] != w["image"] {
					t.Errorf("%s %s: image %v args %v, want %v %v", want.GetKind(), want.GetName(), g["image"], g["args"], w["image"], w["args"])
				}
			}
		}
		assertGatewayLabels(t, c, "n1", "n2")
	})

	t.Run("join installs Lighthouse with the rights it needs", func(t *testing.T) {
		// The loop above checks what the manifests render; this says that
		// Lighthouse is among it.
		for _, want := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: lighthouseName}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: lighthouseName}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: lighthouseName}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: lighthouseName}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: lighthouseName}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: lighthouseName}},
		} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), want); err != nil {
				t.Errorf("%T %s: %v", want, want.GetName(), err)
			}
		}
		// The apiserver's RBAC answers for the agent's service account.
		for _, tc := range []struct {
			verb, group, resource, subresource, namespace, name string
			allowed                                             bool
		}{
			{"get", "", "secrets", "", v1.ComponentNamespace, broker.SecretName, true},
			{"get", "", "secrets", "", v1.ComponentNamespace, "other", false},
			{"list", "", "secrets", "", v1.ComponentNamespace, "", false},
			{"update", "coordination.k8s.io", "leases", "", v1.ComponentNamespace, "strait-lighthouse", true},
			{"watch", "strait.dev", "gateways", "", v1.ComponentNamespace, "", true},
			{"update", "strait.dev", "gateways", "", v1.ComponentNamespace, "", false},
			{"create", "multicluster.x-k8s.io", "serviceimports", "", "app", "", true},
			{"patch", "multicluster.x-k8s.io", "serviceimports", "status", "app", "web", true},
			{"watch", "multicluster.x-k8s.io", "serviceexports", "", "", "", true},
			{"patch", "multicluster.x-k8s.io", "serviceexports", "status", "app", "web", true},
			{"update", "multicluster.x-k8s.io", "serviceexports", "", "app", "web", false},
			{"delete", "multicluster.x-k8s.io", "serviceexports", "", "app", "web", false},
			{"create", "", "services", "", "app", "", true},
			{"delete", "discovery.k8s.io", "endpointslices", "", "app", "web-c2", true},
			{"list", "", "namespaces", "", "", "", true},
			{"create", "", "namespaces", "", "", "", false},
			{"watch", "about.k8s.io", "clusterproperties", "", "", "", true},
			{"create", "", "events", "", v1.ComponentNamespace, "", true},
			{"create", "", "pods", "", "app", "", false},
		} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + v1.ComponentNamespace + ":" + lighthouseName,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + v1.ComponentNamespace},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: tc.verb, Group: tc.group, Resource: tc.resource, Subresource: tc.subresource,
					Namespace: tc.namespace, Name: tc.name,
				},
			}}
			if err := c.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tc.allowed {
				t.Errorf("Lighthouse may %s %s.%s/%s %s/%s: %v, want %v", tc.verb, tc.resource, tc.group, tc.subresource,
					tc.namespace, tc.name, sar.Status.Allowed, tc.allowed)
			}
		}
	})

	t.Run("join installs strait-dns with the rights it needs and no more", func(t *testing.T) {
		for _, want := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: manifests.DNSServiceName}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: manifests.DNSServiceName}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: manifests.DNSServiceName}},
		} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(want), want); err != nil {
				t.Errorf("%T %s: %v", want, want.GetName(), err)
			}
		}
		for _, tc := range []struct {
			verb, group, resource, namespace string
			allowed                          bool
		}{
			{"watch", "multicluster.x-k8s.io", "serviceimports", "", true},
			{"list", "discovery.k8s.io", "endpointslices", "", true},
			{"get", "about.k8s.io", "clusterproperties", "", true},
			{"watch", "strait.dev", "gateways", v1.ComponentNamespace, true},
			{"watch", "strait.dev", "gateways", "app", false},
			{"create", "multicluster.x-k8s.io", "serviceimports", "app", false},
			{"update", "discovery.k8s.io", "endpointslices", "app", false},
			{"list", "", "services", "", false},
			{"get", "", "secrets", v1.ComponentNamespace, false},
		} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + v1.ComponentNamespace + ":" + manifests.DNSServiceName,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + v1.ComponentNamespace},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: tc.verb, Group: tc.group, Resource: tc.resource, Namespace: tc.namespace,
				},
			}}
			if err := c.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tc.allowed {
				t.Errorf("strait-dns may %s %s.%s in %q: %v, want %v", tc.verb, tc.resource, tc.group, tc.namespace, sar.Status.Allowed, tc.allowed)
			}
		}
	})

	t.Run("joining again changes nothing", func(t *testing.T) {
		before, beforeBroker := snapshot(t, env.Config), snapshot(t, brokerEnv.Config)
		if err := member.Join(ctx, env.Config, info, opts); err != nil {
			t.Fatalf("join again: %v", err)
		}
		if d := changes(before, snapshot(t, env.Config)); len(d) > 0 {
			t.Errorf("joining again changed the member cluster:\n%s", strings.Join(d, "\n"))
		}
		if d := changes(beforeBroker, snapshot(t, brokerEnv.Config)); len(d) > 0 {
			t.Errorf("joining again changed the broker:\n%s", strings.Join(d, "\n"))
		}
	})

	// Users' objects: in a namespace of theirs, a ConfigMap, a Service with
	// its EndpointSlice and its ServiceExport (of a Strait CRD), and a
	// ClusterRole that even carries Strait's part-of label.
	user := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app2"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "app"}, Data: map[string]string{"k": "v"}},
		service("app", "web", nil),
		endpointSlice("app", "web-x7k2p", "web", nil),
		&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app"}},
		// A ServiceImport someone else wrote by hand, with the label
		// Lighthouse puts on what it makes: not Lighthouse's.
		&mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: "manual", Namespace: "app", Labels: map[string]string{v1.LighthouseManagedLabel: "true"}},
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless,
				Ports: []mcsv1beta1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP}}},
		},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "strait-viewer", Labels: map[string]string{"app.kubernetes.io/part-of": "strait"}}},
		// A namespace that only has the broker's default name: this
		// cluster hosts no broker, and its CRDs go all the same.
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.BrokerNamespace}},
	}
	made := lighthouseObjects()
	for _, o := range user {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	createAsLighthouse(t, c, made)
	// A gateway pod of the DaemonSet, which takes its time to stop.
	gwDS := &unstructured.Unstructured{}
	gwDS.SetAPIVersion("apps/v1")
	gwDS.SetKind("DaemonSet")
	if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, gwDS); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "strait-gateway-n1", Namespace: v1.ComponentNamespace,
			Labels:     map[string]string{"app.kubernetes.io/component": "gateway"},
			Finalizers: []string{nodeStateFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: gwDS.GetName(), UID: gwDS.GetUID(),
				Controller: new(true), BlockOwnerDeletion: new(true)}},
		},
		Spec: corev1.PodSpec{ServiceAccountName: "strait-gateway", Containers: []corev1.Container{{Name: "gateway", Image: "strait/strait-gateway:v9"}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	memberSA := client.ObjectKey{Namespace: v1.BrokerNamespace, Name: broker.MemberPrefix + clusterID}
	if err := bc.Get(ctx, memberSA, &corev1.ServiceAccount{}); err != nil {
		t.Fatalf("the member's service account at the broker: %v", err)
	}
	before := snapshot(t, env.Config)
	// What join applied, as snapshot keys; the mapping needs the CRDs, which
	// leave removes.
	joinedKeys := map[object]bool{}
	for _, o := range joined {
		gvk := o.GroupVersionKind()
		m, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		joinedKeys[object{m.Resource, o.GetNamespace(), o.GetName()}] = true
	}
	for k := range serviceIPAddresses(t, c, joined) {
		joinedKeys[k] = true
	}
	madeKeys := map[object]bool{}
	for _, o := range made {
		gvk, err := c.GroupVersionKindFor(o)
		if err != nil {
			t.Fatal(err)
		}
		m, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		madeKeys[object{m.Resource, o.GetNamespace(), o.GetName()}] = true
		// The apiserver frees a Service's cluster IP with it: its IPAddress
		// goes too.
		if svc, ok := o.(*corev1.Service); ok {
			madeKeys[object{schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ipaddresses"}, "", svc.Spec.ClusterIP}] = true
		}
	}

	left := make(chan error, 1)
	go func() { left <- member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}) }()

	t.Run("leave waits for the gateway pods before anything else", func(t *testing.T) {
		poll(t, "the gateway pod to be terminating", func(ctx context.Context) (bool, error) {
			p := &corev1.Pod{}
			err := c.Get(ctx, client.ObjectKeyFromObject(pod), p)
			return err == nil && p.DeletionTimestamp != nil, nil
		})
		// The pod still stands: Leave must not have gone further.
		assertExist(t, c, made, "while a gateway pod was still stopping")
		if err := bc.Get(ctx, memberSA, &corev1.ServiceAccount{}); err != nil {
			t.Errorf("the broker records went while a gateway pod was still stopping: %v", err)
		}
		assertGatewayLabels(t, c, "n1", "n2")
		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: broker.SecretName}, secret); err != nil {
			t.Errorf("the broker credential went while a gateway pod was still stopping: %v", err)
		}
		// The gateway has cleaned its node state.
		release(t, c, pod)
	})
	if err := <-left; err != nil {
		t.Fatalf("leave: %v", err)
	}

	t.Run("leave removes what join applied", func(t *testing.T) {
		for _, o := range joined {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(o.GroupVersionKind())
			err := c.Get(ctx, client.ObjectKeyFromObject(o), got)
			if !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
				t.Errorf("%s %s/%s after leave: %v, want it gone", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
		}
		assertGatewayLabels(t, c)
		if err := bc.Get(ctx, memberSA, &corev1.ServiceAccount{}); !apierrors.IsNotFound(err) {
			t.Errorf("the member's service account at the broker after leave: %v, want it gone", err)
		}
	})

	t.Run("leave removes what Lighthouse made", func(t *testing.T) {
		assertGone(t, c, made)
	})

	t.Run("leave removes nothing else", func(t *testing.T) {
		after := snapshot(t, env.Config)
		crdGroups := map[string]bool{}
		for o := range before {
			if o.gvr.Resource == "customresourcedefinitions" {
				if _, ok := after[o]; !ok {
					crdGroups[o.name[strings.Index(o.name, ".")+1:]] = true
				}
			}
		}
		for o, v := range before {
			if o.gvr.Resource == "leases" || o.gvr.Resource == "events" {
				continue
			}
			if w, ok := after[o]; ok {
				if w.uid != v.uid {
					t.Errorf("%s was replaced", o)
				}
				continue
			}
			switch {
			case joinedKeys[o], madeKeys[o]:
			case o.namespace == v1.ComponentNamespace:
				// Strait's namespace goes, and what is in it (the pod).
			case o.gvr.Resource == "customresourcedefinitions" && strings.HasSuffix(o.name, "."+v1.GroupName):
				// Strait's own CRDs go, but not the MCS API's and
				// about.k8s.io's, which hold users' objects...
			case o.gvr.Resource == "apiservices" && crdGroups[o.name[strings.Index(o.name, ".")+1:]]:
				// ... and with them the apiserver's APIService of their group.
			default:
				t.Errorf("leave removed %s", o)
			}
		}
		for _, o := range user {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				t.Errorf("the user's %T %s: %v", o, o.GetName(), err)
			}
		}
		crdKey := func(name string) object {
			return object{schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, "", name}
		}
		for _, gone := range []string{"clusters.strait.dev", "endpoints.strait.dev", "gateways.strait.dev"} {
			if _, ok := after[crdKey(gone)]; ok {
				t.Errorf("CRD %s stayed with no object of its kind and no broker", gone)
			}
		}
		for _, kept := range []string{"clusterproperties.about.k8s.io", "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} {
			if _, ok := after[crdKey(kept)]; !ok {
				t.Errorf("leave removed CRD %s, which holds users' objects", kept)
			}
		}
	})

	t.Run("leaving again says the cluster has not joined", func(t *testing.T) {
		err := member.Leave(ctx, env.Config, member.LeaveOptions{})
		if err == nil || !strings.Contains(err.Error(), "has not joined") {
			t.Errorf("got %v", err)
		}
	})
}

// serviceIPAddresses returns, as snapshot keys, the IPAddress objects
// (networking.k8s.io) of the cluster IPs of the Services among objs as they
// are in the cluster: the apiserver frees them with their Services.
func serviceIPAddresses(t *testing.T, c client.Client, objs []*unstructured.Unstructured) map[object]bool {
	t.Helper()
	out := map[object]bool{}
	gvr := schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ipaddresses"}
	for _, o := range objs {
		if o.GetKind() != "Service" {
			continue
		}
		svc := &corev1.Service{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: o.GetNamespace(), Name: o.GetName()}, svc); err != nil {
			t.Fatalf("Service %s/%s: %v", o.GetNamespace(), o.GetName(), err)
		}
		for _, ip := range svc.Spec.ClusterIPs {
			out[object{gvr, "", ip}] = true
		}
	}
	return out
}

// assertGatewayLabels checks that exactly the named nodes carry the gateway
// label.
func assertGatewayLabels(t *testing.T, c client.Client, want ...string) {
	t.Helper()
	var nodes corev1.NodeList
	if err := c.List(context.Background(), &nodes, client.HasLabels{member.GatewayLabel}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes.Items {
		got = append(got, n.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("gateway nodes %v, want %v", got, want)
	}
}

// A cluster that hosts the broker and is a member of it keeps the CRDs and
// the broker when it leaves.
func TestLeaveKeepsTheBroker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	startControllers(t, env)
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	c := newClient(t, env.Config)
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if err := member.Join(ctx, env.Config, info, member.JoinOptions{
		ClusterID: clusterID, CableDriver: v1.CableDriverVXLAN, GatewayNodes: []string{"n1"},
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		ServiceCIDRs:    []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")},
		ImageRepository: "strait", ImageTag: "devel",
	}); err != nil {
		t.Fatalf("join: %v", err)
	}
	before := snapshot(t, env.Config)
	rendered, err := manifests.RenderMember(manifests.GatewayValues{Namespace: v1.ComponentNamespace, ClusterID: clusterID,
		PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16", ImageRepository: "strait", ImageTag: "devel"})
	if err != nil {
		t.Fatal(err)
	}
	serviceIPs := serviceIPAddresses(t, c, rendered)
	if err := member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	after := snapshot(t, env.Config)
	for o := range before {
		if _, ok := after[o]; ok || o.namespace == v1.ComponentNamespace {
			continue
		}
		switch {
		case o.gvr.Resource == "namespaces" && o.name == v1.ComponentNamespace:
		case o.gvr.Resource == "clusterroles" || o.gvr.Resource == "clusterrolebindings":
			if !strings.HasPrefix(o.name, "strait-gateway") && !strings.HasPrefix(o.name, "strait-routeagent") && !strings.HasPrefix(o.name, lighthouseName) && o.name != manifests.DNSServiceName {
				t.Errorf("leave removed %s", o)
			}
		case o.gvr.Resource == "clusterproperties" && o.name == v1.ClusterIDPropertyName:
		case o.namespace == v1.BrokerNamespace && strings.HasPrefix(o.name, broker.MemberPrefix+clusterID):
			// The member's credential at the broker, and its Role and bindings.
		case o.gvr.Resource == "leases" || o.gvr.Resource == "events":
		case serviceIPs[o]:
			// Freed with strait-dns's Service.
		default:
			t.Errorf("leave removed %s", o)
		}
	}
}

// Leave deletes what Lighthouse made only once the Lighthouse pods are gone:
// an agent still running would make it again. Here a Lighthouse pod is all
// that holds Leave back.
func TestLeaveWaitsForLighthouse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	startControllers(t, env)
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	c := newClient(t, env.Config)
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	if err := member.Join(ctx, env.Config, info, member.JoinOptions{
		ClusterID: clusterID, CableDriver: v1.CableDriverWireGuard, GatewayNodes: []string{"n1"},
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		ServiceCIDRs:    []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")},
		ImageRepository: "strait", ImageTag: "devel",
	}); err != nil {
		t.Fatalf("join: %v", err)
	}
	made := lighthouseObjects()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app2"}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	createAsLighthouse(t, c, made)
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: lighthouseName}, d); err != nil {
		t.Fatalf("the Lighthouse Deployment after join: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "strait-lighthouse-7d9f8-abc12", Namespace: v1.ComponentNamespace,
			Labels:     map[string]string{"app.kubernetes.io/component": "lighthouse"},
			Finalizers: []string{nodeStateFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
				Controller: new(true), BlockOwnerDeletion: new(true)}},
		},
		Spec: corev1.PodSpec{ServiceAccountName: lighthouseName, Containers: []corev1.Container{{Name: "lighthouse", Image: "strait/strait-lighthouse:devel"}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}

	left := make(chan error, 1)
	go func() { left <- member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}) }()
	poll(t, "the Lighthouse pod to be terminating", func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		err := c.Get(ctx, client.ObjectKeyFromObject(pod), p)
		return err == nil && p.DeletionTimestamp != nil, nil
	})
	assertExist(t, c, made, "while the Lighthouse pod was still stopping")
	release(t, c, pod)
	if err := <-left; err != nil {
		t.Fatalf("leave: %v", err)
	}
	assertGone(t, c, made)
}
