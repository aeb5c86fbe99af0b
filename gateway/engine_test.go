package gateway_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// recorder is a Dataplane that remembers the last remote set, safely.
type recorder struct {
	mu   sync.Mutex
	last []string
}

func (r *recorder) Close() error { return nil }

func (r *recorder) Set(_ context.Context, _ gateway.Local, remotes []v1.Endpoint) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = nil
	for _, e := range remotes {
		r.last = append(r.last, e.Name)
	}
	return nil
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.last...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEngineElectsPublishesAndFailsOver runs two gateway engines of cluster
// c1 against real apiservers (the member's and the broker's).
func TestEngineElectsPublishesAndFailsOver(t *testing.T) {
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	memberEnv := kubetest.New(t, kubetest.Options{})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatal(err)
	}
	member := func(id, pods, svcs string) broker.Member {
		return broker.Member{ClusterID: id, ClusterUID: id, PodCIDRs: []netip.Prefix{netip.MustParsePrefix(pods)}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(svcs)}}
	}
	c1Token, err := broker.Enroll(ctx, info, member("c1", "10.1.0.0/16", "10.101.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	c2Token, err := broker.Enroll(ctx, info, member("c2", "10.2.0.0/16", "10.102.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := client.New(memberEnv.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := client.New(brokerEnv.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	if err := mc.Create(ctx, broker.CredentialSecret(v1.ComponentNamespace, info, c1Token)); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"node-a", "node-b"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{corev1.LabelTopologyRegion: "eu"},
			Annotations: map[string]string{gateway.PublicIPAnnotation: "198.18.1." + string(rune('1'+i))}}}
		if err := mc.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1." + string(rune('1'+i))}}
		if err := mc.Status().Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}

	type running struct {
		rec    *recorder
		cancel context.CancelFunc
		done   chan error
	}
	start := func(node string) *running {
		r := &running{rec: &recorder{}, done: make(chan error, 1)}
		e, err := gateway.New(memberEnv.Config, gateway.Config{
			ClusterID: "c1", Namespace: v1.ComponentNamespace, NodeName: node,
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")},
			CableDriver: v1.CableDriverWireGuard, WireGuardPort: 4500, NATDiscoveryPort: 4490,
			BrokerSecret: broker.SecretName, Dataplane: r.rec,
			Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(context.Background())
		go func() { r.done <- e.Run(ctx) }()
		t.Cleanup(func() { r.cancel(); <-r.done })
		return r
	}
	engines := map[string]*running{"node-a": start("node-a"), "node-b": start("node-b")}

	roles := func() (active, passive []string) {
		var gws v1.GatewayList
		_ = mc.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace))
		for _, g := range gws.Items {
			switch g.Status.HAStatus {
			case v1.HAStatusActive:
				active = append(active, g.Name)
			case v1.HAStatusPassive:
				passive = append(passive, g.Name)
			}
		}
		return active, passive
	}
	var first string
	waitUntil(t, "one active and one passive gateway", func() bool {
		a, p := roles()
		if len(a) == 1 && len(p) == 1 {
			first = a[0]
			return true
		}
		return false
	})
	brokerEndpoints := func() []string {
		var eps v1.EndpointList
		_ = bc.List(ctx, &eps, client.InNamespace(info.Namespace))
		var names []string
		for _, e := range eps.Items {
			names = append(names, e.Name)
		}
		return names
	}
	waitUntil(t, "the active gateway's Endpoint at the broker", func() bool {
		got := brokerEndpoints()
		return len(got) == 1 && got[0] == "c1-"+first
	})
	ep := &v1.Endpoint{}
	if err := bc.Get(ctx, client.ObjectKey{Namespace: info.Namespace, Name: "c1-" + first}, ep); err != nil {
		t.Fatal(err)
	}
	if ep.Spec.WireGuard == nil || ep.Spec.WireGuard.Port != 4500 || len(ep.Spec.PublicIPs) != 1 || len(ep.Spec.Subnets) != 2 {
		t.Errorf("published Endpoint %+v", ep.Spec)
	}
	// The Cluster is synced on its own, perhaps a moment after the Endpoint.
	var cl v1.Cluster
	waitUntil(t, "the Cluster at the broker", func() bool {
		return bc.Get(ctx, client.ObjectKey{Namespace: info.Namespace, Name: "c1"}, &cl) == nil
	})
	if cl.Spec.Topology.Region != "eu" || len(cl.Spec.PodCIDRs) != 1 {
		t.Errorf("published Cluster: %+v", cl.Spec)
	}
	// The private key stays in the cluster, never in the Endpoint.
	var secret corev1.Secret
	if err := mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-wireguard-" + first}, &secret); err != nil || len(secret.Data["privateKey"]) == 0 {
		t.Errorf("WireGuard key Secret: %v", err)
	}

	// A remote cluster's Endpoint reaches the active gateway's data plane.
	c2, err := client.New(info.RESTConfig(c2Token), client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	remote := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: "c2-gw", Namespace: info.Namespace, Labels: map[string]string{v1.ClusterIDLabel: "c2"}},
		Spec: v1.EndpointSpec{ClusterID: "c2", Hostname: "gw", PrivateIPs: v1.DualStackIPs{"192.168.2.1"}, Subnets: []v1.CIDR{"10.2.0.0/16"},
			CableDriver: v1.CableDriverVXLAN, VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800}},
	}
	if err := c2.Create(ctx, remote); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the remote Endpoint in the active data plane", func() bool {
		got := engines[first].rec.get()
		return len(got) == 1 && got[0] == "c2-gw"
	})
	other := "node-a"
	if first == "node-a" {
		other = "node-b"
	}
	if got := engines[other].rec.get(); len(got) != 0 {
		t.Errorf("the passive gateway's data plane was given %v", got)
	}

	// Failover: stop the active engine; the standby takes over and
	// republishes; the old Endpoint goes from the broker.
	engines[first].cancel()
	<-engines[first].done
	engines[first].done <- nil // for the cleanup
	waitUntil(t, other+" active and "+first+"'s Endpoint replaced at the broker", func() bool {
		a, _ := roles()
		got := brokerEndpoints()
		hasNew, hasOld := false, false
		for _, n := range got {
			hasNew = hasNew || n == "c1-"+other
			hasOld = hasOld || n == "c1-"+first
		}
		return len(a) == 1 && a[0] == other && hasNew && !hasOld
	})
	waitUntil(t, "the remote Endpoint in the new active data plane", func() bool {
		got := engines[other].rec.get()
		return len(got) == 1 && got[0] == "c2-gw"
	})
}
