package probe

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/test/kubetest"
)

func TestConnectAndFindNodesOnAPIServer(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{})
	ctx := context.Background()
	cfgs := []*rest.Config{env.Config}

	if _, err := Connect(ctx, []string{"a.kubeconfig"}, cfgs); err == nil || !strings.Contains(err.Error(), "a.kubeconfig: the cluster has not joined") {
		t.Fatalf("Connect to a cluster that has not joined: %v", err)
	}
	any, err := ConnectAny(ctx, []string{"a.kubeconfig"}, cfgs)
	if err != nil || len(any) != 1 || any[0].ID != "" || any[0].Name() != "a.kubeconfig" {
		t.Fatalf("ConnectAny: %v %+v", err, any)
	}
	c := any[0].Client
	if err := c.Create(ctx, &aboutv1beta1.ClusterProperty{ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterIDPropertyName},
		Spec: aboutv1beta1.ClusterPropertySpec{Value: "c1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, []string{"a", "b"}, []*rest.Config{env.Config, env.Config}); err == nil || !strings.Contains(err.Error(), "a and b are the same cluster c1") {
		t.Fatalf("the same cluster twice: %v", err)
	}
	cs, err := Connect(ctx, []string{"a"}, cfgs)
	if err != nil || cs[0].ID != "c1" {
		t.Fatalf("Connect: %v", err)
	}

	// Nodes: two gateways (n2 active), a control-plane node with a
	// NoSchedule taint, a NotReady one, and one ordinary node.
	node := func(name string, gateway, ready bool, taint bool) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		if gateway {
			n.Labels[GatewayLabel] = "true"
		}
		if taint {
			n.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}
		}
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		// The TaintNodesByCondition admission plugin gave the node the
		// not-ready taint, which the node lifecycle controller (not
		// running here) takes away once the node is Ready.
		if !taint {
			n.Spec.Taints = nil
			if err := c.Update(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
		if err := c.Status().Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	node("a-cp", false, true, true)
	node("b-notready", false, false, false)
	node("n1", true, true, false)
	node("n2", true, true, false)
	node("z-worker", false, true, false)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n1", "n2"} {
		gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.ComponentNamespace}}
		if err := c.Create(ctx, gw); err != nil {
			t.Fatal(err)
		}
		gw.Status.HAStatus = v1.HAStatusPassive
		if name == "n2" {
			gw.Status.HAStatus = v1.HAStatusActive
		}
		if err := c.Status().Update(ctx, gw); err != nil {
			t.Fatal(err)
		}
	}
	n, err := FindNodes(ctx, cs[0])
	if err != nil {
		t.Fatal(err)
	}
	if n.ActiveGateway != "n2" || strings.Join(n.Gateways, ",") != "n1,n2" || n.NonGateway != "z-worker" ||
		n.Node(OnGateway) != "n2" || n.Node(OffGateway) != "z-worker" {
		t.Fatalf("FindNodes: %+v", n)
	}
}
