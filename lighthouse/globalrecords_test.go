package lighthouse

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The Globalnet records: the Service's ports and one endpoint for a
// ClusterIP Service; per-pod global IPs of the slice's family for a
// headless one, the ready pods without one named.
func TestGlobalRecords(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), AppProtocol: ptr.To("http")},
		{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns")},
	}}}
	rec := GlobalServiceRecord(svc, netip.MustParseAddr("242.1.0.9"), false, "c2", "strait-system")
	var ports []string
	for _, p := range rec.Ports {
		ports = append(ports, fmt.Sprintf("%s/%s/%d/%s", *p.Name, *p.Protocol, *p.Port, ptr.Deref(p.AppProtocol, "")))
	}
	if rec.Name != SliceRecordName("web", "app", "c2", GlobalSliceName) || rec.AddressType != discoveryv1.AddressTypeIPv4 ||
		!slices.Equal(ports, []string{"http/TCP/80/http", "dns/UDP/53/"}) || len(rec.Endpoints) != 1 ||
		rec.Endpoints[0].Addresses[0] != "242.1.0.9" || ptr.Deref(rec.Endpoints[0].Conditions.Ready, true) ||
		rec.Labels[OriginNameLabel] != "web" || rec.Labels[OriginNamespaceLabel] != "app" {
		t.Errorf("ClusterIP record %s %s ports %v endpoints %+v labels %v", rec.Name, rec.AddressType, ports, rec.Endpoints, rec.Labels)
	}

	pod := func(name, ip string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
			Hostname: ptr.To(name), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: name}}
	}
	v4 := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db-abc"}, AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{pod("db-0", "10.1.0.7", true), pod("db-1", "10.1.0.8", true), pod("db-2", "10.1.0.9", false)}}
	v6 := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db-def"}, AddressType: discoveryv1.AddressTypeIPv6,
		Endpoints: []discoveryv1.Endpoint{pod("db-0", "fd00::7", true)}}
	global := map[string]netip.Addr{"db-0": netip.MustParseAddr("242.1.0.20")}
	for _, tc := range []struct {
		slice         *discoveryv1.EndpointSlice
		addrs, missed []string
	}{
		// db-1 is ready without a global IP; db-2 is not ready.
		{v4, []string{"242.1.0.20"}, []string{"db-1"}},
		// An IPv4 global IP is no address of an IPv6 slice.
		{v6, nil, []string{"db-0"}},
	} {
		rec, missing := GlobalHeadlessRecord(tc.slice, "db", "c2", "strait-system", global)
		var addrs []string
		for _, ep := range rec.Endpoints {
			addrs = append(addrs, ep.Addresses...)
			if ep.TargetRef != nil || ptr.Deref(ep.Hostname, "") != "db-0" {
				t.Errorf("%s: endpoint %+v", tc.slice.Name, ep)
			}
		}
		if !slices.Equal(addrs, tc.addrs) || !slices.Equal(missing, tc.missed) {
			t.Errorf("%s: addresses %v missing %v, want %v and %v", tc.slice.Name, addrs, missing, tc.addrs, tc.missed)
		}
	}
}
