package globalnet

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// An exported Service without a selector, whose endpoints are written by
// hand: its strait-gn Service gets copies of its EndpointSlices, which
// follow the originals' changes and go with them.
func TestSelectorlessExport(t *testing.T) {
	ctx := context.Background()
	cl := newCluster(t, "242.1.0.0/27")
	cl.start(t)
	cl.create(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "ext"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}})
	src := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "ext-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "ext", discoveryv1.LabelManagedBy: "staff"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.3.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}}}
	cl.create(t, src)
	cl.create(t, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "ext"}})
	ip := cl.ingressIP(t, "svc-ext").Status.AllocatedIP
	gn := ServiceName("ext")
	mirror := func(ctx context.Context) (*discoveryv1.EndpointSlice, error) {
		var l discoveryv1.EndpointSliceList
		if err := cl.c.List(ctx, &l, client.InNamespace("app"), client.MatchingLabels{discoveryv1.LabelServiceName: gn}); err != nil || len(l.Items) != 1 {
			return nil, err
		}
		return &l.Items[0], nil
	}
	var m *discoveryv1.EndpointSlice
	wait4(t, "a copy of ext's slice for "+gn, func(ctx context.Context) (bool, error) {
		var err error
		m, err = mirror(ctx)
		return m != nil, err
	})
	var svc corev1.Service
	if err := cl.c.Get(ctx, types.NamespacedName{Namespace: "app", Name: gn}, &svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Selector) != 0 || len(svc.Spec.ExternalIPs) != 1 || svc.Spec.ExternalIPs[0] != string(ip) {
		t.Errorf("%s: selector %v, externalIPs %v; want none and [%s]", gn, svc.Spec.Selector, svc.Spec.ExternalIPs, ip)
	}
	if m.Labels[discoveryv1.LabelManagedBy] != SliceManager || m.Endpoints[0].Addresses[0] != "10.0.3.7" || *m.Ports[0].Port != 8080 {
		t.Errorf("copy %+v", m)
	}
	if o := metav1.GetControllerOf(m); o == nil || o.Kind != "Service" || o.UID != svc.UID {
		t.Errorf("copy's owner %+v, want Service %s", o, gn)
	}

	// The original changes: the copy follows.
	src.Endpoints[0].Addresses = []string{"10.0.3.9"}
	if err := cl.c.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	wait4(t, "the copy to follow the original", func(ctx context.Context) (bool, error) {
		m, err := mirror(ctx)
		return m != nil && m.Endpoints[0].Addresses[0] == "10.0.3.9", err
	})

	// The original goes: so does the copy.
	if err := cl.c.Delete(ctx, src); err != nil {
		t.Fatal(err)
	}
	wait4(t, "the copy gone", func(ctx context.Context) (bool, error) {
		var l discoveryv1.EndpointSliceList
		err := cl.c.List(ctx, &l, client.InNamespace("app"), client.MatchingLabels{discoveryv1.LabelServiceName: gn})
		return err == nil && len(l.Items) == 0, err
	})
}
