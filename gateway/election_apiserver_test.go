package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/kubetest"
)

// hookedLock runs a hook before each request of a real lock, so that a
// test can make two gateways write after reading the same Lease.
type hookedLock struct {
	resourcelock.Interface
	before func(op string)
}

func (l *hookedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	l.before("get")
	return l.Interface.Get(ctx)
}

func (l *hookedLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	l.before("create")
	return l.Interface.Create(ctx, r)
}

func (l *hookedLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	l.before("update")
	return l.Interface.Update(ctx, r)
}

// TestLeaseLockOnAPIServer runs the elector's Lease plumbing, client-go's
// LeaseLock, against a real apiserver (the unit tests use an in-memory
// lock): of two gateways writing after reading the same Lease, the
// apiserver lets one win (AlreadyExists on create, Conflict on update, from
// the resourceVersion LeaseLock sends), and the loser takes that as a lost
// race, not an error; an active gateway whose apiserver goes away stays
// active and renews again when it is back. Heartbeats and the clock are
// still fakes.
func TestLeaseLockOnAPIServer(t *testing.T) {
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "strait-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	holder := func() (string, int32) {
		t.Helper()
		l, err := kube.CoordinationV1().Leases("strait-system").Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ptr.Deref(l.Spec.HolderIdentity, ""), ptr.Deref(l.Spec.LeaseTransitions, 0)
	}

	w := newWorld(t)
	w.net.answer("a", true)
	w.net.answer("b", true)
	// race has a and b acquire at once, both writing after reading the same
	// Lease, and returns the winner, holding.
	race := func(wantEpoch int32) *candidate {
		t.Helper()
		bothWrite := make(chan struct{})
		var writers atomic.Int32
		before := func(op string) {
			if op == "get" {
				return
			}
			if writers.Add(1) == 2 {
				close(bothWrite)
			}
			<-bothWrite
		}
		ca, cb := w.candidate("a"), w.candidate("b")
		for _, c := range []*candidate{ca, cb} {
			c.el.kube = kube
			c.el.lock = nil
			c.el.lock = &hookedLock{Interface: c.el.leaseLock(), before: before}
		}
		ra, rb := ca.acquire(), cb.acquire()
		var winner, loser *electorRun
		select {
		case <-ra.finished:
			winner, loser = ra, rb
		case <-rb.finished:
			winner, loser = rb, ra
		case <-time.After(failsafe):
			t.Fatal("neither gateway acquired the Lease")
		}
		winner.acquired(wantEpoch)
		loser.parked()
		if h, epoch := holder(); h != winner.c.name || epoch != wantEpoch {
			t.Fatalf("Lease held by %q, epoch %d; want %q, epoch %d", h, epoch, winner.c.name, wantEpoch)
		}
		if got := writers.Load(); got != 2 {
			t.Fatalf("%d writes; want two, a real race", got)
		}
		loser.stop()
		ca.wantWarnings(0)
		cb.wantWarnings(0)
		return winner.c
	}

	t.Run("race to create", func(t *testing.T) {
		c := race(0)
		h := c.hold()
		h.parked()
		w.periods(1, h)
		if res := h.stop(); res.err != nil {
			t.Fatalf("hold returned %v on a clean stop", res.err)
		}
		if h, epoch := holder(); h != "" || epoch != 0 {
			t.Fatalf("Lease held by %q, epoch %d after a release", h, epoch)
		}
	})
	t.Run("race for a released Lease, then the apiserver away", func(t *testing.T) {
		c := race(1)
		h := c.hold()
		h.parked()
		env.StopAPIServer()
		w.periods(3, h)
		if err := env.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		w.periods(1, h)
		l, err := kube.CoordinationV1().Leases("strait-system").Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ptr.Deref(l.Spec.HolderIdentity, ""); got != c.name || !l.Spec.RenewTime.Time.Equal(w.clock.Now()) {
			t.Fatalf("Lease held by %q, renewed at %v; want %q, renewed now (%v)", got, l.Spec.RenewTime, c.name, w.clock.Now())
		}
		c.wantWarnings(1)
	})
}
