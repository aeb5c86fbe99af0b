package node

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The host-gw routes to another node: each of its pod CIDRs via its
// InternalIP of the same family, whatever order the addresses come in.
func TestPodRoutes(t *testing.T) {
	node := func(cidrs []string, addrs ...string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}
		if len(cidrs) > 0 {
			n.Spec.PodCIDR = cidrs[0]
		}
		n.Spec.PodCIDRs = cidrs
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n2"})
		return n
	}
	for _, tc := range []struct {
		name string
		n    *corev1.Node
		want string
	}{
		{"ipv4", node([]string{"10.1.1.0/24"}, "192.168.1.12"), "map[10.1.1.0/24:192.168.1.12]"},
		{"ipv6", node([]string{"fd00:10:1:1::/64"}, "fd00:192:168:1::12"), "map[fd00:10:1:1::/64:fd00:192:168:1::12]"},
		{"dual", node([]string{"10.1.1.0/24", "fd00:10:1:1::/64"}, "192.168.1.12", "fd00:192:168:1::12"),
			"map[10.1.1.0/24:192.168.1.12 fd00:10:1:1::/64:fd00:192:168:1::12]"},
		{"dual, IPv6 address listed first", node([]string{"10.1.1.0/24", "fd00:10:1:1::/64"}, "fd00:192:168:1::12", "192.168.1.12"),
			"map[10.1.1.0/24:192.168.1.12 fd00:10:1:1::/64:fd00:192:168:1::12]"},
		{"dual CIDRs, one family's address only", node([]string{"10.1.1.0/24", "fd00:10:1:1::/64"}, "192.168.1.12"), "map[10.1.1.0/24:192.168.1.12]"},
		{"no pod CIDR yet", node(nil, "192.168.1.12"), "map[]"},
	} {
		if got := fmt.Sprint(podRoutes(tc.n)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
