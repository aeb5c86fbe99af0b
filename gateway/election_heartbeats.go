package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"strait.dev/strait/gateway/health"
)

// nodeLookupTimeout bounds the read of the holder's Node for its address; a
// standby that cannot read it tries again at its next look at the Lease.
const nodeLookupTimeout = 5 * time.Second

// probes is the real heartbeater: a health.Prober on its own ephemeral UDP
// socket, probing the holder's node at its InternalIP on the health port,
// which the active gateway answers.
type probes struct {
	kube     kubernetes.Interface
	port     int
	log      *slog.Logger
	deadc    chan string
	leavingc chan string
	unfitc   chan string
	// replaces: el.replaces, or never.
	replaces func(holder health.Result) string

	stop    context.CancelFunc
	stopped chan struct{} // closed when the prober's Run returned
	conn    *net.UDPConn

	mu     sync.Mutex
	holder string
	prober *health.Prober  // nil when the socket could not be opened
	alive  map[string]bool // holders that answered and have not stopped since
}

var _ heartbeater = (*probes)(nil)

// startProbes opens the heartbeat socket and starts probing nobody yet. A
// standby without a socket still works: it hears nobody, so it takes the
// Lease only when it is free or expired.
func (el *elector) startProbes() heartbeater {
	p := &probes{kube: el.kube, port: el.heartbeatPort, log: el.log, deadc: make(chan string, 1),
		leavingc: make(chan string, 1), unfitc: make(chan string, 1), replaces: el.replaces,
		stopped: make(chan struct{}), alive: map[string]bool{}}
	if p.replaces == nil {
		p.replaces = func(health.Result) string { return "" }
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		el.log.Warn("cannot open the heartbeat socket; taking over only expired Leases", "err", err)
		close(p.stopped)
		p.stop = func() {}
		return p
	}
	p.conn = conn
	// Refused: a kill -9 or crash of the active gateway closes its port
	// while its node stays up, and the node's kernel refuses the next
	// heartbeat: dead at once, not after heartbeatFailures intervals.
	p.prober = health.NewProber(conn, health.Options{
		Interval: el.heartbeatInterval, Failures: el.heartbeatFailures, Refused: true, Log: el.log,
		OnChange: p.changed,
	})
	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	go func() {
		defer close(p.stopped)
		_ = p.prober.Run(ctx)
	}()
	return p
}

// changed follows the prober: a holder that answered and then stopped
// answering is dead; one whose answers say it is leaving is handing over;
// one this gateway should replace is unfit (else watch looks again at every
// round).
func (p *probes) changed(target string, r health.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case r.Status == health.Connected && !r.Leaving && target == p.holder && !p.alive[target] && p.replaces(r) == "":
		// Logged once per holder heard: a standby that never logs it
		// takes over only when the Lease expires (15 s).
		p.log.Info("hearing the active gateway's heartbeats", "active", target)
		p.alive[target] = true
	case r.Status == health.Connected && !r.Leaving && target == p.holder && p.judge(target, r):
		p.alive[target] = true // still alive: should the takeover fail, its death counts
	case r.Status == health.Connected && r.CutOff && !r.Leaving:
		p.alive[target] = true
		if target == p.holder {
			p.log.Info("the active gateway lost every remote cluster; staying standby: this gateway reaches none either, or lost them itself lately",
				"active", target, "backoff", cutOffBackoff)
		}
	case r.Status == health.Connected && r.Leaving:
		delete(p.alive, target)
		if target == p.holder {
			p.signal(p.leavingc, target)
		}
	case r.Status == health.Connected:
		p.alive[target] = true
	case r.Status == health.Error && p.alive[target] && target == p.holder:
		delete(p.alive, target)
		p.log.Info("the active gateway is gone", "active", target, "why", r.Message)
		p.signal(p.deadc, target)
	}
}

func (p *probes) answering(holder string) bool {
	if p.prober == nil {
		return false
	}
	r := p.prober.Results()[holder]
	return r.Status == health.Connected && !r.Leaving && p.replaces(r) == ""
}

// judge delivers holder, which answered r, on unfitc when this gateway
// should replace it, and logs why; it reports whether it should.
func (p *probes) judge(holder string, r health.Result) bool {
	why := p.replaces(r)
	if why == "" {
		return false
	}
	select {
	case p.unfitc <- holder:
		p.log.Info("replacing the active gateway", "active", holder, "why", why)
	default:
	}
	return true
}

// signal delivers holder on c unless a delivery is pending.
func (p *probes) signal(c chan string, holder string) {
	select {
	case c <- holder:
	default:
	}
}

func (p *probes) dead() <-chan string { return p.deadc }

func (p *probes) leaving() <-chan string { return p.leavingc }

func (p *probes) unfit() <-chan string { return p.unfitc }

// watch points the prober at the holder's node. A lookup that fails is
// retried at the next call. A holder already watched that this gateway
// should replace is delivered by unfit: what decides it (this gateway's
// reach, the traffic through the holder) changes without an answer.
func (p *probes) watch(holder string) {
	p.mu.Lock()
	same := holder == p.holder
	p.holder = holder
	p.mu.Unlock()
	if p.prober == nil {
		return
	}
	if same && holder != "" {
		if r := p.prober.Results()[holder]; r.Status == health.Connected && !r.Leaving {
			p.judge(holder, r)
		}
		return
	}
	if holder == "" {
		p.prober.SetTargets(nil)
		return
	}
	addr, err := p.address(holder)
	if err != nil {
		p.log.Warn("cannot find where to send heartbeats", "active", holder, "err", err)
		p.mu.Lock()
		p.holder = ""
		p.mu.Unlock()
		return
	}
	p.prober.SetTargets(map[string]netip.AddrPort{holder: addr})
}

// close stops the prober and returns once it stopped and its socket is
// closed, so that a standby loop opens no socket it does not close.
func (p *probes) close() {
	p.stop()
	<-p.stopped
	if p.conn != nil {
		_ = p.conn.Close() // Run closes it too, asynchronously; this makes it certain now
	}
}

func (p *probes) address(node string) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), nodeLookupTimeout)
	defer cancel()
	n, err := p.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("read node %s: %w", node, err)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return netip.AddrPortFrom(ip, uint16(p.port)), nil
			}
		}
	}
	return netip.AddrPort{}, fmt.Errorf("node %s has no InternalIP", node)
}
