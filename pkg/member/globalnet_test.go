package member_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/test/kubetest"
)

// join --globalnet end to end: a cluster whose CIDRs equal another
// Globalnet member's joins only with Globalnet, its gateway gets the
// global CIDR the broker allotted, joining again keeps it, and leave
// gives it back.
func TestJoinLeaveGlobalnet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	startControllers(t, env)
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	pods, svcs := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")}
	other, err := broker.EnrollMember(ctx, info, broker.Member{ClusterID: "c2", ClusterUID: "uid-c2",
		PodCIDRs: pods, ServiceCIDRs: svcs, Globalnet: true})
	if err != nil || other.GlobalCIDR.String() != "242.0.0.0/16" {
		t.Fatalf("enrol c2: %v, %+v", err, other)
	}
	c := newClient(t, env.Config)
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	opts := member.JoinOptions{
		ClusterID: clusterID, CableDriver: v1.CableDriverVXLAN, GatewayNodes: []string{"n1"},
		PodCIDRs: pods, ServiceCIDRs: svcs, ImageRepository: "strait", ImageTag: "devel",
	}
	err = member.Join(ctx, env.Config, info, opts)
	var conflict *broker.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("join without --globalnet, CIDRs of a Globalnet member: %v, want a conflict", err)
	}
	for _, want := range []string{"10.1.0.0/16", clusterID, "c2", "c2 uses Globalnet, c1 does not"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	opts.Globalnet, opts.GlobalCIDRSize = true, 4096
	if err := member.Join(ctx, env.Config, info, opts); err != nil {
		t.Fatalf("join --globalnet: %v", err)
	}
	const want = "242.1.0.0/20" // the first free /20 after c2's /16
	gateway := func() *appsv1.DaemonSet {
		ds := &appsv1.DaemonSet{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, ds); err != nil {
			t.Fatal(err)
		}
		return ds
	}
	ds := gateway()
	if args := ds.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--global-cidr="+want) {
		t.Fatalf("gateway args %v, want --global-cidr=%s", args, want)
	}
	bcs := kubernetes.NewForConfigOrDie(env.Config)
	allocs := func() map[string]string {
		cm, err := bcs.CoreV1().ConfigMaps(v1.BrokerNamespace).Get(ctx, broker.GlobalnetConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data
	}
	if got := allocs()[clusterID]; got != want {
		t.Fatalf("the broker holds %q for %s, want %s", got, clusterID, want)
	}

	if err := member.Join(ctx, env.Config, info, opts); err != nil {
		t.Fatalf("join --globalnet again: %v", err)
	}
	if again := gateway(); again.ResourceVersion != ds.ResourceVersion {
		t.Errorf("joining again changed the gateway DaemonSet: %v", again.Spec.Template.Spec.Containers[0].Args)
	}

	if err := member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	got := allocs()
	if _, ok := got[clusterID]; ok || got["c2"] != "242.0.0.0/16" {
		t.Errorf("blocks after %s left: %v; want only c2's", clusterID, got)
	}
}

// An underlay MTU out of range is refused before join touches anything.
func TestJoinRefusesUnderlayMTUOutOfRange(t *testing.T) {
	t.Parallel()
	for _, mtu := range []int{575, 65536, -1} {
		err := member.Join(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, &broker.Info{}, member.JoinOptions{
			ClusterID: "c1", CableDriver: "wireguard", ImageRepository: "strait", ImageTag: "test", UnderlayMTU: mtu})
		if err == nil || !strings.Contains(err.Error(), "underlay MTU") {
			t.Errorf("underlay MTU %d: %v, want a refusal", mtu, err)
		}
	}
}
