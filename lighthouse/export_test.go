package lighthouse

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/pkg/syncer"
)

// TestSameRecord: the exporter skips a write only when the cached record
// already says everything it would write; a wrong "same" would leave a
// stale record at the broker.
func TestSameRecord(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	se := &mcsv1beta1.ServiceExport{Spec: mcsv1beta1.ServiceExportSpec{ExportedLabels: map[string]string{"team": "shop"}}}
	want, err := ExportRecord(svc, se, "c1", "strait-system")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(cur *mcsv1beta1.ServiceImport)
		same bool
	}{
		{"identical", func(*mcsv1beta1.ServiceImport) {}, true},
		{"the syncer's stamp and another's label", func(cur *mcsv1beta1.ServiceImport) {
			cur.Annotations[syncer.BrokerCreatedAtAnnotation] = "2026-12-01T00:00:00Z"
			cur.Labels["someone"] = "else"
		}, true},
		{"a port added", func(cur *mcsv1beta1.ServiceImport) {
			cur.Spec.Ports = append(cur.Spec.Ports, mcsv1beta1.ServicePort{Name: "x", Port: 81, Protocol: corev1.ProtocolTCP})
		}, false},
		{"exported labels gone", func(cur *mcsv1beta1.ServiceImport) { delete(cur.Annotations, ExportedLabelsAnnotation) }, false},
		{"a traffic policy we no longer write", func(cur *mcsv1beta1.ServiceImport) { cur.Annotations[TrafficPolicyAnnotation] = "Balanced" }, false},
		{"one of our labels changed", func(cur *mcsv1beta1.ServiceImport) { cur.Labels[OriginNameLabel] = "other" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := want.DeepCopy()
			tc.edit(cur)
			if got := sameExportRecord(cur, want); got != tc.same {
				t.Errorf("sameExportRecord = %v, want %v", got, tc.same)
			}
		})
	}

	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "shop"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	wantSlice := SliceRecord(slice, "web", "c1", "strait-system")
	for _, tc := range []struct {
		name string
		edit func(cur *discoveryv1.EndpointSlice)
		same bool
	}{
		{"identical", func(*discoveryv1.EndpointSlice) {}, true},
		{"the syncer's stamp", func(cur *discoveryv1.EndpointSlice) {
			cur.Annotations = map[string]string{syncer.BrokerCreatedAtAnnotation: "2026-12-01T00:00:00Z"}
		}, true},
		{"an endpoint no longer ready", func(cur *discoveryv1.EndpointSlice) { cur.Endpoints[0].Conditions.Ready = ptr.To(false) }, false},
		{"another address", func(cur *discoveryv1.EndpointSlice) { cur.Endpoints[0].Addresses = []string{"10.1.0.6"} }, false},
		{"no endpoints", func(cur *discoveryv1.EndpointSlice) { cur.Endpoints = nil }, false},
		{"a port added", func(cur *discoveryv1.EndpointSlice) {
			cur.Ports = append(cur.Ports, discoveryv1.EndpointPort{Name: ptr.To("x"), Port: ptr.To[int32](1)})
		}, false},
	} {
		t.Run("slice "+tc.name, func(t *testing.T) {
			cur := wantSlice.DeepCopy()
			tc.edit(cur)
			if got := sameSliceRecord(cur, wantSlice); got != tc.same {
				t.Errorf("sameSliceRecord = %v, want %v", got, tc.same)
			}
		})
	}
}
