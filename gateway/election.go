package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"strait.dev/strait/gateway/health"
)

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
// die meanwhile. See docs/gateway-failover.md.
type elector struct {
	kube      kubernetes.Interface
	namespace string
	identity  string
	// Heartbeats of the active gateway.
	heartbeatPort     int
	heartbeatInterval time.Duration
	heartbeatFailures int
	// standby runs once when another gateway is seen holding the Lease: it
	// removes what a predecessor on this node may have left (a kill -9
	// leaves a kernel device and its rules behind).
	standby func()
	log     *slog.Logger

	observedRV   string
	observedTime time.Time
}

// leases is the Lease API of the namespace (timing: see engine.go).
func (el *elector) leases() interface {
	Get(context.Context, string, metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(context.Context, *coordinationv1.Lease, metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(context.Context, *coordinationv1.Lease, metav1.UpdateOptions) (*coordinationv1.Lease, error)
} {
	return el.kube.CoordinationV1().Leases(el.namespace)
}

// acquire returns once this gateway holds the Lease, with the Lease's
// transition count (the epoch of this term), or when ctx ends.
func (el *elector) acquire(ctx context.Context) (int32, error) {
	dead := make(chan string, 1)
	hb := &heartbeat{el: el, dead: dead}
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	go hb.run(hctx)
	tick := time.NewTicker(retryPeriod)
	defer tick.Stop()
	force := ""
	cleaned := false
	for {
		epoch, holder, ok, err := el.tryAcquire(ctx, force, hb.answering)
		switch {
		case err != nil:
			el.log.Warn("gateway election", "err", err)
		case ok:
			return epoch, nil
		default:
			hb.watch(holder)
			if !cleaned && holder != "" && el.standby != nil {
				el.standby()
				cleaned = true
			}
		}
		force = ""
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		case h := <-dead:
			el.log.Info("the active gateway stopped answering heartbeats; taking over", "active", h)
			force = h
		}
	}
}

// tryAcquire takes the Lease if it is free, already ours, held by a holder
// this gateway saw die (force), or expired with a holder that does not
// answer heartbeats. It returns the current holder when it did not.
func (el *elector) tryAcquire(ctx context.Context, force string, answering func(string) bool) (epoch int32, holder string, ok bool, err error) {
	now := metav1.NewMicroTime(time.Now())
	secs := int32(leaseDuration / time.Second)
	l, err := el.leases().Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: el.namespace},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &el.identity, LeaseDurationSeconds: &secs,
				AcquireTime: &now, RenewTime: &now, LeaseTransitions: ptr.To(int32(0))},
		}
		if _, err := el.leases().Create(ctx, l, metav1.CreateOptions{}); err != nil {
			return 0, "", false, err
		}
		return 0, el.identity, true, nil
	}
	if err != nil {
		return 0, "", false, err
	}
	if l.ResourceVersion != el.observedRV {
		el.observedRV, el.observedTime = l.ResourceVersion, time.Now()
	}
	holder = ptr.Deref(l.Spec.HolderIdentity, "")
	transitions := ptr.Deref(l.Spec.LeaseTransitions, int32(0))
	expired := time.Since(el.observedTime) > leaseDuration
	switch {
	case holder == el.identity:
		// Ours already (this gateway restarted within its term).
	case holder == "" || (expired && !answering(holder)) || (force != "" && force == holder):
		transitions++
		l.Spec.AcquireTime = &now
	default:
		return 0, holder, false, nil
	}
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &el.identity, &now, &secs
	l.Spec.LeaseTransitions = &transitions
	if _, err := el.leases().Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return 0, holder, false, nil // someone else was faster
		}
		return 0, holder, false, err
	}
	return transitions, el.identity, true, nil
}

// hold renews the Lease until ctx ends (then it releases it) or another
// gateway holds it. Failing renewals do not end the term: the standbys see
// this gateway answer heartbeats and leave the Lease alone.
func (el *elector) hold(ctx context.Context) error {
	tick := time.NewTicker(retryPeriod)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			el.release()
			return nil
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, renewDeadline)
		err := el.renew(rctx)
		cancel()
		switch {
		case errors.Is(err, errLost):
			return err
		case err == nil && failing:
			el.log.Info("renewing the gateway Lease again")
			failing = false
		case err != nil && !failing:
			el.log.Warn("cannot renew the gateway Lease; staying active while the standbys hear this gateway", "err", err)
			failing = true
		}
	}
}

var errLost = errors.New("lost the gateway Lease")

func (el *elector) renew(ctx context.Context) error {
	l, err := el.leases().Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != el.identity {
		return fmt.Errorf("%w: %s holds it", errLost, h)
	}
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	_, err = el.leases().Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// release gives the Lease up on a clean stop, so a standby takes over
// without waiting.
func (el *elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := el.leases().Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil || ptr.Deref(l.Spec.HolderIdentity, "") != el.identity {
		return
	}
	empty := ""
	l.Spec.HolderIdentity = &empty
	if _, err := el.leases().Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		el.log.Warn("releasing the gateway Lease", "err", err)
	}
}

// heartbeat probes the active gateway from a standby and reports it dead
// once it answered and then stopped answering.
type heartbeat struct {
	el   *elector
	dead chan<- string

	mu     sync.Mutex
	holder string
	prober *health.Prober
	alive  map[string]bool // holders that answered and have not stopped since
}

// answering reports whether holder answers heartbeats now.
func (h *heartbeat) answering(holder string) bool {
	h.mu.Lock()
	p := h.prober
	h.mu.Unlock()
	if p == nil {
		return false
	}
	return p.Results()[holder].Status == health.Connected
}

func (h *heartbeat) run(ctx context.Context) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		h.el.log.Warn("heartbeat socket", "err", err)
		return
	}
	h.mu.Lock()
	h.alive = map[string]bool{}
	h.prober = health.NewProber(conn, health.Options{
		Interval: h.el.heartbeatInterval, Failures: h.el.heartbeatFailures, Log: h.el.log,
		OnChange: func(target string, r health.Result) {
			h.mu.Lock()
			defer h.mu.Unlock()
			switch {
			case r.Status == health.Connected:
				h.alive[target] = true
			case r.Status == health.Error && h.alive[target] && target == h.holder:
				delete(h.alive, target)
				select {
				case h.dead <- target:
				default:
				}
			}
		},
	})
	p := h.prober
	h.mu.Unlock()
	_ = p.Run(ctx)
}

// watch points the heartbeats at the current holder.
func (h *heartbeat) watch(holder string) {
	h.mu.Lock()
	p := h.prober
	same := holder == h.holder
	h.holder = holder
	h.mu.Unlock()
	if p == nil || (same && holder != "") {
		return
	}
	if holder == "" {
		p.SetTargets(nil)
		return
	}
	addr, err := h.address(holder)
	if err != nil {
		h.el.log.Warn("heartbeat target", "active", holder, "err", err)
		h.mu.Lock()
		h.holder = "" // try again next round
		h.mu.Unlock()
		return
	}
	p.SetTargets(map[string]netip.AddrPort{holder: addr})
}

func (h *heartbeat) address(node string) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := h.el.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return netip.AddrPort{}, err
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return netip.AddrPortFrom(ip, uint16(h.el.heartbeatPort)), nil
			}
		}
	}
	return netip.AddrPort{}, fmt.Errorf("node %s has no InternalIP", node)
}
