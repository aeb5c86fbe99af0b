package v1alpha1_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// TestGlobalnetSchema checks the Globalnet objects' schema and CEL rules on
// a real apiserver: defaults, bounds, the singleton's name, the headless
// target's pod.
func TestGlobalnetSchema(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()

	t.Run("ClusterGlobalEgressIP gets 8 addresses by default", func(t *testing.T) {
		o := &v1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterEgressName}}
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		if o.Spec.NumberOfIPs == nil || *o.Spec.NumberOfIPs != 8 {
			t.Errorf("numberOfIPs %v, want the default 8", o.Spec.NumberOfIPs)
		}
	})
	t.Run("ClusterGlobalEgressIP is named cluster-egress", func(t *testing.T) {
		err := c.Create(ctx, &v1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "other"}})
		wantInvalid(t, err, "", "named cluster-egress")
	})
	for _, n := range []int32{0, 21} {
		err := c.Create(ctx, &v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{GenerateName: "egress-", Namespace: ns},
			Spec: v1.GlobalEgressIPSpec{NumberOfIPs: ptr.To(n)}})
		wantInvalid(t, err, "spec.numberOfIPs")
	}
	t.Run("GlobalEgressIP gets 1 address by default", func(t *testing.T) {
		o := &v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
			Spec: v1.GlobalEgressIPSpec{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		if o.Spec.NumberOfIPs == nil || *o.Spec.NumberOfIPs != 1 {
			t.Errorf("numberOfIPs %v, want the default 1", o.Spec.NumberOfIPs)
		}
	})
	t.Run("a HeadlessServicePod GlobalIngressIP names its pod", func(t *testing.T) {
		err := c.Create(ctx, &v1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns},
			Spec: v1.GlobalIngressIPSpec{Target: v1.HeadlessServicePod, ServiceRef: v1.ObjectRef{Name: "web"}}})
		wantInvalid(t, err, "", "names its pod")
	})
	t.Run("a GlobalIngressIP's target is immutable", func(t *testing.T) {
		o := &v1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: v1.GlobalIngressIPSpec{Target: v1.ClusterIPService, ServiceRef: v1.ObjectRef{Name: "web"}}}
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		o.Spec.Target, o.Spec.PodRef = v1.HeadlessServicePod, &v1.ObjectRef{Name: "web-0"}
		wantInvalid(t, c.Update(ctx, o), "spec.target", "immutable")
	})
	t.Run("an allocated IP is canonical", func(t *testing.T) {
		o := &v1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Name: "web2", Namespace: ns},
			Spec: v1.GlobalIngressIPSpec{Target: v1.ClusterIPService, ServiceRef: v1.ObjectRef{Name: "web2"}}}
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		o.Status.AllocatedIP = "242.001.0.1"
		wantInvalid(t, c.Status().Update(ctx, o), "status.allocatedIP")
	})
}
