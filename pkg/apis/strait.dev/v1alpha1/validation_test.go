package v1alpha1_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// These tests run against a real kube-apiserver: the schema and its CEL rules
// are what is under test, and only the apiserver evaluates them.

const ns = "strait-system"

const testPublicKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="

func newClient(t *testing.T) client.Client {
	t.Helper()
	env := kubetest.New(t, kubetest.Options{})
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func validCluster(id string) *v1.Cluster {
	return &v1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: ns},
		Spec: v1.ClusterSpec{
			ClusterID:    v1.ClusterID(id),
			PodCIDRs:     []v1.CIDR{"10.1.0.0/16", "fd00:10:1::/56"},
			ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"},
			Topology:     v1.Topology{Region: "eu-west", Zone: "eu-west-1a"},
		},
	}
}

func validEndpoint(name string) *v1.Endpoint {
	return &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.EndpointSpec{
			ClusterID:        "c1",
			Hostname:         "c1-node1",
			PrivateIPs:       v1.DualStackIPs{"192.168.1.10", "fd00:192:168::10"},
			PublicIPs:        v1.DualStackIPs{"203.0.113.10"},
			NATTraversal:     true,
			NATDiscoveryPort: 4490,
			Subnets:          []v1.CIDR{"10.1.0.0/16", "10.101.0.0/16"},
			CableDriver:      v1.CableDriverWireGuard,
			WireGuard:        &v1.WireGuardConfig{PublicKey: testPublicKey, Port: 4500},
			HealthCheckIPs:   v1.DualStackIPs{"10.1.0.1"},
		},
	}
}

// wantInvalid asserts err is an Invalid error whose message names field and
// contains every fragment.
func wantInvalid(t *testing.T, err error, field string, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("apiserver accepted the object; want it rejected at %s", field)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want an Invalid error, got %v", err)
	}
	msg := err.Error()
	t.Logf("rejected: %s", msg)
	for _, f := range append([]string{field}, fragments...) {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}

func TestSchemaValidation(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()

	t.Run("valid objects are accepted", func(t *testing.T) {
		if err := c.Create(ctx, validCluster("c1")); err != nil {
			t.Fatalf("create valid Cluster: %v", err)
		}
		if err := c.Create(ctx, validEndpoint("c1-node1")); err != nil {
			t.Fatalf("create valid Endpoint: %v", err)
		}
		vx := validEndpoint("c1-vxlan")
		vx.Spec.CableDriver = v1.CableDriverVXLAN
		vx.Spec.WireGuard = nil
		vx.Spec.VXLAN = &v1.VXLANConfig{VNI: 100, Port: 4800}
		vx.Spec.PrivateIPs = v1.DualStackIPs{"2001:db8::10"}
		if err := c.Create(ctx, vx); err != nil {
			t.Fatalf("create valid IPv6-only vxlan Endpoint: %v", err)
		}
	})

	clusterCases := []struct {
		name      string
		mutate    func(*v1.Cluster)
		field     string
		fragments []string
	}{
		{"malformed pod CIDR", func(c *v1.Cluster) { c.Spec.PodCIDRs = []v1.CIDR{"10.1.0.0/33"} },
			"spec.podCIDRs[0]", []string{"invalid CIDR 10.1.0.0/33", "10.1.0.0/16"}},
		{"garbage service CIDR", func(c *v1.Cluster) { c.Spec.ServiceCIDRs = []v1.CIDR{"10.101.0.0/16", "not-a-cidr"} },
			"spec.serviceCIDRs[1]", []string{"invalid CIDR not-a-cidr"}},
		{"host bits set", func(c *v1.Cluster) { c.Spec.PodCIDRs = []v1.CIDR{"10.1.2.3/16"} },
			"spec.podCIDRs[0]", []string{"not in canonical form: host bits must be zero"}},
		{"non-canonical IPv6 prefix", func(c *v1.Cluster) { c.Spec.PodCIDRs = []v1.CIDR{"FD00:0:0:0::/64"} },
			"spec.podCIDRs[0]", []string{"FD00:0:0:0::/64 is not in canonical form"}},
		{"no pod CIDRs", func(c *v1.Cluster) { c.Spec.PodCIDRs = nil },
			"spec.podCIDRs", nil},
		{"cluster ID not a DNS label", func(c *v1.Cluster) { c.Name = "c-1"; c.Spec.ClusterID = "C_1" },
			"spec.clusterID", []string{"RFC 1123 label"}},
		{"name differs from cluster ID", func(c *v1.Cluster) { c.Name = "other" },
			"metadata.name must equal spec.clusterID", nil},
	}
	for _, tc := range clusterCases {
		t.Run("Cluster/"+tc.name, func(t *testing.T) {
			obj := validCluster("c2")
			tc.mutate(obj)
			wantInvalid(t, c.Create(ctx, obj), tc.field, tc.fragments...)
		})
	}

	endpointCases := []struct {
		name      string
		mutate    func(*v1.Endpoint)
		field     string
		fragments []string
	}{
		{"malformed private IP", func(e *v1.Endpoint) { e.Spec.PrivateIPs = v1.DualStackIPs{"192.168.1.300"} },
			"spec.privateIPs[0]", []string{"invalid IP address 192.168.1.300"}},
		{"non-canonical IPv6", func(e *v1.Endpoint) { e.Spec.PublicIPs = v1.DualStackIPs{"2001:DB8:0::1"} },
			"spec.publicIPs[0]", []string{"2001:DB8:0::1 is not in canonical form"}},
		{"two addresses of one family", func(e *v1.Endpoint) { e.Spec.PrivateIPs = v1.DualStackIPs{"192.168.1.10", "192.168.1.11"} },
			"spec.privateIPs", []string{"at most one address of each IP family"}},
		{"malformed subnet", func(e *v1.Endpoint) { e.Spec.Subnets = []v1.CIDR{"10.1.0.0"} },
			"spec.subnets[0]", []string{"invalid CIDR 10.1.0.0"}},
		{"wireguard without key", func(e *v1.Endpoint) { e.Spec.WireGuard = nil },
			"spec", []string{"a wireguard endpoint needs spec.wireguard"}},
		{"bad public key", func(e *v1.Endpoint) { e.Spec.WireGuard.PublicKey = "not-a-key" },
			"spec.wireguard.publicKey", []string{"must be a WireGuard public key"}},
		{"unknown cable driver", func(e *v1.Endpoint) { e.Spec.CableDriver = "ipsec" },
			"spec.cableDriver", []string{"wireguard", "vxlan"}},
		{"port out of range", func(e *v1.Endpoint) { e.Spec.WireGuard.Port = 70000 },
			"spec.wireguard.port", nil},
	}
	for _, tc := range endpointCases {
		t.Run("Endpoint/"+tc.name, func(t *testing.T) {
			obj := validEndpoint("bad")
			tc.mutate(obj)
			wantInvalid(t, c.Create(ctx, obj), tc.field, tc.fragments...)
		})
	}

	t.Run("cluster ID is immutable", func(t *testing.T) {
		cur := &v1.Cluster{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "c1"}, cur); err != nil {
			t.Fatal(err)
		}
		cur.Spec.ClusterID = "c9"
		wantInvalid(t, c.Update(ctx, cur), "spec.clusterID", "clusterID is immutable")
	})
}

func TestGatewayStatusSubresource(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()

	gw := &v1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "c1-node1", Namespace: ns},
		Status:     v1.GatewayStatus{HAStatus: v1.HAStatusActive},
	}
	if err := c.Create(ctx, gw); err != nil {
		t.Fatalf("create Gateway: %v", err)
	}
	if gw.Status.HAStatus != "" {
		t.Fatalf("create stored status %q; the status subresource should drop it", gw.Status.HAStatus)
	}

	gw.Status = v1.GatewayStatus{
		HAStatus:      v1.HAStatusActive,
		LocalEndpoint: "c1-node1",
		Connections: []v1.Connection{{
			ClusterID: "c2",
			Endpoint:  "c2-node1",
			Status:    v1.Connected,
			UsingIP:   "198.51.100.7",
			UsingNAT:  true,
			LatencyRTT: &v1.LatencyRTT{
				Last:    metav1.Duration{Duration: 800 * time.Microsecond},
				Min:     metav1.Duration{Duration: 500 * time.Microsecond},
				Average: metav1.Duration{Duration: 700 * time.Microsecond},
				Max:     metav1.Duration{Duration: 2 * time.Millisecond},
			},
		}},
	}
	if err := c.Status().Update(ctx, gw); err != nil {
		t.Fatalf("update Gateway status: %v", err)
	}

	got := &v1.Gateway{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(gw), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.HAStatus != v1.HAStatusActive || len(got.Status.Connections) != 1 ||
		got.Status.Connections[0].LatencyRTT.Max.Duration != 2*time.Millisecond {
		t.Fatalf("status after status update = %+v", got.Status)
	}

	// A write to the main resource must not change status.
	got.Status.HAStatus = v1.HAStatusPassive
	got.Labels = map[string]string{"touched": "yes"}
	if err := c.Update(ctx, got); err != nil {
		t.Fatalf("update Gateway: %v", err)
	}
	after := &v1.Gateway{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(gw), after); err != nil {
		t.Fatal(err)
	}
	if after.Labels["touched"] != "yes" {
		t.Fatalf("main-resource update lost its label change")
	}
	if after.Status.HAStatus != v1.HAStatusActive {
		t.Fatalf("main-resource update changed status to %q", after.Status.HAStatus)
	}

	// Status is validated too.
	after.Status.Connections[0].Status = "flapping"
	err := c.Status().Update(ctx, after)
	wantInvalid(t, err, "status.connections[0].status", "connected", "connecting", "error")
}
