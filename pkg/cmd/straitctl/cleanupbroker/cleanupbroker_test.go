package cleanupbroker_test

import (
	"bytes"
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cmd/straitctl"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// endpoint is an Endpoint record of cluster id at the broker.
func endpoint(ns, id string) *v1.Endpoint {
	return &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: id + "-gw", Namespace: ns, Labels: map[string]string{v1.ClusterIDLabel: id}},
		Spec: v1.EndpointSpec{
			ClusterID: v1.ClusterID(id), Hostname: id + "-gw", PrivateIPs: v1.DualStackIPs{"192.168.1.11"},
			Subnets: []v1.CIDR{"10.1.0.0/16"}, CableDriver: v1.CableDriverVXLAN, VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800},
		},
	}
}

// cleanup-broker, run with the broker cluster's kubeconfig, removes one
// member's records and enrolment, and nothing of another member's.
func TestCleanupBroker(t *testing.T) {
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	const ns = "other"
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"c1", "c2"} {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 0}), 16)
		s := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i + 101), 0, 0}), 16)
		if _, err := broker.Enroll(ctx, info, broker.Member{ClusterID: id, ClusterUID: "uid-" + id, PodCIDRs: []netip.Prefix{p}, ServiceCIDRs: []netip.Prefix{s}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, endpoint(ns, id)); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := filepath.Join(t.TempDir(), "broker.kubeconfig")
	if err := kubetest.WriteKubeconfig(kubeconfig, env.Config, "broker"); err != nil {
		t.Fatal(err)
	}
	// What the enrolment of each member made: its service account and the
	// Roles and RoleBindings it owns.
	enrolment := func(id string) []client.Object {
		sa := &corev1.ServiceAccount{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: broker.MemberPrefix + id}, sa); err != nil {
			t.Fatal(err)
		}
		out := []client.Object{sa}
		var roles rbacv1.RoleList
		var bindings rbacv1.RoleBindingList
		if err := c.List(ctx, &roles, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if err := c.List(ctx, &bindings, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for i := range roles.Items {
			if len(roles.Items[i].OwnerReferences) > 0 && roles.Items[i].OwnerReferences[0].UID == sa.UID {
				out = append(out, &roles.Items[i])
			}
		}
		for i := range bindings.Items {
			if len(bindings.Items[i].OwnerReferences) > 0 && bindings.Items[i].OwnerReferences[0].UID == sa.UID {
				out = append(out, &bindings.Items[i])
			}
		}
		if len(out) < 3 {
			t.Fatalf("enrolment of %s: %d objects, want a service account, a Role and RoleBindings", id, len(out))
		}
		return out
	}
	c1, c2 := append(enrolment("c1"), endpoint(ns, "c1")), append(enrolment("c2"), endpoint(ns, "c2"))

	for run := range 2 { // the second run finds nothing to do
		var out, errOut bytes.Buffer
		code := straitctl.Main([]string{"cleanup-broker", "--kubeconfig", kubeconfig, "--namespace", ns, "--clusterid", "c1"}, &out, &errOut)
		if code != straitctl.ExitOK || !strings.Contains(out.String(), "removed c1 from the broker namespace other") {
			t.Fatalf("cleanup-broker (run %d): exit %d, stdout %q, stderr %q", run+1, code, out.String(), errOut.String())
		}
	}
	for _, o := range c1 {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after cleanup-broker: %v, want it gone", o, o.GetName(), err)
		}
	}
	for _, o := range c2 {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("c2's %T %s after cleaning up c1: %v", o, o.GetName(), err)
		}
	}

	var out, errOut bytes.Buffer
	if code := straitctl.Main([]string{"cleanup-broker", "--kubeconfig", kubeconfig, "--clusterid", "C_1"}, &out, &errOut); code != straitctl.ExitError || !strings.Contains(errOut.String(), "RFC 1123") {
		t.Errorf("cleanup-broker with a bad cluster ID: exit %d, stderr %q", code, errOut.String())
	}
}
