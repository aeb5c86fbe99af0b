package routeagent

import (
	"net/netip"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

func store(t *testing.T, objs ...any) cache.Store {
	t.Helper()
	s := cache.NewStore(cache.MetaNamespaceKeyFunc)
	for _, o := range objs {
		if err := s.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func unstructuredOf(t *testing.T, o runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// TestFactsTakeTheActiveGatewaysPathMTU: each remote cluster's subnets get
// the path MTU of that cluster's connection in the active gateway's status;
// a passive gateway's figures, and a connection without one, give nothing.
func TestFactsTakeTheActiveGatewaysPathMTU(t *testing.T) {
	a := testAgent(&nodenettest.Kernel{})
	a.cfg.ClusterID, a.cfg.LeaseName = "a", "strait-gateway"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n3"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.13"}}}}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "strait-gateway", Namespace: "strait-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n1")}}
	cluster := func(id string, cidrs ...v1.CIDR) *unstructured.Unstructured {
		return unstructuredOf(t, &v1.Cluster{TypeMeta: metav1.TypeMeta{APIVersion: "strait.dev/v1alpha1", Kind: "Cluster"},
			ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: "strait-system"},
			Spec:       v1.ClusterSpec{ClusterID: v1.ClusterID(id), PodCIDRs: cidrs[:1], ServiceCIDRs: cidrs[1:]}})
	}
	gateway := func(name string, conns ...v1.Connection) *unstructured.Unstructured {
		return unstructuredOf(t, &v1.Gateway{TypeMeta: metav1.TypeMeta{APIVersion: "strait.dev/v1alpha1", Kind: "Gateway"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "strait-system"},
			Status:     v1.GatewayStatus{Connections: conns}})
	}
	f, err := a.facts(store(t, node), store(t, lease),
		store(t, cluster("a", "10.1.0.0/16", "10.101.0.0/16"), cluster("b", "10.2.0.0/16", "10.102.0.0/16"), cluster("c", "10.3.0.0/16", "10.103.0.0/16")),
		store(t,
			gateway("n1", v1.Connection{ClusterID: "b", Endpoint: "b-n1", PathMTU: 1340}, v1.Connection{ClusterID: "c", Endpoint: "c-n1"}),
			gateway("n2", v1.Connection{ClusterID: "c", Endpoint: "c-n1", PathMTU: 1200})))
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]int{netip.MustParsePrefix("10.2.0.0/16"): 1340, netip.MustParsePrefix("10.102.0.0/16"): 1340}
	if len(f.PathMTU) != len(want) {
		t.Fatalf("path MTUs %v, want %v", f.PathMTU, want)
	}
	for p, m := range want {
		if f.PathMTU[p] != m {
			t.Errorf("path MTU of %s = %d, want %d (all: %v)", p, f.PathMTU[p], m, f.PathMTU)
		}
	}
}
