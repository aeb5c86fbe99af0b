package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"

	"strait.dev/strait/gateway/health"
)

// releaseTimeout bounds the release of the Lease on a clean stop. The
// process is going away: if the apiserver does not answer within this, the
// standbys take the Lease through heartbeats or expiry instead.
const releaseTimeout = 5 * time.Second

// handOverRounds is how many heartbeat intervals a stopping active gateway
// waits for a standby to take the Lease from it before it releases it. A
// standby that hears it learns that it is leaving from the answer to its
// next heartbeat and takes the Lease with one write: ten intervals (1 s by
// default) leave room for a loaded node, and bound what a stop with no
// standby (a leave, the only gateway) costs.
const handOverRounds = 10

// elector decides which gateway of a cluster is active. The Lease in the
// apiserver is the only authority: a gateway becomes active only by writing
// itself into it (optimistic concurrency makes that one writer), and stays
// active only while it renews it. What is fast is the detection of a dead
// active gateway: standbys send it heartbeats (the health probes it answers
// anyway), and once it has answered and then stops answering, they take the
// Lease at once instead of waiting for it to expire. An active gateway that
// cannot renew keeps its role (its tunnels do not need the apiserver), and a
// standby takes an expired Lease only from a holder that does not answer
// heartbeats. So a slow or unreachable apiserver, or a partition between the
// active gateway and the apiserver, changes nothing and makes no second
// active gateway; it only delays a takeover should the active gateway also
// die meanwhile. A clean stop hands the role over without a moment with no
// active gateway: the stopping gateway's heartbeat answers say it is
// leaving, and a standby that hears that takes the Lease from it at once
// (handOver). An active gateway that lost every remote cluster says so in
// its heartbeat answers, and a standby that reaches one takes the Lease from
// it, as from one through which no remote gateway answers it (replaces).
// See docs/gateway-failover.md.
//
// The Lease plumbing is client-go's resourcelock.LeaseLock; the policy above
// is ours, which is why this is not client-go's LeaderElector: that one lets
// a leader that cannot renew step down, takes every expired Lease, and knows
// no heartbeats.
//
// acquire and hold run one at a time; after hold returns, acquire may be
// called again on the same elector (the engine's standby loop).
type elector struct {
	kube      kubernetes.Interface
	namespace string
	identity  string
	// Heartbeats of the active gateway.
	heartbeatPort     int
	heartbeatInterval time.Duration
	heartbeatFailures int
	// standby runs once per acquire when another gateway is seen holding
	// the Lease: it removes what a predecessor on this node may have left (a
	// kill -9 leaves a kernel device and its rules behind). It reports
	// whether it did; when not (a predecessor is still handing over), it
	// runs again at the next round.
	standby func() bool
	// replaces says why this gateway, standing by, should take the role
	// from the holder, whose last heartbeat answer is holder (whether it
	// lost every remote cluster, health.Result's CutOff and Losing): "" to
	// keep it (Engine.replaces). Nil keeps it always.
	replaces func(holder health.Result) string
	log      *slog.Logger

	// The seams below let tests run the policy on fakes; the zero value of
	// each is the real thing.

	// lock reads and writes the Lease. nil: a resourcelock.LeaseLock on
	// namespace/LeaseName through kube. Its Update sends the resourceVersion
	// of its last Get, so of two gateways writing after the same read, one
	// gets a Conflict.
	lock resourcelock.Interface
	// heartbeats starts the heartbeats of one acquire. nil: UDP probes
	// through gateway/health to the holder node's InternalIP.
	heartbeats func() heartbeater
	// clock times retries, request deadlines and the Lease's expiry. nil:
	// the real clock.
	clock clock.WithDelayedExecution

	// observed is the Lease record as this gateway last saw it change, and
	// observedAt when, on this gateway's clock. A Lease expires when it has
	// not changed for leaseDuration as this gateway sees it, whatever the
	// holder's clock wrote into RenewTime: the gateways' clocks need not
	// agree.
	observed   *resourcelock.LeaderElectionRecord
	observedAt time.Time
}

// heartbeater is what the elector needs of the heartbeats a standby sends
// to the active gateway. One serves one acquire.
type heartbeater interface {
	// watch points the heartbeats at holder, the gateway named in the Lease;
	// "" points them nowhere.
	watch(holder string)
	// answering reports whether holder answers heartbeats now.
	answering(holder string) bool
	// dead delivers the watched holder once it has answered and then
	// stopped answering.
	dead() <-chan string
	// leaving delivers the watched holder when its answers say that it is
	// handing its role over (a clean stop); answering is false for it from
	// then on.
	leaving() <-chan string
	// unfit delivers the watched holder when this gateway should take the
	// role from it (elector.replaces: it lost every remote cluster, or none
	// answers through it, while this gateway reaches one); answering is
	// false for it then.
	unfit() <-chan string
	// close stops the heartbeats and frees what they hold (a socket).
	close()
}

// errLost ends a term: another gateway holds the Lease.
var errLost = errors.New("lost the gateway Lease")

// acquire returns once this gateway holds the Lease, with the Lease's
// transition count (the epoch of this term), or when ctx ends.
func (el *elector) acquire(ctx context.Context) (int32, error) {
	hb := el.startHeartbeats()
	defer hb.close()
	var (
		// forced is a holder our heartbeats heard and then lost. It is
		// taken at once while it stays silent, and stays forced until the
		// Lease names another holder, so that an apiserver error on the
		// first try does not turn a fast takeover into a wait for expiry.
		forced  string
		cleaned bool
		failing bool
	)
	for {
		epoch, holder, ok, err := el.tryAcquire(ctx, forced, hb.answering)
		switch {
		case ok && ctx.Err() != nil:
			// Taken as the caller stopped: give it back rather than leave
			// the standbys to wait for it to expire.
			if err := el.release(); err != nil {
				el.log.Warn("cannot release the gateway Lease", "err", err)
			}
			return 0, ctx.Err()
		case ok:
			if failing {
				el.log.Info("the gateway Lease is reachable again")
			}
			return epoch, nil
		case ctx.Err() != nil:
			return 0, ctx.Err()
		case err != nil:
			if !failing {
				el.log.Warn("cannot read or write the gateway Lease; trying again every retry period", "err", err)
				failing = true
			}
		default:
			if failing {
				el.log.Info("the gateway Lease is reachable again")
				failing = false
			}
			if holder != forced {
				forced = ""
			}
			hb.watch(holder)
			if !cleaned && holder != "" && el.standby != nil {
				cleaned = el.standby()
			}
		}
		// The period starts when a round ends, so that a slow apiserver is
		// not sent a new request the moment it answers the last one.
		t := el.clk().NewTimer(retryPeriod)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C():
		case h := <-hb.dead():
			t.Stop()
			el.log.Info("the active gateway stopped answering heartbeats; taking the Lease", "active", h)
			forced = h
		case h := <-hb.leaving():
			t.Stop()
			el.log.Info("the active gateway is handing over; taking the Lease", "active", h)
			forced = h
		case h := <-hb.unfit():
			t.Stop()
			el.log.Warn("the active gateway cannot carry traffic to the other clusters and this gateway reaches one; taking the Lease", "active", h)
			forced = h
		}
	}
}

// tryAcquire takes the Lease if it is free, already ours, held by a holder
// this gateway heard and then lost, that said it is leaving or that this
// gateway should replace (forced), or
// expired with a holder that does not answer heartbeats. It returns the holder it read when it did not
// take it. Losing a race (Conflict, AlreadyExists) is no error: the next
// round reads the winner.
func (el *elector) tryAcquire(ctx context.Context, forced string, answering func(string) bool) (epoch int32, holder string, ok bool, err error) {
	ctx, cancel := el.withTimeout(ctx, renewDeadline)
	defer cancel()
	lock := el.leaseLock()
	now := el.now()
	rec, _, err := lock.Get(ctx)
	if apierrors.IsNotFound(err) {
		r := el.record(now, 0, now)
		if err := lock.Create(ctx, r); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return 0, "", false, nil
			}
			return 0, "", false, leaseErr(ctx, "create", lock, err)
		}
		el.observe(r)
		return 0, el.identity, true, nil
	}
	if err != nil {
		return 0, "", false, leaseErr(ctx, "read", lock, err)
	}
	el.observe(*rec)
	holder = rec.HolderIdentity
	expired := el.clk().Since(el.observedAt) > leaseDuration
	next := *rec
	switch {
	case holder == el.identity:
		// Ours already: this gateway restarted within its term, which goes on.
	case holder == "" || (!answering(holder) && (holder == forced || expired)):
		next.LeaderTransitions++
		next.AcquireTime = metav1.NewTime(now)
	default:
		return 0, holder, false, nil
	}
	next = el.record(next.AcquireTime.Time, next.LeaderTransitions, now)
	if err := lock.Update(ctx, next); err != nil {
		if apierrors.IsConflict(err) {
			return 0, holder, false, nil
		}
		return 0, holder, false, leaseErr(ctx, "write", lock, err)
	}
	el.observe(next)
	return int32(next.LeaderTransitions), el.identity, true, nil
}

// hold renews the Lease every retry period until ctx ends (then it releases
// the Lease and returns nil), stop closes (then it returns nil at once, the
// Lease still held, for handOver; a renewal in flight is cut short, so that
// it cannot land after a standby read the Lease), or another gateway holds
// it (errLost). A nil stop never closes. Failing renewals do not end the
// term: the standbys hear this gateway answer heartbeats and leave the Lease
// alone.
func (el *elector) hold(ctx context.Context, stop <-chan struct{}) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if stop != nil {
		go func() {
			select {
			case <-stop:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	failing := false
	for {
		t := el.clk().NewTimer(retryPeriod)
		select {
		case <-stop:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			if err := el.release(); err != nil {
				el.log.Warn("cannot release the gateway Lease; the standbys take it when it expires or this gateway stops answering", "err", err)
			}
			return nil
		case <-t.C():
		}
		err := el.renew(rctx)
		switch {
		case errors.Is(err, errLost):
			return err
		case rctx.Err() != nil:
			// Stopping: the next round releases or returns.
		case err == nil && failing:
			el.log.Info("renewing the gateway Lease again")
			failing = false
		case err != nil && !failing:
			el.log.Warn("cannot renew the gateway Lease; staying active while the standbys hear this gateway", "err", err)
			failing = true
		}
	}
}

// renew writes a new RenewTime into the Lease if this gateway still holds
// it. A Conflict means someone wrote in between, most likely a standby
// taking over, so it reads again at once rather than a period later.
func (el *elector) renew(ctx context.Context) error {
	ctx, cancel := el.withTimeout(ctx, renewDeadline)
	defer cancel()
	lock := el.leaseLock()
	for try := 0; ; try++ {
		rec, _, err := lock.Get(ctx)
		if err != nil {
			return leaseErr(ctx, "read", lock, err)
		}
		if rec.HolderIdentity != el.identity {
			el.observe(*rec)
			return fmt.Errorf("%w: %q holds it", errLost, rec.HolderIdentity)
		}
		next := el.record(rec.AcquireTime.Time, rec.LeaderTransitions, el.now())
		err = lock.Update(ctx, next)
		switch {
		case err == nil:
			el.observe(next)
			return nil
		case !apierrors.IsConflict(err) || try > 0:
			return leaseErr(ctx, "write", lock, err)
		}
	}
}

// handOver gives the Lease to a standby on a clean stop, after hold
// returned for stop: say makes this gateway's heartbeat answers say that it
// is leaving, so that a standby that hears them takes the Lease from it at
// once, with no moment without an active gateway (route agents would route
// remote subnets nowhere meanwhile). When none has within handOverRounds
// heartbeat intervals (no standby hears this gateway: it is the only one, or
// every gateway is stopping), it releases the Lease for a standby's next
// look or a new gateway on this node. It returns the holder after that: the
// successor, or "" when the Lease was released; an error when the apiserver
// did not let it release the Lease (the standbys then take it when it
// expires).
func (el *elector) handOver(ctx context.Context, say func()) (string, error) {
	say()
	interval := el.heartbeatInterval
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	for round := 0; ; round++ {
		holder, err := el.holder(ctx)
		if err == nil && holder != el.identity {
			return holder, nil
		}
		if round == handOverRounds || ctx.Err() != nil {
			break
		}
		t := el.clk().NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C():
		}
	}
	if err := el.release(); err != nil {
		return el.identity, err
	}
	holder, err := el.holder(ctx)
	if err != nil {
		// Released (or taken meanwhile): either way not ours.
		return "", nil
	}
	return holder, nil
}

// holder reads the Lease's holder ("" when there is none).
func (el *elector) holder(ctx context.Context) (string, error) {
	ctx, cancel := el.withTimeout(ctx, renewDeadline)
	defer cancel()
	lock := el.leaseLock()
	rec, _, err := lock.Get(ctx)
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", leaseErr(ctx, "read", lock, err)
	}
	el.observe(*rec)
	return rec.HolderIdentity, nil
}

// release gives the Lease up on a clean stop, so that a standby takes over
// at its next look instead of waiting for heartbeats or expiry. The epoch
// stays; the next holder counts a transition.
func (el *elector) release() error {
	ctx, cancel := el.withTimeout(context.Background(), releaseTimeout)
	defer cancel()
	lock := el.leaseLock()
	rec, _, err := lock.Get(ctx)
	if err != nil {
		return leaseErr(ctx, "read", lock, err)
	}
	if rec.HolderIdentity != el.identity {
		return nil
	}
	next := *rec
	next.HolderIdentity = ""
	next.RenewTime = metav1.NewTime(el.now())
	if err := lock.Update(ctx, next); err != nil {
		return leaseErr(ctx, "write", lock, err)
	}
	el.observe(next)
	return nil
}

// leaseErr wraps the error of a request on the Lease. When our own deadline
// cut the request short, the request only says "context canceled"; the
// cause says why.
func leaseErr(ctx context.Context, op string, lock resourcelock.Interface, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%s Lease %s: %w (%w)", op, lock.Describe(), err, cause)
	}
	return fmt.Errorf("%s Lease %s: %w", op, lock.Describe(), err)
}

// record is the Lease record of this gateway's term.
func (el *elector) record(acquired time.Time, transitions int, renewed time.Time) resourcelock.LeaderElectionRecord {
	return resourcelock.LeaderElectionRecord{
		HolderIdentity:       el.identity,
		LeaseDurationSeconds: int(leaseDuration / time.Second),
		AcquireTime:          metav1.NewTime(acquired),
		RenewTime:            metav1.NewTime(renewed),
		LeaderTransitions:    transitions,
	}
}

// observe notes r as the Lease's content, restarting the expiry when it
// differs from what this gateway saw last.
func (el *elector) observe(r resourcelock.LeaderElectionRecord) {
	if el.observed != nil && sameRecord(*el.observed, r) {
		return
	}
	el.observed, el.observedAt = &r, el.clk().Now()
}

// sameRecord compares the fields of two Lease records, times by instant: a
// record read back from the apiserver carries another location than the
// one written.
func sameRecord(a, b resourcelock.LeaderElectionRecord) bool {
	return a.HolderIdentity == b.HolderIdentity && a.LeaseDurationSeconds == b.LeaseDurationSeconds &&
		a.AcquireTime.Equal(&b.AcquireTime) && a.RenewTime.Equal(&b.RenewTime) &&
		a.LeaderTransitions == b.LeaderTransitions && a.Strategy == b.Strategy && a.PreferredHolder == b.PreferredHolder
}

// leaseLock is the lock seam, a LeaseLock through kube unless a test set one.
func (el *elector) leaseLock() resourcelock.Interface {
	if el.lock == nil {
		el.lock = &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: el.namespace, Name: LeaseName},
			Client:     el.kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: el.identity},
		}
	}
	return el.lock
}

// startHeartbeats starts the heartbeats seam, UDP probes unless a test set one.
func (el *elector) startHeartbeats() heartbeater {
	if el.heartbeats != nil {
		return el.heartbeats()
	}
	return el.startProbes()
}

func (el *elector) clk() clock.WithDelayedExecution {
	if el.clock == nil {
		return clock.RealClock{}
	}
	return el.clock
}

// now is the time written into the Lease, to the microsecond the apiserver
// keeps, so that a record read back compares equal to the one written.
func (el *elector) now() time.Time {
	return el.clk().Now().Truncate(time.Microsecond)
}

// withTimeout is context.WithTimeout on the elector's clock, so that a test
// drives the deadline of a request to a slow apiserver.
func (el *elector) withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := el.clk().AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return ctx, func() {
		t.Stop()
		cancel(context.Canceled)
	}
}
