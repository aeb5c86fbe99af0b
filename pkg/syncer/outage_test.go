package syncer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// heldCounter records the last count a syncer's OnHeld reported.
type heldCounter struct {
	mu     sync.Mutex
	n      int
	reason string
}

func (h *heldCounter) set(n int, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n, h.reason = n, reason
}

func (h *heldCounter) waitFor(t *testing.T, n int) string {
	t.Helper()
	var got int
	var reason string
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		got, reason = h.n, h.reason
		return got == n, nil
	}); err != nil {
		t.Fatalf("held records: %d, want %d (last reason %q)", got, n, reason)
	}
	return reason
}

// A broker that loses everything at once (its namespace deleted: every
// record, then the members' credentials; a broker restored empty) is an
// outage: members keep the other clusters' records, report them held, and
// sync again once the broker is back and they have joined again. One
// cluster leaving is still a withdrawal.
func TestBrokerVanishes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	pick := func(ns string) client.Client {
		if ns == w.info.Namespace {
			return w.brokerAdmin
		}
		return w.members
	}
	for _, id := range []string{"c1", "c2"} {
		ep := endpoint(id+".gw", id, id)
		ep.Namespace = id + "-system"
		if err := w.members.Create(ctx, ep); err != nil {
			t.Fatal(err)
		}
		if err := w.members.Create(ctx, clusterObj(id, id+"-system")); err != nil {
			t.Fatal(err)
		}
	}
	// A short settle keeps the test quick; what is held does not depend on it.
	held := map[string]*heldCounter{"c1": {}, "c2": {}}
	start := func(id string) context.CancelFunc {
		return w.startSyncerWith(t, id, syncerOptions{settle: 200 * time.Millisecond, onHeld: held[id].set})
	}
	stop1, stop2 := start("c1"), start("c2")
	full := lines(
		"cluster c1 owner=c1 region=",
		"cluster c2 owner=c2 region=",
		"endpoint c1.gw owner=c1 host=c1.gw",
		"endpoint c2.gw owner=c2 host=c2.gw",
	)
	all := []string{"c1-system", "c2-system", w.info.Namespace}
	eventually(t, pick, full, all...)

	// The broker namespace is deleted. The test apiserver runs no
	// namespace controller, so the test does its work: every record goes
	// (the namespace, terminating, refuses the members' writes), then the
	// members' credentials, then the namespace.
	admin := kubernetes.NewForConfigOrDie(w.brokerEnv.Config)
	brokerNS := w.info.Namespace
	if err := admin.CoreV1().Namespaces().Delete(ctx, brokerNS, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&v1.Endpoint{}, &v1.Cluster{}} {
		if err := w.brokerAdmin.DeleteAllOf(ctx, obj, client.InNamespace(brokerNS)); err != nil {
			t.Fatal(err)
		}
	}
	// Each member holds the other's Cluster and Endpoint: the broker lost
	// its own records too.
	for _, id := range []string{"c1", "c2"} {
		t.Logf("%s holds: %s", id, held[id].waitFor(t, 2))
	}
	for _, obj := range []client.Object{&rbacv1.RoleBinding{}, &rbacv1.Role{}, &corev1.ServiceAccount{}} {
		if err := w.brokerAdmin.DeleteAllOf(ctx, obj, client.InNamespace(brokerNS)); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := admin.CoreV1().Namespaces().Get(ctx, brokerNS, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Spec.Finalizers = nil
	if _, err := admin.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := admin.CoreV1().Namespaces().Get(ctx, brokerNS, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("broker namespace not gone: %v", err)
	}
	// Still held with the namespace gone.
	for _, id := range []string{"c1", "c2"} {
		held[id].waitFor(t, 2)
		if got := state(t, w.members, id+"-system"); !strings.Contains(got, "endpoint c1.gw") || !strings.Contains(got, "endpoint c2.gw") ||
			!strings.Contains(got, "cluster c1") || !strings.Contains(got, "cluster c2") {
			t.Fatalf("%s lost records in the broker outage:\n%s", id, got)
		}
	}

	// The broker comes back empty: deployed again, c1 joins again first
	// (its components restart their syncer with the new credential).
	stop1()
	stop2()
	info, err := broker.Deploy(ctx, w.brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.info = info
	rejoin := func(id, pods, svcs string) {
		tok, err := broker.Enroll(ctx, w.info, member(id, "uid-"+id, pods, svcs))
		if err != nil {
			t.Fatalf("re-enroll %s: %v", id, err)
		}
		w.tokens[id] = tok
	}
	rejoin("c1", "10.1.0.0/16", "10.101.0.0/16")
	held["c1"] = &heldCounter{}
	start("c1")
	// c1 publishes again and keeps c2's records, which the new broker has
	// never had: c2 has not joined again yet.
	held["c1"].waitFor(t, 2)
	eventually(t, pick, lines("cluster c1 owner=c1 region=", "endpoint c1.gw owner=c1 host=c1.gw"), w.info.Namespace)
	eventually(t, pick, full, "c1-system")

	rejoin("c2", "10.2.0.0/16", "10.102.0.0/16")
	held["c2"] = &heldCounter{}
	stop2 = start("c2")
	eventually(t, pick, full, all...)
	held["c1"].waitFor(t, 0)

	// One cluster leaving is a withdrawal, not an outage. (Leave stops the
	// cluster's components first.)
	stop2()
	if err := broker.Leave(ctx, w.info.RESTConfig(w.tokens["c2"]), w.info.Namespace, "c2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, pick, lines("cluster c1 owner=c1 region=", "endpoint c1.gw owner=c1 host=c1.gw"), "c1-system", w.info.Namespace)
}
