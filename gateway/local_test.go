package gateway

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// The local Endpoint from a Node: addresses of both families, NAT when the
// public address is not the host's own, a health-check address per pod
// CIDR family, and the driver's part from its descriptor.
func TestLocalEndpointFor(t *testing.T) {
	cfg := Config{ClusterID: "c1", Namespace: "ns", NodeName: "gw1", NATDiscoveryPort: 4490,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/56")}}
	node := func(addrs []string, public string, podCIDRs ...string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gw1", Annotations: map[string]string{}}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
		if public != "" {
			n.Annotations[PublicIPAnnotation] = public
		}
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		return n
	}
	own := func(a netip.Addr) bool {
		return a == netip.MustParseAddr("192.168.1.1") || a == netip.MustParseAddr("2001:db8::1")
	}
	for _, tc := range []struct {
		name string
		desc cabledriver.Descriptor
		s    cabledriver.Settings
		node *corev1.Node
		want string
	}{
		{"IPv4, public address is the node's own", cabledriver.WireGuard, cabledriver.Settings{Port: 4500},
			node([]string{"192.168.1.1"}, "", "10.1.3.0/24"),
			"private [192.168.1.1] public [192.168.1.1] nat false health [10.1.3.1] subnets [10.1.0.0/16 fd00:1::/56] wireguard &{PublicKey:PUB Port:4500} vxlan <nil>"},
		{"dual stack behind NAT, VXLAN", cabledriver.VXLAN, cabledriver.Settings{Port: 4800, VNI: 9},
			node([]string{"2001:db8::1", "192.168.1.1"}, "198.51.100.1", "fd00:1:0:3::/64", "10.1.3.0/24"),
			"private [2001:db8::1 192.168.1.1] public [198.51.100.1] nat true health [fd00:1:0:3::1 10.1.3.1] subnets [10.1.0.0/16 fd00:1::/56] wireguard <nil> vxlan &{VNI:9 Port:4800}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, err := localEndpointFor(cfg, tc.desc, tc.node, tc.s, "PUB", own)
			if err != nil {
				t.Fatal(err)
			}
			s := ep.Spec
			got := fmt.Sprintf("private %v public %v nat %v health %v subnets %v wireguard %+v vxlan %+v", s.PrivateIPs, s.PublicIPs, s.NATTraversal, s.HealthCheckIPs, s.Subnets, s.WireGuard, s.VXLAN)
			if got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
			if ep.Name != "c1.gw1" || ep.Labels[v1.ClusterIDLabel] != "c1" || s.CableDriver != tc.desc.Name {
				t.Errorf("metadata %s %v, driver %s", ep.Name, ep.Labels, s.CableDriver)
			}
		})
	}
	// Globalnet: the global CIDR alone is routed to the cluster, and the
	// health checks use its second address.
	gn := cfg
	gn.GlobalCIDR = netip.MustParsePrefix("242.1.0.0/16")
	ep, err := localEndpointFor(gn, cabledriver.WireGuard, node([]string{"192.168.1.1"}, "", "10.1.3.0/24"), cabledriver.Settings{Port: 4500}, "PUB", own)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprintf("health %v subnets %v", ep.Spec.HealthCheckIPs, ep.Spec.Subnets), "health [242.1.0.1] subnets [242.1.0.0/16]"; got != want {
		t.Errorf("with a global CIDR: got %s, want %s", got, want)
	}
	if _, err := localEndpointFor(cfg, cabledriver.WireGuard, node(nil, ""), cabledriver.Settings{}, "", own); err == nil {
		t.Error("a node without an InternalIP gave an Endpoint")
	}
	if _, err := localEndpointFor(cfg, cabledriver.WireGuard, node([]string{"192.168.1.1"}, "bad"), cabledriver.Settings{}, "", own); err == nil {
		t.Error("a malformed public-ip annotation gave an Endpoint")
	}
}
