package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/health"
	"strait.dev/strait/gateway/natdiscovery"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/scheme"
)

// Leader election timing. The Lease is the authority on which gateway is
// active; heartbeats between the gateways make a takeover fast (see
// elector). leaseDuration is how long a Lease whose holder neither renews
// nor answers heartbeats stands; renewDeadline bounds one renewal; the
// active gateway renews, and standbys look, every retryPeriod.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
	// LeaseName is the Lease the gateways of a cluster compete for.
	LeaseName = v1.GatewayLeaseName
	// DefaultHeartbeatInterval and DefaultHeartbeatFailures: standbys take
	// over 4 × 100 ms after the active gateway's last answer. Shorter would
	// risk a takeover on a busy 2-core node's scheduling hiccup; a takeover
	// costs a fraction of a second of traffic, so a rare false one is cheap.
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultHeartbeatFailures = 4
	// statusInterval bounds how stale the Gateway status's round-trip
	// times can get; it is also the informer's resync period.
	statusInterval = 30 * time.Second
	// localInterval is how often the active gateway re-reads its local
	// facts (the Node, the key Secret, which it may only get, not watch):
	// a rotated key reaches the Endpoint and the open driver within it. A
	// change of the Node reaches them at once, through a watch.
	localInterval = statusInterval
	// resyncInterval is how often the active gateway looks at its health
	// probes and NAT discovery without an Endpoint event: the status of a
	// connection follows its probes within it.
	resyncInterval = time.Second
	// termRetryMin and termRetryMax bound the back-off after an active term
	// failed (the apiserver refused the publish, the broker credential is
	// missing): the Lease is released meanwhile, so a healthier gateway
	// takes over rather than this one thrashing.
	termRetryMin = time.Second
	termRetryMax = time.Minute
	// handOverTimeout bounds a clean stop's handover (handOver): the Lease
	// to a standby, then forwarding until it carries the traffic, which
	// takes the new Endpoint's trip through the broker to the other
	// clusters (about a second; a few on a loaded machine). Past it the
	// data plane is cleared anyway. It, a Lease release (releaseTimeout)
	// and the last status write fit the DaemonSet's grace period (20 s).
	handOverTimeout = 8 * time.Second
	// handOverPoll is how often a stopping gateway looks whether its
	// successor carries the traffic yet: what it may forward longer than
	// needed.
	handOverPoll = 200 * time.Millisecond
)

// Config is a gateway engine's configuration.
type Config struct {
	ClusterID    string
	Namespace    string // strait-system
	NodeName     string
	PodCIDRs     []netip.Prefix
	ServiceCIDRs []netip.Prefix
	// GlobalCIDR is the cluster's Globalnet global CIDR (IPv4), allotted
	// by the broker; not valid without Globalnet. With it, the Cluster
	// publishes it as spec.globalCIDRs, the Endpoint's subnets are it
	// alone, and the health-check address is its second address
	// (docs/globalnet.md, "Reserved addresses").
	GlobalCIDR netip.Prefix
	// CableDriver names the cable driver (a pkg/cabledriver descriptor).
	CableDriver v1.CableDriver
	// Cable are the driver's settings (port, VNI), published in the
	// Endpoint; a keyed driver's private key is read from its Secret.
	Cable            cabledriver.Settings
	NATDiscoveryPort int32
	// NATDiscoveryBind is the address the NAT discovery port is bound to
	// (it carries takeover announcements too). The zero value, every
	// address, is what a gateway needs; tests whose engines share one host
	// give each its own loopback address.
	NATDiscoveryBind netip.Addr
	// HealthCheckPort is the UDP port of the health probes between gateways.
	HealthCheckPort int
	// HealthCheckBind is the address the health-check port is bound to.
	// The zero value, every address, is what a gateway needs: heartbeats
	// come to the node's InternalIP, health probes to the health-check
	// address on the cable. Tests whose engines share one host give each
	// its own loopback address.
	HealthCheckBind netip.Addr
	// HealthCheckInterval is the time between probes of one connection.
	HealthCheckInterval time.Duration
	// HealthCheckFailures is how many unanswered probes make an error.
	HealthCheckFailures int
	// PathMTUSearch tunes the path MTU search the active gateway runs on
	// the health channel to each remote gateway (health.PMTUOptions;
	// Disabled turns it off). The standbys' heartbeats do not search.
	PathMTUSearch health.PMTUOptions
	// PathMTU overrides the path MTU per remote cluster, in bytes (IP
	// header included): the figure the Gateway status shows for that
	// cluster's connection, whatever the probes find (ParsePathMTU).
	PathMTU map[v1.ClusterID]int
	// HeartbeatInterval and HeartbeatFailures: how often standbys probe the
	// active gateway, and how many unanswered probes make them take over.
	HeartbeatInterval time.Duration
	HeartbeatFailures int
	// PublicIP overrides the node's strait.dev/public-ip annotation.
	PublicIP netip.Addr
	// BrokerSecret names the Secret holding the member's broker credential.
	BrokerSecret string
	// Dataplane receives the desired cable state.
	Dataplane Dataplane
	// Metrics, when set, are kept up to date; their traffic counters are
	// read from the Dataplane when it has a Traffic method.
	Metrics *Metrics
	Log     *slog.Logger
}

// Engine is one gateway node's engine.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	rest   *rest.Config
	kube   kubernetes.Interface
	c      client.Client
	driver cabledriver.Descriptor
	// started is when the engine was made: the Ready condition's
	// transition time.
	started metav1.Time
	// endpoints are the namespace's Endpoints (the other clusters' and
	// this one's) as an informer keeps them for the engine's whole life
	// (Run): standing by, the reachability probes take their targets from
	// it (startReach); active, the term reads it (termEndpoints), so that
	// a takeover finds it listed and watched already. Nil when it could
	// not start (then each term starts its own).
	endpoints *objectCache[v1.Endpoint]
	// reach asks the remote gateways whether they answer this gateway
	// (startReach); nil when it could not start.
	reach *natdiscovery.Discoverer
	// throughLostSince is when every remote gateway stopped answering the
	// health probes this gateway sends through the active one, in Unix
	// nanoseconds; zero while one answers (startReach).
	throughLostSince atomic.Int64
	// cutOffAt is when this gateway last said it lost every remote
	// cluster, in Unix nanoseconds; zero if never (reachesRemote).
	cutOffAt atomic.Int64
	// whyNot is replaces' last reason to stay standby though a fault was
	// in sight (a string), so that each change is logged once.
	whyNot atomic.Value
}

// New makes an engine that talks to the local cluster through rc. It fails
// on a missing data plane, an unknown cable driver or invalid settings.
func New(rc *rest.Config, cfg Config) (*Engine, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Dataplane == nil {
		return nil, errors.New("no data plane")
	}
	desc, err := cabledriver.Get(cfg.CableDriver)
	if err != nil {
		return nil, err
	}
	if err := desc.Validate(cfg.Cable); err != nil {
		return nil, fmt.Errorf("%s settings: %w", desc.Name, err)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.HeartbeatFailures <= 0 {
		cfg.HeartbeatFailures = DefaultHeartbeatFailures
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	c, err := client.New(rc, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	if tc, ok := cfg.Dataplane.(interface {
		Traffic() map[string]cable.Traffic
	}); ok && cfg.Metrics != nil {
		cfg.Metrics.SetTrafficSource(tc.Traffic)
	}
	return &Engine{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName, "cluster", cfg.ClusterID), rest: rc, kube: kube, c: c,
		driver: desc, started: metav1.Now()}, nil
}

// Run runs the engine until ctx ends: it stands by until it wins the
// gateway Lease, is active while it holds it, and when it loses it (another
// gateway took it) or its active term fails, clears its data plane and
// stands by again. An apiserver that is away (at start too) is waited for,
// with back-off. On a clean stop an active gateway hands the role over to a
// standby and keeps forwarding until the standby carries the traffic (make
// before break: handOver), then clears its data plane; it records a passive
// status. Only ctx ends Run; it returns nil.
func (e *Engine) Run(ctx context.Context) error {
	err := e.firstStatus(ctx)
	if err != nil {
		return e.stopped()
	}
	rctx, stopReach := context.WithCancel(ctx)
	var rwg sync.WaitGroup
	defer rwg.Wait()
	defer stopReach()
	// The Endpoints' informer runs while this gateway stands by, so that
	// its first list is not on a takeover's path (about 0.1 s: the first
	// list, and WaitForCacheSync's polling). A standby reads it only for
	// its reachability probes, as before.
	if e.endpoints, err = watchObjects[v1.Endpoint](rctx, e, &rwg, "endpoints", ""); err != nil {
		e.log.Warn("cannot watch Endpoints while standing by; each active term lists them anew", "err", err)
	}
	e.reach = e.startReach(rctx, &rwg, e.endpoints)
	el := &elector{
		kube: e.kube, namespace: e.cfg.Namespace, identity: e.cfg.NodeName,
		heartbeatPort: e.cfg.HealthCheckPort, heartbeatInterval: e.cfg.HeartbeatInterval,
		heartbeatFailures: e.cfg.HeartbeatFailures, log: e.log, replaces: e.replaces,
		standby: func() bool {
			if e.predecessorHandingOver() {
				e.log.Info("a gateway on this node is handing over and still forwarding; leaving its data plane to it")
				return false
			}
			if err := e.cfg.Dataplane.Close(); err != nil {
				e.log.Warn("removing a predecessor's data plane", "err", err)
			}
			return true
		},
	}
	backoff := termRetryMin
	for {
		epoch, err := el.acquire(ctx)
		if err != nil {
			return e.stopped()
		}
		e.log.Info("active", "epoch", epoch)
		err = e.term(ctx, el, epoch)
		if ctx.Err() != nil {
			return e.stopped()
		}
		if errors.Is(err, errLost) {
			e.log.Warn("lost the active role; standing by", "err", err)
			backoff = termRetryMin
		} else {
			e.log.Error("active term failed; released the Lease, standing by", "err", err, "retryIn", backoff)
			if !sleepCtx(ctx, backoff) {
				return e.stopped()
			}
			backoff = min(2*backoff, termRetryMax)
		}
		if err := e.writeStatus(ctx, v1.HAStatusPassive, "", nil); err != nil {
			e.log.Warn("passive status", "err", err)
		}
	}
}

// firstStatus records a passive status before the engine competes for the
// Lease, trying again with back-off while the apiserver is away or refuses
// (a gateway that starts with its node, before the apiserver is up, waits
// for it instead of exiting into CrashLoopBackOff). Its error is ctx's.
func (e *Engine) firstStatus(ctx context.Context) error {
	backoff := termRetryMin
	for {
		err := e.writeStatus(ctx, v1.HAStatusPassive, "", nil)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.log.Warn("cannot record the gateway status; trying again", "err", err, "retryIn", backoff)
		if !sleepCtx(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, termRetryMax)
	}
}

// sleepCtx waits for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// term is one active term: it holds the Lease and runs the active work
// until either ends. It returns errLost (wrapped) when another gateway took
// the Lease, the active work's error (the Lease then released), or nil when
// ctx ended: then the term ends with a handover (handOver). The data plane
// is cleared in every case, except when a new gateway on this node took
// over during the handover: it is that one's then.
func (e *Engine) term(ctx context.Context, el *elector, epoch int32) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The Lease outlives ctx: hold stops renewing when ctx ends, and the
	// handover gives the Lease on.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	held := make(chan error, 1)
	holdDone := make(chan struct{})
	go func() {
		defer close(holdDone)
		held <- el.hold(hctx, ctx.Done())
	}()
	handedOver := false // read after runActive returned
	handOver := func(p *health.Prober, carried []v1.Connection) bool {
		if ctx.Err() == nil {
			// Lost, or failed: no handover.
			return true
		}
		<-holdDone
		handedOver = true
		return e.handOver(el, p, carried)
	}
	active := make(chan error, 1)
	go func() { active <- e.runActive(actx, epoch, handOver) }()
	var err error
	select {
	case err = <-held:
		cancel()
		<-active
	case err = <-active:
		cancel()
		hcancel()
		<-held // releases the Lease, unless it returned for the stop
		if err == nil && ctx.Err() == nil {
			err = errors.New("active gateway stopped")
		}
	}
	if ctx.Err() != nil && !handedOver {
		// Stopped before the data plane ran: nothing to hand over, but
		// the Lease is still this gateway's (hold returned for the stop).
		if rerr := el.release(); rerr != nil {
			e.log.Warn("cannot release the gateway Lease; the standbys take it when it expires or this gateway stops answering", "err", rerr)
		}
	}
	return err
}

// handOver ends an active term on a clean stop, make before break. The
// syncer, informers and NAT discovery have stopped; the prober (p) still
// answers and the data plane still forwards. The Lease goes to a standby
// without a moment with no active gateway (elector.handOver); then this
// gateway keeps forwarding, for the other clusters that still send to it,
// until its successor carries the traffic: its Gateway status says active
// with every remote cluster this one listed (carried), connected where this
// one was. The status is that of the successor's health probes through its
// cables, which answer once the other clusters have its Endpoint. All of it
// within handOverTimeout. It reports whether to clear the data plane: not
// when a new gateway on this node took over meanwhile (the device and the
// rules are its now).
func (e *Engine) handOver(el *elector, p *health.Prober, carried []v1.Connection) bool {
	ctx, cancel := context.WithTimeout(context.Background(), handOverTimeout)
	defer cancel()
	e.log.Info("stopping: handing the active role over; forwarding until the next active gateway carries the traffic")
	next, err := el.handOver(ctx, func() { p.SetLeaving(true) })
	switch {
	case err != nil:
		e.log.Warn("cannot release the gateway Lease; the standbys take it when it expires; clearing the data plane", "err", err)
		return true
	case next == "":
		// No standby took it: none hears this gateway (a leave, or the
		// only gateway). A standby's next look, or a new gateway on this
		// node, takes the released Lease.
		e.log.Info("no standby took the active role; released the Lease and clearing the data plane")
		return true
	}
	if err := e.writeStatus(ctx, v1.HAStatusPassive, "", nil); err != nil {
		e.log.Warn("passive status", "err", err)
	}
	succ, done := e.awaitSuccessor(ctx, carried)
	switch {
	case succ == e.cfg.NodeName:
		e.log.Info("a new gateway on this node took the active role; leaving the data plane to it")
		return false
	case done:
		e.log.Info("handed the active role over; clearing the data plane", "active", succ)
	default:
		e.log.Warn("the next active gateway does not carry the traffic yet; clearing the data plane anyway", "active", succ, "waited", handOverTimeout)
	}
	return true
}

// awaitSuccessor waits until ctx ends for the Lease's holder to carry the
// connections of carried (see handOver), and returns it and whether it
// does. A holder with this gateway's name is a new gateway on this node:
// it returns at once.
func (e *Engine) awaitSuccessor(ctx context.Context, carried []v1.Connection) (string, bool) {
	var holder string
	err := wait.PollUntilContextCancel(ctx, handOverPoll, true, func(ctx context.Context) (bool, error) {
		l, err := e.kube.CoordinationV1().Leases(e.cfg.Namespace).Get(ctx, LeaseName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		holder = ptr.Deref(l.Spec.HolderIdentity, "")
		switch holder {
		case "":
			return false, nil
		case e.cfg.NodeName:
			return true, nil
		}
		var gw v1.Gateway
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.cfg.Namespace, Name: holder}, &gw); err != nil {
			return false, nil
		}
		return carries(gw.Status, carried), nil
	})
	return holder, err == nil
}

// carries reports whether a Gateway status is active with a connection to
// the remote cluster of every connection of carried, connected where that
// one was.
func carries(st v1.GatewayStatus, carried []v1.Connection) bool {
	if st.HAStatus != v1.HAStatusActive {
		return false
	}
	for _, c := range carried {
		i := slices.IndexFunc(st.Connections, func(n v1.Connection) bool { return n.ClusterID == c.ClusterID })
		if i < 0 || (c.Status == v1.Connected && st.Connections[i].Status != v1.Connected) {
			return false
		}
	}
	return true
}

// predecessorHandingOver reports whether another gateway process on this
// node holds the health-check port: only an active gateway does, so it is a
// predecessor still handing over after a clean stop, whose data plane still
// forwards (its own stop clears it).
func (e *Engine) predecessorHandingOver() bool {
	if e.cfg.HealthCheckPort == 0 {
		return false
	}
	conn, err := net.ListenUDP("udp", udpAddr(e.cfg.HealthCheckBind, e.cfg.HealthCheckPort))
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	_ = conn.Close()
	return false
}

// stopped records, on a clean stop (SIGTERM), that this gateway is not
// active, so that the status does not claim an active gateway that is gone.
// Best effort: the apiserver may be away.
func (e *Engine) stopped() error {
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := e.writeStatus(sctx, v1.HAStatusPassive, "", nil); err != nil {
		e.log.Warn("final status", "err", err)
	}
	return nil
}

// runActive is the active gateway's work: publish, sync, and drive the data
// plane from the desired state until ctx ends. Every goroutine of the term
// (prober, NAT discovery, syncer, informers) has ended, and its sockets are
// closed, when it returns: the next term never overlaps this one. Once it
// has driven the data plane, it ends by calling handOver with the prober
// and the connections it last reported, after everything else stopped and
// before the prober stops, and clears the data plane if handOver says so.
func (e *Engine) runActive(ctx context.Context, epoch int32, handOver func(p *health.Prober, carried []v1.Connection) bool) error {
	// The prober outlives ctx until handOver returned: the standbys hear
	// through it that this gateway is leaving.
	fwd, stopFwd := context.WithCancel(context.WithoutCancel(ctx))
	var fwg sync.WaitGroup
	defer fwg.Wait()
	defer stopFwd()
	var (
		prober     *health.Prober
		t          *activeTerm
		forwarding bool
	)
	// Take the data plane down when this gateway stops being active, after
	// the rest of the term (defers run last in, first out).
	defer func() {
		if !forwarding {
			return
		}
		var carried []v1.Connection
		if t != nil {
			carried = t.lastStatus
		}
		if !handOver(prober, carried) {
			return
		}
		if err := e.cfg.Dataplane.Close(); err != nil {
			e.log.Warn("data plane cleanup", "err", err)
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: defers run last in, first out
	defer cancel()
	// Answer heartbeats and health probes first: the standbys watch for it.
	start := time.Now()
	prober, err := e.startProber(fwd, &fwg)
	if err != nil {
		return err
	}
	local, settings, node, err := e.localEndpoint(ctx)
	if err != nil {
		return err
	}
	local.Annotations = map[string]string{v1.GatewayEpochAnnotation: strconv.Itoa(int(epoch))}
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.SetActive(true)
		defer func() {
			// A standby shows no connections: they were this term's.
			e.cfg.Metrics.SetConnections(nil)
			e.cfg.Metrics.SetActive(false)
		}()
	}
	// Traffic first: the cable with every remote peer the cache knows,
	// then the takeover announcements, and only then the writes and reads
	// that wait for the apiserver (the Gateway status, the candidates, the
	// Endpoint), each of which took tens of milliseconds in a sandbox
	// failover, about 0.3 s together. The cable comes before the Endpoint
	// too: a remote gateway that learns the new Endpoint sends its first
	// handshake at once, and one this gateway drops (no peer yet) is
	// retried only after WireGuard's 5 s rekey timeout; behind NAT only the
	// remote side can open the path (TestDataplane's kill -9 gaps behind
	// NAT were about 6 s with the Endpoint first).
	discovery, err := e.startDiscovery(ctx, &wg)
	if err != nil {
		return err
	}
	cache, err := e.termEndpoints(ctx, &wg)
	if err != nil {
		return err
	}
	// Takeover announcements: this term's own, to the other clusters'
	// active gateways, and theirs, on the NAT discovery socket.
	tk, err := newTakeover(e.cfg.ClusterID, e.cfg.NodeName, epoch, e.driver, settings, e.log)
	if err != nil {
		return err
	}
	discovery.SetOther(tk.deliver)
	t = &activeTerm{e: e, local: local, settings: settings, region: node.Labels[corev1.LabelTopologyRegion],
		prober: prober, discovery: discovery, cache: cache, reachChanged: time.Now(), takeover: tk}
	forwarding = true
	t.forward(ctx)
	// The cable has every remote peer now: tell the remote gateways, which
	// then move their cables here without waiting for the Endpoint to
	// come through the broker.
	announceTick := time.NewTicker(announceInterval)
	defer announceTick.Stop()
	announcing := announceTick.C
	if !t.announce() {
		announcing = nil
	}
	e.log.Info("forwarding; takeover announced", "epoch", epoch, "after", time.Since(start).Round(time.Millisecond))
	// The Lease was taken a moment ago, in this epoch: the first active
	// status needs no look at it. The other Gateways of the cluster are
	// shown passive from the first step on (see demoteOthers), once their
	// informer has listed them.
	if err := e.writeStatus(ctx, v1.HAStatusActive, local.Name, nil); err != nil {
		return err
	}
	gateways, err := e.watchGateways(ctx, &wg)
	if err != nil {
		return err
	}
	nodeChanged, err := e.watchNode(ctx, &wg)
	if err != nil {
		return err
	}
	// The standby gateways, as candidates in the Endpoint. A gateway that
	// the Gateways' informer lists later (a new one writes its Gateway as
	// it starts) makes the local Endpoint stale (below).
	gws, _ := gateways.list()
	candidates, cerr := e.candidates(ctx)
	if cerr != nil {
		e.log.Warn("publishing the Endpoint without its candidates for now", "err", cerr)
	}
	local.Spec.Candidates = candidates
	t.gateways, t.standbys, t.localStale = gateways, otherGateways(gws, e.cfg.NodeName), cerr != nil
	if err := e.publish(ctx, local, node); err != nil {
		return err
	}
	// A term without the broker credential fails (and is retried): the
	// gateway has nothing to publish to. Once it runs, the syncer follows
	// the credential: a join that renews it restarts the syncer in place.
	if _, err := broker.ReadCredentials(ctx, e.kube, e.cfg.Namespace, e.cfg.BrokerSecret); err != nil {
		return err
	}
	wg.Go(func() {
		err := broker.RunWithCredentials(ctx, e.kube, e.cfg.Namespace, e.cfg.BrokerSecret, e.log, func(ctx context.Context, creds *broker.Credentials) error {
			syncer, err := e.newSyncer(creds)
			if err != nil {
				return err
			}
			return syncer.Run(ctx)
		})
		if err != nil {
			e.log.Error("syncer", "err", err)
		}
	})
	tick := time.NewTicker(resyncInterval)
	defer tick.Stop()
	localTick := time.NewTicker(localInterval)
	defer localTick.Stop()
	// quiet: the last wake-up was an announcement's, which changed
	// nothing step looks at (or stepped itself).
	quiet := false
	for {
		if !quiet {
			if t.localStale {
				t.refreshLocal(ctx)
			}
			t.step(ctx)
		}
		quiet = false
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-cache.changed:
		case <-gateways.changed:
			// A gateway that appeared or went is a change of the
			// Endpoint's candidates.
			if gws, err := gateways.list(); err == nil && !slices.Equal(otherGateways(gws, e.cfg.NodeName), t.standbys) {
				t.localStale = true
			}
		case <-localTick.C:
			t.localStale = true
		case <-nodeChanged:
			t.localStale = true
		case <-announcing:
			if !t.announce() {
				announceTick.Stop()
				announcing = nil
			}
			quiet = true
		case d := <-tk.inbox:
			t.receive(ctx, d)
			quiet = true
		}
	}
}

// announce sends this term's takeover announcement to the remote gateways
// that have not acknowledged it; false when it is done (takeover.announce).
func (t *activeTerm) announce() bool {
	eps, err := t.cache.list()
	if err != nil {
		return true
	}
	return t.takeover.announce(t.takeover.endpoints(eps), t.discovery.Send)
}

// receive handles a takeover announcement or acknowledgement (see
// takeover.receive): after an accepted announcement the data plane takes
// the new remote gateway at once, and then the acknowledgement goes back.
func (t *activeTerm) receive(ctx context.Context, d datagram) {
	eps, err := t.cache.list()
	if err != nil {
		return
	}
	reply, switched := t.takeover.receive(d, t.takeover.endpoints(eps))
	if switched {
		t.step(ctx)
	}
	if reply != nil {
		if err := t.discovery.Send(reply, d.from); err != nil {
			t.e.log.Info("cannot acknowledge a takeover announcement", "to", d.from, "err", err)
		}
	}
}

// activeTerm is what one active term reconciles, and what it last did.
type activeTerm struct {
	e        *Engine
	local    *v1.Endpoint
	settings cabledriver.Settings
	// region is the Node's topology region, published in the Cluster.
	region string
	// localStale asks for the local facts to be read again.
	localStale bool
	// standbys names the other Gateways of the cluster the local
	// Endpoint's candidates were last made from.
	standbys []string
	// takeover holds the takeover announcements, this term's and the
	// other clusters' (whose Endpoints step adds to the cached ones).
	takeover  *takeover
	prober    *health.Prober
	discovery *natdiscovery.Discoverer
	cache     *objectCache[v1.Endpoint]
	// gateways are the cluster's Gateway objects, as an informer keeps
	// them; demoting says whether a demotion failed and is owed.
	gateways *objectCache[v1.Gateway]
	demoting bool

	// cutOff: every connection has been in error since lostSince, for
	// cutOffHold at least (followCutOff); reachChanged is when cutOff last
	// changed, or the term's start.
	cutOff       bool
	lostSince    time.Time
	reachChanged time.Time

	applied    *CableState // last state the data plane took
	appliedAt  time.Time
	lastStatus []v1.Connection // last connections written
	statusAt   time.Time
}

// refreshLocal reads the local facts again (the Node's addresses and
// annotation, the key Secret) and, when the Endpoint, the cable settings or
// the region changed, republishes them and takes them for the next step, so
// that the data plane hands the open driver the new settings in this term:
// no failover. On a failure it keeps the old ones and tries again at the
// next step.
func (t *activeTerm) refreshLocal(ctx context.Context) {
	e := t.e
	local, settings, node, err := e.localEndpoint(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("read the local endpoint", "err", err)
		}
		return
	}
	local.Annotations = t.local.Annotations
	gws, err := t.gateways.list()
	if err != nil {
		e.log.Warn("read the Gateways from the cache", "err", err)
		return
	}
	if local.Spec.Candidates, err = e.candidates(ctx); err != nil {
		if ctx.Err() == nil {
			e.log.Warn("read the standby gateways", "err", err)
		}
		return
	}
	standbys := otherGateways(gws, e.cfg.NodeName)
	region := node.Labels[corev1.LabelTopologyRegion]
	if equality.Semantic.DeepEqual(local.Spec, t.local.Spec) && settings == t.settings && region == t.region {
		t.localStale, t.standbys = false, standbys
		return
	}
	if err := e.publish(ctx, local, node); err != nil {
		if ctx.Err() == nil {
			e.log.Warn("republish the local endpoint", "err", err)
		}
		return
	}
	e.log.Info("local endpoint changed; republished it and handing the data plane its settings",
		"publicIPs", local.Spec.PublicIPs, "privateIPs", local.Spec.PrivateIPs, "port", settings.Port,
		"keyChanged", settings.PrivateKey != t.settings.PrivateKey)
	t.local, t.settings, t.region, t.localStale, t.standbys = local, settings, region, false, standbys
	if err := t.takeover.setKey(e.driver, settings); err != nil {
		e.log.Warn("takeover announcements keep the old key", "err", err)
	}
}

// otherGateways names the Gateways in gws other than self's, sorted.
func otherGateways(gws []v1.Gateway, self string) []string {
	var names []string
	for _, gw := range gws {
		if gw.Name != self {
			names = append(names, gw.Name)
		}
	}
	slices.Sort(names)
	return names
}

// step computes the desired state from the cached Endpoints and NAT
// discovery, and hands it to the data plane, the prober, NAT discovery, the
// metrics and the Gateway status. Failures are logged and retried by the
// next step.
func (t *activeTerm) step(ctx context.Context) {
	st, ok := t.forward(ctx)
	if !ok {
		return
	}
	e := t.e
	// Write the status when a connection changes state, and refresh the
	// round-trip times now and then.
	results := t.prober.Results()
	t.followCutOff(st.HealthTargets, results)
	conns := withHealth(st.Connections, results, e.cfg.PathMTU)
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.SetConnections(conns)
	}
	// After the data plane: showing a predecessor passive is worth less
	// than carrying its traffic.
	defer t.demoteOthers(ctx)
	if sameStates(conns, t.lastStatus) && time.Since(t.statusAt) <= statusInterval {
		return
	}
	// A gateway that lost the Lease and has not noticed yet (its renewal
	// comes within a retry period) must not say active over its
	// successor's demotion: it looks at the Lease first.
	lease, err := e.readLease(ctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			e.log.Warn("active status: cannot read the gateway Lease; trying again", "err", err)
		}
		return
	case lease.holder != e.cfg.NodeName:
		e.log.Info("not writing an active status: another gateway holds the Lease", "holder", lease.holder)
		return
	}
	if err := e.writeStatus(ctx, v1.HAStatusActive, t.local.Name, conns, t.reachCondition(conns)); err != nil {
		if ctx.Err() == nil {
			e.log.Warn("active status", "err", err)
		}
		return
	}
	t.statusAt, t.lastStatus = time.Now(), conns
}

// forward is the data plane's share of a step: it computes the desired
// state from the cached Endpoints and NAT discovery and hands it to NAT
// discovery, the data plane and the prober; false when the Endpoints could
// not be read. A new term calls it before anything else that waits for the
// apiserver, so that traffic flows first.
func (t *activeTerm) forward(ctx context.Context) (State, bool) {
	e := t.e
	eps, err := t.cache.list()
	if err != nil {
		e.log.Warn("read Endpoints from the cache", "err", err)
		return State{}, false
	}
	eps = t.takeover.endpoints(eps)
	reach := map[string]netip.Addr{}
	for _, ep := range eps {
		if a, _ := t.discovery.Choice(ep.Name); a.IsValid() {
			reach[ep.Name] = a
		}
	}
	st := Compute(Facts{ClusterID: e.cfg.ClusterID, Local: t.local.Spec, Cable: t.settings,
		HealthCheckPort: uint16(e.cfg.HealthCheckPort), Endpoints: eps, Reach: reach})
	t.discovery.SetTargets(st.DiscoveryTargets)
	// Hand the data plane changes at once, and the same state now and then,
	// so that the node is repaired should something else have changed it
	// (the appliers are idempotent).
	changed := t.applied == nil || !t.applied.Equal(st.Cable)
	if changed {
		for _, s := range st.Skipped {
			e.log.Info("remote endpoint is not a peer", "endpoint", s.Endpoint, "reason", s.Reason)
		}
	}
	if changed || time.Since(t.appliedAt) > statusInterval {
		if err := e.cfg.Dataplane.Set(ctx, st.Cable); err != nil {
			e.log.Warn("data plane", "err", err)
		} else {
			t.applied, t.appliedAt = &st.Cable, time.Now()
		}
	}
	t.prober.SetTargets(st.HealthTargets)
	return st, true
}

// demoteOthers shows every other Gateway of the cluster that still says
// active as passive (see Engine.demote), once the informer has listed them
// and the Lease says this gateway holds it. A failure is logged once and
// tried again at the next step; a Conflict is no failure: the informer
// brings the newer object, and the next step looks at it.
func (t *activeTerm) demoteOthers(ctx context.Context) {
	e := t.e
	gws, err := t.gateways.list()
	if err != nil {
		e.log.Warn("read Gateways from the cache", "err", err)
		return
	}
	var stale []v1.Gateway
	for _, g := range gws {
		if g.Name != e.cfg.NodeName && g.Status.HAStatus == v1.HAStatusActive {
			stale = append(stale, g)
		}
	}
	if len(stale) == 0 {
		return
	}
	lease, err := e.readLease(ctx)
	if err == nil && lease.holder != e.cfg.NodeName {
		// This term is over; hold notices within a retry period.
		return
	}
	for i := range stale {
		if err == nil {
			err = e.demote(ctx, &stale[i], lease)
		}
	}
	switch {
	case err != nil && ctx.Err() == nil && !t.demoting:
		e.log.Warn("cannot show a former active gateway passive; trying again every step", "err", err)
		t.demoting = true
	case err == nil && t.demoting:
		e.log.Info("showing the former active gateways passive again")
		t.demoting = false
	}
}

// objectCache is objects of one kind (T, decoded from the dynamic
// informer's unstructured objects) as an informer keeps them; changed
// signals (coalesced) on every event.
type objectCache[T any] struct {
	lister  toolscache.GenericNamespaceLister
	synced  func() bool
	changed <-chan struct{}
	// informer is the informer behind lister, for follow.
	informer toolscache.SharedIndexInformer
}

// follow is a view of c whose changed signals (coalesced) every event
// from now on, apart from c's own changed, until ctx ends: one informer,
// several readers with a signal each. Its handler is removed when ctx
// ends; that goroutine joins wg. An error when the informer has stopped.
func (c *objectCache[T]) follow(ctx context.Context, wg *sync.WaitGroup) (*objectCache[T], error) {
	p := newPoker()
	reg, err := c.informer.AddEventHandler(pokeOnEvents(p))
	if err != nil {
		return nil, err
	}
	wg.Go(func() {
		<-ctx.Done()
		_ = c.informer.RemoveEventHandler(reg)
	})
	v := *c
	v.changed = p
	return &v, nil
}

// pokeOnEvents pokes p on every event of an informer.
func pokeOnEvents(p poker) toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.poke() }, UpdateFunc: func(any, any) { p.poke() }, DeleteFunc: func(any) { p.poke() },
	}
}

// list returns the cached objects; none before the informer's first list.
// An object that does not decode into T is an error naming it.
func (c *objectCache[T]) list() ([]T, error) {
	if !c.synced() {
		return nil, nil
	}
	objs, err := c.lister.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var x T
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &x); err != nil {
			return nil, fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		out = append(out, x)
	}
	return out, nil
}

// watchObjects starts an informer on resource (of strait.dev/v1alpha1) in
// the engine's namespace, limited by the label selector (empty: all). It
// does not wait for the first list. Its goroutines join wg when ctx ends.
func watchObjects[T any](ctx context.Context, e *Engine, wg *sync.WaitGroup, resource, selector string) (*objectCache[T], error) {
	dyn, err := dynamic.NewForConfig(e.rest)
	if err != nil {
		return nil, err
	}
	p := newPoker()
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, statusInterval, e.cfg.Namespace,
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	gi := f.ForResource(v1.SchemeGroupVersion.WithResource(resource))
	inf := gi.Informer()
	if _, err := inf.AddEventHandler(pokeOnEvents(p)); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	wg.Go(func() {
		<-ctx.Done()
		f.Shutdown()
	})
	return &objectCache[T]{lister: gi.Lister().ByNamespace(e.cfg.Namespace), synced: inf.HasSynced, changed: p, informer: inf}, nil
}

// watchGateways starts an informer on the Gateways of this gateway's
// cluster (by their cluster-id label). It does not wait for the first list.
func (e *Engine) watchGateways(ctx context.Context, wg *sync.WaitGroup) (*objectCache[v1.Gateway], error) {
	selector := labels.SelectorFromSet(labels.Set{v1.ClusterIDLabel: e.cfg.ClusterID}).String()
	return watchObjects[v1.Gateway](ctx, e, wg, "gateways", selector)
}

// poker is a coalescing signal: poke never blocks.
type poker chan struct{}

func newPoker() poker { return make(poker, 1) }

func (p poker) poke() {
	select {
	case p <- struct{}{}:
	default:
	}
}

// watchNode starts an informer on this gateway's Node; the channel signals
// (coalesced) on every event. Its goroutines join wg when ctx ends.
func (e *Engine) watchNode(ctx context.Context, wg *sync.WaitGroup) (<-chan struct{}, error) {
	p := newPoker()
	f := informers.NewSharedInformerFactoryWithOptions(e.kube, statusInterval,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", e.cfg.NodeName).String()
		}))
	inf := f.Core().V1().Nodes().Informer()
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { p.poke() }, UpdateFunc: func(any, any) { p.poke() }, DeleteFunc: func(any) { p.poke() },
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	wg.Go(func() {
		<-ctx.Done()
		f.Shutdown()
	})
	return p, nil
}

// termEndpoints is an active term's view of the namespace's Endpoints,
// listed: the engine's own informer (Engine.endpoints), which a standby
// keeps synced, with a signal of the term's own until ctx ends (its
// goroutine joins wg); only a gateway that takes the role as it starts
// waits for its first list. Without the engine's informer, an informer of
// the term's own, waited for.
func (e *Engine) termEndpoints(ctx context.Context, wg *sync.WaitGroup) (*objectCache[v1.Endpoint], error) {
	var c *objectCache[v1.Endpoint]
	var err error
	if e.endpoints == nil {
		c, err = watchObjects[v1.Endpoint](ctx, e, wg, "endpoints", "")
	} else {
		c, err = e.endpoints.follow(ctx, wg)
	}
	if err != nil {
		return nil, fmt.Errorf("endpoint informer: %w", err)
	}
	// WaitForCacheSync looks every 0.1 s; a synced informer passes at once.
	if !c.synced() && !toolscache.WaitForCacheSync(ctx.Done(), c.synced) {
		return nil, fmt.Errorf("endpoint informer: %w", context.Cause(ctx))
	}
	return c, nil
}

// startProber answers and sends health probes on the health-check port
// until ctx ends; the prober, having closed its socket, joins wg.
func (e *Engine) startProber(ctx context.Context, wg *sync.WaitGroup) (*health.Prober, error) {
	conn, err := listenUDP(ctx, e.cfg.HealthCheckBind, e.cfg.HealthCheckPort)
	if err != nil {
		return nil, fmt.Errorf("health-check port %d: %w", e.cfg.HealthCheckPort, err)
	}
	p := health.NewProber(conn, health.Options{
		Interval: e.cfg.HealthCheckInterval, Failures: e.cfg.HealthCheckFailures, Log: e.log,
		OnChange: func(target string, r health.Result) {
			e.log.Info("connection", "endpoint", target, "status", r.Status, "message", r.Message, "pathMTU", r.PathMTU)
		},
		PMTU: &e.cfg.PathMTUSearch,
	})
	wg.Go(func() { _ = p.Run(ctx) })
	return p, nil
}

// startDiscovery answers and sends NAT discovery requests on the NAT
// discovery port until ctx ends; it joins wg, its socket closed.
func (e *Engine) startDiscovery(ctx context.Context, wg *sync.WaitGroup) (*natdiscovery.Discoverer, error) {
	conn, err := listenUDP(ctx, e.cfg.NATDiscoveryBind, int(e.cfg.NATDiscoveryPort))
	if err != nil {
		return nil, fmt.Errorf("NAT discovery port %d: %w", e.cfg.NATDiscoveryPort, err)
	}
	d := natdiscovery.New(conn)
	wg.Go(func() { _ = d.Run(ctx) })
	return d, nil
}

// listenUDP binds a UDP port on addr (the zero Addr: every address),
// retrying for a few seconds: a predecessor process on the same host may
// still be letting go of it. This engine's own previous term has closed its
// sockets before the next term starts (runActive joins them).
func listenUDP(ctx context.Context, addr netip.Addr, port int) (*net.UDPConn, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.ListenUDP("udp", udpAddr(addr, port))
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// udpAddr is addr:port; the zero addr is every address.
func udpAddr(addr netip.Addr, port int) *net.UDPAddr {
	if !addr.IsValid() {
		return &net.UDPAddr{Port: port}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port)))
}
