package gateway

import (
	"context"
	"log/slog"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/gateway/health"
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

func TestWithHealthPathMTU(t *testing.T) {
	static := []v1.Connection{
		{ClusterID: "b", Endpoint: "b-ep", Status: v1.Connecting},
		{ClusterID: "c", Endpoint: "c-ep", Status: v1.Connecting},
		{ClusterID: "d", Endpoint: "d-ep", Status: v1.Connecting},
	}
	results := map[string]health.Result{
		"b-ep": {Status: health.Connected, PathMTU: 1340},
		"c-ep": {Status: health.Connected, PathMTU: 1340},
		"d-ep": {Status: health.Connected},
	}
	got := withHealth(static, results, map[v1.ClusterID]int{"c": 1200})
	want := []struct {
		mtu int32
		src v1.PathMTUSource
	}{{1340, v1.PathMTUProbed}, {1200, v1.PathMTUOverride}, {0, ""}}
	for i, w := range want {
		if got[i].PathMTU != w.mtu || got[i].PathMTUSource != w.src {
			t.Errorf("%s: path MTU %d (%q), want %d (%q)", got[i].ClusterID, got[i].PathMTU, got[i].PathMTUSource, w.mtu, w.src)
		}
	}
	// A new figure is a change the status must be written for.
	results["b-ep"] = health.Result{Status: health.Connected, PathMTU: 1300}
	if sameStates(got, withHealth(static, results, map[v1.ClusterID]int{"c": 1200})) {
		t.Error("a changed path MTU counts as the same state: the status would not be written")
	}
}

func TestParsePathMTU(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    map[v1.ClusterID]int
		wantErr string
	}{
		{"", map[v1.ClusterID]int{}, ""},
		{"cluster-b=1400", map[v1.ClusterID]int{"cluster-b": 1400}, ""},
		{" cluster-b = 1400 , cluster-c=1380", map[v1.ClusterID]int{"cluster-b": 1400, "cluster-c": 1380}, ""},
		{"cluster-b", nil, `path MTU "cluster-b": want CLUSTER=BYTES, e.g. cluster-b=1400`},
		{"=1400", nil, `path MTU "=1400": want CLUSTER=BYTES, e.g. cluster-b=1400`},
		{"cluster-b=1400,cluster-b=1300", nil, "path MTU: cluster cluster-b is named twice"},
		{"cluster-b=500", nil, `path MTU of cluster cluster-b: "500" is not a size in bytes from 576 to 65535`},
		{"cluster-b=big", nil, `path MTU of cluster cluster-b: "big" is not a size in bytes from 576 to 65535`},
	} {
		got, err := ParsePathMTU(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParsePathMTU(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("ParsePathMTU(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
