package gateway

import (
	"context"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/test/kubetest"
)

// nopDataplane takes every state and does nothing with it.
type nopDataplane struct{}

func (nopDataplane) Set(context.Context, CableState) error { return nil }
func (nopDataplane) Close() error                          { return nil }

var _ Dataplane = nopDataplane{}

// TestDemoteKeepsNewerWrites runs demote on a real apiserver: given the
// Gateway as it was read, it shows it passive with a Ready condition naming
// the Lease holder; given a copy older than the stored object (its gateway
// wrote since, as one that really became active again would), it writes
// nothing and is no error.
func TestDemoteKeepsNewerWrites(t *testing.T) {
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{})
	e, err := New(env.Config, Config{ClusterID: "c1", Namespace: v1.ComponentNamespace, NodeName: "node-b",
		CableDriver: v1.CableDriverWireGuard, Cable: cabledriver.Settings{Port: 4500}, Dataplane: nopDataplane{},
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	// node-a's engine says active, as it does while it holds the Lease.
	a, err := New(env.Config, Config{ClusterID: "c1", Namespace: v1.ComponentNamespace, NodeName: "node-a",
		CableDriver: v1.CableDriverWireGuard, Cable: cabledriver.Settings{Port: 4500}, Dataplane: nopDataplane{},
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.writeStatus(ctx, v1.HAStatusActive, "c1-node-a", nil); err != nil {
		t.Fatal(err)
	}
	read := func() *v1.Gateway {
		t.Helper()
		var gw v1.Gateway
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "node-a"}, &gw); err != nil {
			t.Fatal(err)
		}
		return &gw
	}
	lease := leaseInfo{holder: "node-b", epoch: 3}

	stale := read()
	// node-a writes again (it became active again, in a later epoch, with
	// another Endpoint).
	if err := a.writeStatus(ctx, v1.HAStatusActive, "c1-node-a-again", nil); err != nil {
		t.Fatal(err)
	}
	if fresh := read(); fresh.ResourceVersion == stale.ResourceVersion {
		t.Fatal("node-a's second write did not change the object; the test proves nothing")
	}
	if err := e.demote(ctx, stale, lease); err != nil {
		t.Fatalf("demote of a stale copy: %v, want no error", err)
	}
	if got := read(); got.Status.HAStatus != v1.HAStatusActive || got.Status.LocalEndpoint != "c1-node-a-again" {
		t.Fatalf("demote of a stale copy overwrote the newer status: %+v", got.Status)
	}

	if err := e.demote(ctx, read(), lease); err != nil {
		t.Fatal(err)
	}
	got := read()
	ready := meta.FindStatusCondition(got.Status.Conditions, "Ready")
	if got.Status.HAStatus != v1.HAStatusPassive || got.Status.LocalEndpoint != "" || ready == nil ||
		ready.Status != metav1.ConditionUnknown || ready.Reason != reasonNotLeaseHolder {
		t.Fatalf("status after demote: %+v", got.Status)
	}
	const want = "not active: gateway node-b holds the gateway Lease strait-system/strait-gateway (epoch 3); this gateway's engine has not reported since it lost it"
	if ready.Message != want {
		t.Errorf("Ready message %q, want %q", ready.Message, want)
	}

	// node-a's engine, back (restarted, or active again), writes its own
	// status over the demotion: the apply takes the fields back.
	if err := a.writeStatus(ctx, v1.HAStatusPassive, "", nil); err != nil {
		t.Fatal(err)
	}
	got = read()
	if ready := meta.FindStatusCondition(got.Status.Conditions, "Ready"); ready == nil || ready.Status != metav1.ConditionTrue || got.Status.HAStatus != v1.HAStatusPassive {
		t.Errorf("node-a's own status after the demotion: %+v", got.Status)
	}
}
