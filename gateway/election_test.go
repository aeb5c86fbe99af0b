package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	testingclock "k8s.io/utils/clock/testing"

	"strait.dev/strait/gateway/health"
)

// The elector's policy (docs/gateway-failover.md) on fakes: an in-memory
// Lease API, heartbeats whose answers the test decides, and a fake clock
// that moves only when the test steps it, once every elector has parked. No
// test sleeps; each waits for an elector to end a round.

// failsafe only turns a hang into a failure; a passing test never waits
// for it.
const failsafe = 10 * time.Second

// t0 is when every test starts, on the fake clock.
var clockStart = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// world is what the gateways of one test share.
type world struct {
	t      *testing.T
	clock  *testingclock.FakeClock
	leases *fakeLeases
	net    *fakeNet
	done   chan struct{}
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, clock: testingclock.NewFakeClock(clockStart), leases: newFakeLeases(), net: newFakeNet(), done: make(chan struct{})}
	t.Cleanup(func() { close(w.done) })
	return w
}

func (w *world) step(d time.Duration) { w.clock.Step(d) }

// periods moves the clock n retry periods, one at a time, each time
// waiting until every run in runs ended its round.
func (w *world) periods(n int, runs ...*electorRun) {
	w.t.Helper()
	for range n {
		w.step(retryPeriod)
		for _, r := range runs {
			r.parked()
		}
	}
}

// elapsed is how far the fake clock moved since the test began.
func (w *world) elapsed() time.Duration { return w.clock.Since(clockStart) }

// quiet checks, once every run returned, that nothing was left behind: no
// timer on the clock, no heartbeats open.
func (w *world) quiet() {
	w.t.Helper()
	if n := w.clock.Waiters(); n != 0 {
		w.t.Errorf("%d timers left on the clock after every elector returned", n)
	}
	if started, open := w.net.counts(); open != 0 {
		w.t.Errorf("%d of %d heartbeaters left open after every elector returned", open, started)
	}
}

// lease is a Lease record held by holder.
func heldLease(holder string, transitions int, renewed time.Time) *resourcelock.LeaderElectionRecord {
	return &resourcelock.LeaderElectionRecord{HolderIdentity: holder, LeaseDurationSeconds: 15,
		AcquireTime: metav1.NewTime(clockStart.Add(-time.Hour)), RenewTime: metav1.NewTime(renewed), LeaderTransitions: transitions}
}

// wantLease checks who holds the Lease and its epoch.
func (w *world) wantLease(holder string, transitions int) *resourcelock.LeaderElectionRecord {
	w.t.Helper()
	r := w.leases.get()
	if r == nil {
		w.t.Fatalf("no Lease; want one held by %q, epoch %d", holder, transitions)
	}
	if r.HolderIdentity != holder || r.LeaderTransitions != transitions {
		w.t.Fatalf("Lease held by %q, epoch %d; want %q, epoch %d", r.HolderIdentity, r.LeaderTransitions, holder, transitions)
	}
	return r
}

// candidate is one gateway's elector in the world.
type candidate struct {
	w        *world
	name     string
	el       *elector
	parked   chan struct{}
	blocked  chan string
	log      *logRecorder
	standbys atomic.Int32
}

func (w *world) candidate(name string) *candidate {
	c := &candidate{w: w, name: name, parked: make(chan struct{}, 64), blocked: make(chan string, 64), log: &logRecorder{}}
	// The engine's literal, plus the seams.
	c.el = &elector{namespace: "strait-system", identity: name,
		heartbeatPort: 4491, heartbeatInterval: DefaultHeartbeatInterval, heartbeatFailures: DefaultHeartbeatFailures,
		log: slog.New(c.log), standby: func() bool { c.standbys.Add(1); return true },
		lock: w.leases.lock(name, c.blocked), heartbeats: w.net.start,
		clock: &parkClock{FakeClock: w.clock, parked: c.parked, done: w.done},
	}
	w.t.Cleanup(func() {
		if w.t.Failed() {
			w.t.Logf("log of %s:\n%s", name, c.log)
		}
	})
	return c
}

// wantWarnings checks how many warnings the gateway logged: one per
// outage, not one per round.
func (c *candidate) wantWarnings(n int) {
	c.w.t.Helper()
	if got := c.log.warnings(); got != n {
		c.w.t.Errorf("%s logged %d warnings, want %d:\n%s", c.name, got, n, c.log)
	}
}

// run is acquire or hold running in the background.
type electorRun struct {
	c        *candidate
	what     string
	cancel   context.CancelFunc
	finished chan struct{}
	res      electorResult
}

type electorResult struct {
	epoch int32
	err   error
}

func (c *candidate) acquire() *electorRun {
	return c.start("acquire", func(ctx context.Context) electorResult {
		epoch, err := c.el.acquire(ctx)
		return electorResult{epoch, err}
	})
}

func (c *candidate) hold() *electorRun {
	return c.start("hold", func(ctx context.Context) electorResult {
		return electorResult{err: c.el.hold(ctx, nil)}
	})
}

func (c *candidate) start(what string, f func(context.Context) electorResult) *electorRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &electorRun{c: c, what: what, cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(r.finished)
		r.res = f(ctx)
	}()
	c.w.t.Cleanup(func() {
		c.w.leases.fault(c.name, apiHealthy)
		cancel()
		select {
		case <-r.finished:
		case <-time.After(failsafe):
			c.w.t.Errorf("%s of %s did not return after its context ended", what, c.name)
		}
	})
	return r
}

// parked waits until the elector ended a round and waits for the clock.
func (r *electorRun) parked() {
	r.c.w.t.Helper()
	select {
	case <-r.c.parked:
	case op := <-r.c.blocked:
		r.c.w.t.Fatalf("%s of %s: %s request held by the slow apiserver; want the round to end", r.what, r.c.name, op)
	case <-r.finished:
		r.c.w.t.Fatalf("%s of %s returned (%d, %v); want it still running", r.what, r.c.name, r.res.epoch, r.res.err)
	case <-time.After(failsafe):
		r.c.w.t.Fatalf("%s of %s: no round ended", r.what, r.c.name)
	}
}

// blocked waits until a request of the elector hangs on the slow
// apiserver, waiting for its deadline.
func (r *electorRun) blocked() {
	r.c.w.t.Helper()
	select {
	case <-r.c.blocked:
	case <-r.c.parked:
		r.c.w.t.Fatalf("%s of %s ended a round; want it held by the slow apiserver", r.what, r.c.name)
	case <-r.finished:
		r.c.w.t.Fatalf("%s of %s returned (%d, %v); want it held by the slow apiserver", r.what, r.c.name, r.res.epoch, r.res.err)
	case <-time.After(failsafe):
		r.c.w.t.Fatalf("%s of %s: no request reached the apiserver", r.what, r.c.name)
	}
}

// result waits until the run returns; it fails if the elector parks
// instead.
func (r *electorRun) result() electorResult {
	r.c.w.t.Helper()
	select {
	case <-r.finished:
		return r.res
	case <-r.c.parked:
		r.c.w.t.Fatalf("%s of %s is still waiting at %v; want it to return", r.what, r.c.name, r.c.w.elapsed())
	case op := <-r.c.blocked:
		r.c.w.t.Fatalf("%s of %s: %s request held by the slow apiserver; want it to return", r.what, r.c.name, op)
	case <-time.After(failsafe):
		r.c.w.t.Fatalf("%s of %s did not return", r.what, r.c.name)
	}
	return electorResult{}
}

// acquired waits for acquire to return the epoch.
func (r *electorRun) acquired(epoch int32) {
	r.c.w.t.Helper()
	res := r.result()
	if res.err != nil || res.epoch != epoch {
		r.c.w.t.Fatalf("acquire of %s returned (%d, %v); want epoch %d", r.c.name, res.epoch, res.err, epoch)
	}
}

// stop ends the run's context and returns its result.
func (r *electorRun) stop() electorResult {
	r.c.w.t.Helper()
	r.cancel()
	return r.result()
}

// 1. A free Lease is created with epoch 0; a Lease already ours (the
// gateway restarted within its term) goes on with the same epoch.
func TestElectorAcquiresFreeOrOwnLease(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lease     *resourcelock.LeaderElectionRecord
		wantEpoch int32
		// wantAcquired is the AcquireTime the Lease ends with.
		wantAcquired time.Time
	}{
		{name: "no Lease yet", wantEpoch: 0, wantAcquired: clockStart},
		{name: "ours, restarted", lease: heldLease("a", 5, clockStart.Add(-10*time.Second)), wantEpoch: 5, wantAcquired: clockStart.Add(-time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.lease != nil {
				w.leases.set(tc.lease)
			}
			a := w.candidate("a")
			a.acquire().acquired(tc.wantEpoch)
			r := w.wantLease("a", int(tc.wantEpoch))
			if !r.AcquireTime.Time.Equal(tc.wantAcquired) || !r.RenewTime.Time.Equal(clockStart) || r.LeaseDurationSeconds != int(leaseDuration/time.Second) {
				t.Errorf("Lease %+v; want acquired at %v, renewed at %v, lasting %v", r, tc.wantAcquired, clockStart, leaseDuration)
			}
			if n := a.standbys.Load(); n != 0 {
				t.Errorf("standby ran %d times; no other gateway held the Lease", n)
			}
			a.wantWarnings(0)
			w.quiet()
		})
	}
}

// 2. A holder that answers heartbeats keeps its Lease, however long it has
// not renewed it: it is alive, and only cannot reach the apiserver.
func TestElectorKeepsExpiredLeaseOfAnsweringHolder(t *testing.T) {
	w := newWorld(t)
	w.leases.set(heldLease("x", 3, clockStart))
	w.net.answer("x", true)
	b := w.candidate("b")
	acq := b.acquire()
	acq.parked()
	w.periods(30, acq) // 60 s, four times the Lease duration
	w.wantLease("x", 3)
	if got := w.net.watching(); len(got) != 1 || got[0] != "x" {
		t.Errorf("heartbeats watch %q; want the holder x", got)
	}
	if n := b.standbys.Load(); n != 1 {
		t.Errorf("standby ran %d times; want once", n)
	}
	if res := acq.stop(); !errors.Is(res.err, context.Canceled) {
		t.Errorf("acquire returned (%d, %v) when stopped; want context.Canceled", res.epoch, res.err)
	}
	b.wantWarnings(0)
	w.quiet()
}

// 3. A holder that does not answer heartbeats (this standby never heard
// it) loses its Lease once the Lease has not changed for leaseDuration on
// the standby's clock; what the holder wrote into RenewTime does not count.
func TestElectorTakesExpiredLeaseOfSilentHolder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		renewed time.Time
	}{
		{name: "clocks agree", renewed: clockStart},
		{name: "holder's clock an hour behind", renewed: clockStart.Add(-time.Hour)},
		{name: "holder's clock an hour ahead", renewed: clockStart.Add(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.leases.set(heldLease("x", 3, tc.renewed))
			b := w.candidate("b")
			acq := b.acquire()
			acq.parked()      // saw the Lease at t0
			w.periods(7, acq) // t0+14s: not expired yet
			w.wantLease("x", 3)
			w.step(retryPeriod) // t0+16s
			acq.acquired(4)
			if r := w.wantLease("b", 4); !r.AcquireTime.Time.Equal(clockStart.Add(16 * time.Second)) {
				t.Errorf("AcquireTime %v; want the takeover's time", r.AcquireTime)
			}
			b.wantWarnings(0)
			w.quiet()
		})
	}
}

// 3b. A holder this standby cannot hear (heartbeats blocked) but that keeps
// renewing keeps its Lease: expiry counts from the last change seen.
func TestElectorLeavesRenewedLeaseOfUnheardHolder(t *testing.T) {
	w := newWorld(t)
	w.leases.set(heldLease("x", 3, clockStart))
	b := w.candidate("b")
	acq := b.acquire()
	acq.parked()
	for range 30 {
		w.periods(1, acq)
		w.leases.set(heldLease("x", 3, w.clock.Now())) // x renews
	}
	w.wantLease("x", 3)
	// x stops renewing: taken leaseDuration later, at the first look after.
	w.periods(8, acq)
	w.wantLease("x", 3)
	w.step(retryPeriod)
	acq.acquired(4)
	w.quiet()
}

// 4. A holder that answered heartbeats and then stopped is taken over at
// once, long before its Lease expires.
func TestElectorTakesOverAtOnceFromHolderThatStoppedAnswering(t *testing.T) {
	t.Run("at once", func(t *testing.T) {
		w := newWorld(t)
		w.leases.set(heldLease("x", 3, clockStart))
		w.net.answer("x", true)
		b := w.candidate("b")
		acq := b.acquire()
		acq.parked() // watching x, which answers
		w.periods(2, acq)
		w.net.answer("x", false)
		acq.acquired(4)
		if d := w.elapsed(); d != 2*retryPeriod {
			t.Errorf("took over after %v; want at once, at %v", d, 2*retryPeriod)
		}
		w.wantLease("b", 4)
		b.wantWarnings(0)
		w.quiet()
	})
	t.Run("after an apiserver error", func(t *testing.T) {
		// The first try fails; the next one still takes over without
		// waiting for expiry.
		w := newWorld(t)
		w.leases.set(heldLease("x", 3, clockStart))
		w.net.answer("x", true)
		b := w.candidate("b")
		acq := b.acquire()
		acq.parked()
		w.leases.fault("b", apiAway)
		w.net.answer("x", false)
		acq.parked() // the forced round failed
		w.leases.fault("b", apiHealthy)
		w.step(retryPeriod)
		acq.acquired(4)
		if d := w.elapsed(); d >= leaseDuration {
			t.Errorf("took over after %v; want before the Lease expires", d)
		}
		b.wantWarnings(1)
		w.quiet()
	})
	t.Run("answering again before the round", func(t *testing.T) {
		// A hiccup: the holder answers again before the standby's round
		// reads the Lease. It keeps its Lease.
		w := newWorld(t)
		w.leases.set(heldLease("x", 3, clockStart))
		w.net.answer("x", true)
		b := w.candidate("b")
		acq := b.acquire()
		acq.parked()
		var once sync.Once
		w.leases.setBefore(func(op, _ string) {
			if op == "get" {
				once.Do(func() { w.net.answer("x", true) })
			}
		})
		w.net.answer("x", false)
		acq.parked()
		w.wantLease("x", 3)
		w.periods(10, acq)
		w.wantLease("x", 3)
	})
}

// A holder that a standby finds unfit (it lost every remote cluster, or no
// remote gateway answers through it, while the standby reaches one) loses
// the Lease at once: the standby does not wait for expiry, and logs why.
func TestElectorTakesOverFromCutOffHolder(t *testing.T) {
	w := newWorld(t)
	w.leases.set(heldLease("x", 3, clockStart))
	w.net.answer("x", true)
	b := w.candidate("b")
	acq := b.acquire()
	acq.parked() // watching x, which answers
	w.periods(2, acq)
	w.wantLease("x", 3)
	w.net.unfit("x")
	acq.acquired(4)
	if d := w.elapsed(); d != 2*retryPeriod {
		t.Errorf("took over after %v; want at once, at %v", d, 2*retryPeriod)
	}
	w.wantLease("b", 4)
	if !strings.Contains(b.log.String(), "cannot carry traffic") {
		t.Errorf("b's log does not say why it took over:\n%s", b.log)
	}
	b.wantWarnings(1)
	w.quiet()
}

// 5. Writes race: the Lease's version decides, the loser logs nothing and
// looks again a period later.
func TestElectorConflictOnWrite(t *testing.T) {
	t.Run("another candidate writes between our read and our write", func(t *testing.T) {
		w := newWorld(t)
		w.leases.set(heldLease("", 3, clockStart)) // released
		w.net.answer("c", true)
		a := w.candidate("a")
		var once sync.Once
		w.leases.setBefore(func(op, id string) {
			if op == "update" && id == "a" {
				once.Do(func() { w.leases.set(heldLease("c", 4, w.clock.Now())) })
			}
		})
		acq := a.acquire()
		acq.parked() // lost the race
		if n := w.leases.writesBy("a"); n != 1 {
			t.Fatalf("a wrote %d times; want its one write to have lost the race", n)
		}
		w.wantLease("c", 4)
		w.periods(3, acq) // retried every period: c holds it and answers
		w.wantLease("c", 4)
		if n := a.standbys.Load(); n != 1 {
			t.Errorf("standby ran %d times; want once, on seeing c", n)
		}
		w.leases.set(heldLease("", 4, w.clock.Now())) // c stops cleanly
		w.step(retryPeriod)
		acq.acquired(5)
		a.wantWarnings(0)
		w.quiet()
	})
	for _, tc := range []struct {
		name      string
		lease     *resourcelock.LeaderElectionRecord
		wantEpoch int
	}{
		{name: "two candidates race to create the Lease", wantEpoch: 0},
		{name: "two candidates race for a released Lease", lease: heldLease("", 3, clockStart), wantEpoch: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.lease != nil {
				w.leases.set(tc.lease)
			}
			w.net.answer("a", true)
			w.net.answer("b", true)
			// The first to write waits for the other to write too, so both
			// write after reading the same Lease.
			bothWrite := make(chan struct{})
			var writers atomic.Int32
			w.leases.setBefore(func(op, _ string) {
				if op == "get" {
					return
				}
				if writers.Add(1) == 2 {
					close(bothWrite)
				}
				<-bothWrite
			})
			ca, cb := w.candidate("a"), w.candidate("b")
			ra, rb := ca.acquire(), cb.acquire()
			var winner, loser *electorRun
			select {
			case <-ra.finished:
				winner, loser = ra, rb
			case <-rb.finished:
				winner, loser = rb, ra
			case <-time.After(failsafe):
				t.Fatal("neither candidate acquired the Lease")
			}
			winner.acquired(int32(tc.wantEpoch))
			loser.parked()
			w.wantLease(winner.c.name, tc.wantEpoch)
			if wa, wb := w.leases.writesBy("a"), w.leases.writesBy("b"); wa != 1 || wb != 1 {
				t.Fatalf("writes: a %d, b %d; want one each, a real race", wa, wb)
			}
			// The loser now sees the winner, which answers: it stays a
			// standby even when the Lease expires on its clock.
			w.periods(10, loser)
			w.wantLease(winner.c.name, tc.wantEpoch)
			loser.stop()
			ca.wantWarnings(0)
			cb.wantWarnings(0)
			w.quiet()
		})
	}
	t.Run("a takeover between the read and the write of a renewal", func(t *testing.T) {
		// The renewal's Conflict makes the active gateway read again at
		// once, see the new holder, and step down in the same round.
		w := newWorld(t)
		a := w.candidate("a")
		a.acquire().acquired(0)
		h := a.hold()
		h.parked()
		var once sync.Once
		w.leases.setBefore(func(op, id string) {
			if op == "update" && id == "a" {
				once.Do(func() { w.leases.set(heldLease("c", 1, w.clock.Now())) })
			}
		})
		w.step(retryPeriod)
		if res := h.result(); !errors.Is(res.err, errLost) {
			t.Fatalf("hold returned %v; want errLost", res.err)
		}
		w.wantLease("c", 1)
		a.wantWarnings(0)
		w.quiet()
	})
}

// 6. A clean stop releases the Lease, and a standby takes it at its next
// look instead of waiting for expiry.
func TestElectorReleasesOnCleanStop(t *testing.T) {
	t.Run("released and taken", func(t *testing.T) {
		w := newWorld(t)
		w.net.answer("a", true)
		a, b := w.candidate("a"), w.candidate("b")
		a.acquire().acquired(0)
		h := a.hold()
		h.parked()
		acq := b.acquire()
		acq.parked() // b watches a, which answers
		w.periods(3, h, acq)
		if res := h.stop(); res.err != nil {
			t.Fatalf("hold returned %v on a clean stop; want nil", res.err)
		}
		w.wantLease("", 0)
		w.step(retryPeriod)
		acq.acquired(1)
		if d := w.elapsed(); d >= leaseDuration {
			t.Errorf("b took over after %v; want within a retry period of the release", d)
		}
		a.wantWarnings(0)
		b.wantWarnings(0)
		w.quiet()
	})
	t.Run("no hang on a slow apiserver", func(t *testing.T) {
		w := newWorld(t)
		a := w.candidate("a")
		a.acquire().acquired(0)
		h := a.hold()
		h.parked()
		w.leases.fault("a", apiSlow)
		h.cancel()
		h.blocked() // the release's read
		w.step(releaseTimeout)
		if res := h.result(); res.err != nil {
			t.Fatalf("hold returned %v on a clean stop; want nil", res.err)
		}
		w.wantLease("a", 0) // left to expire or to heartbeats
		a.wantWarnings(1)
		w.quiet()
	})
}

// 6b. A clean stop hands the role over: hold returns at the stop with the
// Lease still held, and handOver makes the heartbeats say the gateway is
// leaving; a standby that hears that takes the Lease from it at once (the
// clock does not move: no retry period, no missed heartbeats, no expiry),
// with no moment without a holder. With no standby hearing it, handOver
// releases the Lease after handOverRounds heartbeat intervals.
func TestElectorHandsOverOnCleanStop(t *testing.T) {
	type handedOver struct {
		next string
		err  error
	}
	// stopHolding starts c's hold with a stop channel, lets a round pass
	// for the others, stops it and checks it kept the Lease.
	stopHolding := func(w *world, c *candidate, others ...*electorRun) {
		t.Helper()
		stop := make(chan struct{})
		h := c.start("hold", func(ctx context.Context) electorResult { return electorResult{err: c.el.hold(ctx, stop)} })
		h.parked()
		w.periods(1, append(others, h)...)
		close(stop)
		if res := h.result(); res.err != nil {
			t.Fatalf("hold returned %v at the stop; want nil", res.err)
		}
		w.wantLease(c.name, 0)
	}
	// handOver runs c's handOver with say, moving the clock a heartbeat
	// interval whenever it waits for one, and returns what it returned.
	handOver := func(w *world, c *candidate, say func(), before func()) handedOver {
		t.Helper()
		done := make(chan handedOver, 1)
		go func() {
			next, err := c.el.handOver(context.Background(), say)
			done <- handedOver{next, err}
		}()
		if before != nil {
			before()
		}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		deadline := time.After(failsafe)
		for {
			select {
			case r := <-done:
				return r
			case <-tick.C:
				if w.clock.HasWaiters() {
					w.step(DefaultHeartbeatInterval)
				}
			case <-deadline:
				t.Fatal("handOver did not return")
			}
		}
	}

	t.Run("a standby hears it", func(t *testing.T) {
		w := newWorld(t)
		w.net.answer("a", true)
		a, b := w.candidate("a"), w.candidate("b")
		a.acquire().acquired(0)
		acq := b.acquire()
		acq.parked() // b watches a, which answers
		stopHolding(w, a, acq)
		writes := w.leases.writesBy("a")
		at := w.elapsed()
		var tookAt time.Duration
		res := handOver(w, a, func() { w.net.leave("a") }, func() {
			acq.acquired(1)
			tookAt = w.elapsed()
		})
		if res.next != "b" || res.err != nil {
			t.Errorf("handOver returned (%q, %v); want b", res.next, res.err)
		}
		if tookAt != at {
			t.Errorf("b took over after the clock moved %v; want at once", tookAt-at)
		}
		if got := w.leases.writesBy("a"); got != writes {
			t.Errorf("a wrote the Lease %d times in the handover; want none (no release: no moment without a holder)", got-writes)
		}
		w.wantLease("b", 1)
		if !strings.Contains(b.log.String(), "handing over") {
			t.Errorf("b's log does not say it took over from a gateway handing over:\n%s", b.log)
		}
		a.wantWarnings(0)
		b.wantWarnings(0)
		w.quiet()
	})
	t.Run("no standby hears it", func(t *testing.T) {
		w := newWorld(t)
		a := w.candidate("a")
		a.acquire().acquired(0)
		stopHolding(w, a)
		said := false
		res := handOver(w, a, func() { said = true }, nil)
		if !said || res.next != "" || res.err != nil {
			t.Errorf("handOver said leaving %v, returned (%q, %v); want it said, and released", said, res.next, res.err)
		}
		w.wantLease("", 0)
		if d := w.elapsed() - retryPeriod; d < handOverRounds*DefaultHeartbeatInterval {
			t.Errorf("released after %v; want only after %d heartbeat intervals without a taker", d, handOverRounds)
		}
		a.wantWarnings(0)
		w.quiet()
	})
}

// 7. A slow or unreachable apiserver changes no role: the active gateway
// stays active, the standby stays standby while it hears the active one,
// renewals resume when the apiserver is back, and only another holder in
// the Lease ends the term.
func TestElectorApiserverSlowOrAway(t *testing.T) {
	// rounds runs n rounds of r against the fault: a slow apiserver holds
	// each request until its deadline.
	rounds := func(w *world, f apiFault, n int, r *electorRun) {
		w.t.Helper()
		for range n {
			w.step(retryPeriod)
			if f == apiSlow {
				r.blocked()
				w.step(renewDeadline)
			}
			r.parked()
		}
	}
	for _, f := range []apiFault{apiAway, apiSlow} {
		name := map[apiFault]string{apiAway: "away", apiSlow: "slow"}[f]
		t.Run("active gateway, apiserver "+name, func(t *testing.T) {
			w := newWorld(t)
			a := w.candidate("a")
			a.acquire().acquired(0)
			h := a.hold()
			h.parked()
			w.leases.fault("a", f)
			rounds(w, f, 10, h) // 20 to 120 s without renewing
			w.wantLease("a", 0)
			a.wantWarnings(1)
			w.leases.fault("a", apiHealthy)
			w.periods(1, h)
			if r := w.wantLease("a", 0); !r.RenewTime.Time.Equal(w.clock.Now()) {
				t.Errorf("Lease renewed at %v; want renewed now, %v", r.RenewTime, w.clock.Now())
			}
			w.periods(2, h)
			w.leases.set(heldLease("c", 1, w.clock.Now()))
			w.step(retryPeriod)
			if res := h.result(); !errors.Is(res.err, errLost) {
				t.Fatalf("hold returned %v once c held the Lease; want errLost", res.err)
			}
			a.wantWarnings(1)
			w.quiet()
		})
		t.Run("standby, apiserver "+name, func(t *testing.T) {
			w := newWorld(t)
			w.leases.set(heldLease("a", 0, clockStart))
			w.net.answer("a", true)
			b := w.candidate("b")
			acq := b.acquire()
			acq.parked() // b watches a
			w.leases.fault("b", f)
			rounds(w, f, 10, acq)
			b.wantWarnings(1)
			// Back, with a's Lease unchanged for far longer than its
			// duration: a answers, so b leaves it.
			w.leases.fault("b", apiHealthy)
			w.periods(5, acq)
			w.wantLease("a", 0)
			b.wantWarnings(1)
			// The standby still takes over when a dies.
			w.net.answer("a", false)
			acq.acquired(1)
			w.quiet()
		})
	}
	t.Run("apiserver away for the active gateway only", func(t *testing.T) {
		// A partition between the active gateway and the apiserver: both
		// gateways run; neither changes role.
		w := newWorld(t)
		w.net.answer("a", true)
		a, b := w.candidate("a"), w.candidate("b")
		a.acquire().acquired(0)
		h := a.hold()
		h.parked()
		acq := b.acquire()
		acq.parked()
		w.leases.fault("a", apiAway)
		w.periods(20, h, acq)
		w.wantLease("a", 0)
		w.leases.fault("a", apiHealthy)
		w.periods(3, h, acq)
		if r := w.wantLease("a", 0); !r.RenewTime.Time.Equal(w.clock.Now()) {
			t.Errorf("Lease renewed at %v; want renewed now, %v", r.RenewTime, w.clock.Now())
		}
		a.wantWarnings(1)
		b.wantWarnings(0)
	})
}

// 8. The engine's standby loop: acquire, hold, lose, acquire again on the
// same elector, hold again, stop; nothing left behind.
func TestElectorStandbyLoop(t *testing.T) {
	w := newWorld(t)
	a := w.candidate("a")
	a.acquire().acquired(0)
	h := a.hold()
	h.parked()
	w.periods(2, h)
	w.leases.set(heldLease("c", 1, w.clock.Now())) // c took over
	w.step(retryPeriod)
	if res := h.result(); !errors.Is(res.err, errLost) {
		t.Fatalf("hold returned %v; want errLost", res.err)
	}
	w.quiet()
	// Standby again; c is silent, so its Lease is taken when it expires.
	acq := a.acquire()
	acq.parked()
	if n := a.standbys.Load(); n != 1 {
		t.Errorf("standby ran %d times; want once, on seeing c", n)
	}
	w.periods(7, acq)
	w.wantLease("c", 1)
	w.step(retryPeriod)
	acq.acquired(2)
	h = a.hold()
	h.parked()
	w.periods(2, h)
	if res := h.stop(); res.err != nil {
		t.Fatalf("hold returned %v on a clean stop; want nil", res.err)
	}
	w.wantLease("", 2)
	if started, _ := w.net.counts(); started != 2 {
		t.Errorf("%d heartbeaters started; want one per acquire", started)
	}
	a.wantWarnings(0)
	w.quiet()
}

// The real heartbeats, on loopback: a gateway's health prober answers them;
// they report it answering, leaving while its answers say so, then dead
// once it stops, and close frees the socket, so a standby loop leaks none.
func TestElectionProbes(t *testing.T) {
	holderConn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	holderCtx, stopHolder := context.WithCancel(context.Background())
	defer stopHolder()
	holderDone := make(chan struct{})
	holderProber := health.NewProber(holderConn, health.Options{Interval: time.Hour})
	go func() {
		defer close(holderDone)
		_ = holderProber.Run(holderCtx)
	}()
	node := func(name string, addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
	}
	nodes := map[string]*corev1.Node{
		"x":          node("x", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "x"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}),
		"no-address": node("no-address", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "no-address"}),
	}
	// Only the reactor: the object tracker's schema set-up costs seconds.
	kube := &fake.Clientset{}
	kube.AddReactor("get", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.GetAction).GetName()
		if n, ok := nodes[name]; ok {
			return true, n, nil
		}
		return true, nil, apierrors.NewNotFound(corev1.Resource("nodes"), name)
	})
	logs := &logRecorder{}
	var reaches atomic.Bool
	el := &elector{kube: kube, namespace: "strait-system", identity: "b",
		heartbeatPort:     holderConn.LocalAddr().(*net.UDPAddr).Port,
		heartbeatInterval: 10 * time.Millisecond, heartbeatFailures: 3, log: slog.New(logs),
		replaces: func(holder health.Result) string {
			if holder.CutOff && reaches.Load() {
				return "the active gateway lost every remote cluster"
			}
			return ""
		}}
	hb := el.startHeartbeats()
	p, ok := hb.(*probes)
	if !ok || p.conn == nil {
		t.Fatalf("heartbeats %T without a socket; want UDP probes", hb)
	}

	// A holder whose address is unknown is not heard, and is looked up again.
	for _, holder := range []string{"no-address", "missing"} {
		hb.watch(holder)
		if hb.answering(holder) {
			t.Errorf("%s answering", holder)
		}
	}
	if got := logs.warnings(); got != 2 {
		t.Errorf("%d warnings for two holders without an address, want 2:\n%s", got, logs)
	}

	hb.watch("x")
	pollUntil(t, "x to answer heartbeats", func() bool { return hb.answering("x") })
	// x hands over (a clean stop): its answers say so.
	holderProber.SetLeaving(true)
	wantDelivered(t, hb.leaving(), "x", "x said it is leaving; heartbeats did not report it")
	if hb.answering("x") {
		t.Error("x answering after it said it is leaving; want not, so that a standby takes its Lease")
	}
	holderProber.SetLeaving(false)
	pollUntil(t, "x to answer heartbeats again", func() bool { return hb.answering("x") })
	// x lost every remote cluster. While this standby reaches none, x is
	// still the one to keep; once it reaches one, x is to be replaced.
	holderProber.SetCutOff(true)
	pollUntil(t, "x's answers to say it is cut off", func() bool { return p.prober.Results()["x"].CutOff })
	hb.watch("x")
	select {
	case h := <-hb.unfit():
		t.Fatalf("cut off %q delivered while this standby reaches no remote cluster", h)
	default:
	}
	if !hb.answering("x") {
		t.Error("x not answering while cut off and this standby reaches nothing either; want it kept")
	}
	reaches.Store(true)
	hb.watch("x") // the next round's look
	wantDelivered(t, hb.unfit(), "x", "x is cut off and this standby reaches a remote cluster; heartbeats did not report it")
	if hb.answering("x") {
		t.Error("x answering while cut off and this standby reaches a remote cluster; want not, so that it takes the Lease")
	}
	holderProber.SetCutOff(false)
	reaches.Store(false)
	pollUntil(t, "x to answer heartbeats, not cut off", func() bool { return hb.answering("x") && !p.prober.Results()["x"].CutOff })
	stopHolder()
	<-holderDone
	wantDelivered(t, hb.dead(), "x", "x stopped answering; heartbeats did not report it dead")
	if hb.answering("x") {
		t.Error("x still answering after it stopped")
	}

	hb.close()
	if _, err := p.conn.WriteToUDPAddrPort([]byte("x"), holderConn.LocalAddr().(*net.UDPAddr).AddrPort()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("heartbeat socket after close: write returned %v, want net.ErrClosed", err)
	}
}

// wantDelivered waits up to failsafe for a holder on c, which must be want;
// none fails the test with missing.
func wantDelivered(t *testing.T, c <-chan string, want, missing string) {
	t.Helper()
	select {
	case h := <-c:
		if h != want {
			t.Errorf("delivered %q, want %q", h, want)
		}
	case <-time.After(failsafe):
		t.Fatal(missing)
	}
}

// waitFor polls cond, a state the code under test reaches on its own time.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(failsafe)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
