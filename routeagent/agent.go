package routeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/nodenet"
)

// resync bounds how long drift (someone deleting our route) lasts.
const resync = 30 * time.Second

const (
	// retryBase is the wait before retrying a failed reconcile, doubled on
	// each failure in a row: a transient failure (the xtables lock held by
	// kube-proxy, a device not there yet) costs half a second, not a
	// resync, and a persistent one does not spin.
	retryBase = 500 * time.Millisecond
	// retryMax caps the back-off at the resync period, when the tick
	// retries anyway.
	retryMax = resync
)

// Config is a route agent's configuration.
type Config struct {
	ClusterID string
	Namespace string // strait-system
	NodeName  string
	// LocalCIDRs are the cluster's own pod and service CIDRs.
	LocalCIDRs []netip.Prefix
	// CableDriver is the cluster's cable driver (for the path MTU).
	CableDriver string
	UnderlayMTU int
	// MasqueradeBit is the bit of the packet mark the cluster's kube-proxy
	// sets on packets it will masquerade: its --iptables-masquerade-bit
	// (iptables.masqueradeBit or nftables.masqueradeBit in its
	// configuration file), 0 to 31; nil is kube-proxy's default,
	// DefaultMasqueradeBit. The agent clears that bit on traffic from other
	// clusters; with the wrong bit kube-proxy masquerades remote clients of
	// Services.
	MasqueradeBit *int
	// LeaseName is the gateways' Lease; its holder is the active gateway.
	LeaseName string
	// DaemonSet is the agent's own DaemonSet: when it is gone as the agent
	// stops, Strait is being removed and the agent cleans up; otherwise (a
	// restart, an upgrade) it leaves the data plane running.
	DaemonSet string
	// MetricsAddr is where Prometheus metrics are served (DefaultMetricsAddr
	// if empty; "-" serves none).
	MetricsAddr string
	// Kernel is the node's kernel; nil is nodenet.Host(), the current
	// network namespace.
	Kernel nodenet.Kernel
	Log    *slog.Logger
	// Clock times the resync and the retries; nil is the real clock.
	Clock clock.WithTicker
}

// Agent is one node's route agent.
type Agent struct {
	cfg     Config
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	applier *nodenet.Applier
	metrics *Metrics
	clock   clock.WithTicker
	// last is the String of the last state applied, to tell changes, and
	// lastState that state; inKernel says that the last Apply succeeded, so
	// that the kernel holds last as far as the agent knows.
	last      string
	lastState nodenet.State
	inKernel  bool
}

// New makes an agent that talks to the cluster through rc.
func New(rc *rest.Config, cfg Config) (*Agent, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NodeName == "" || cfg.ClusterID == "" {
		return nil, errors.New("node name and cluster ID are required")
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	if cfg.MasqueradeBit != nil {
		if err := ValidateMasqueradeBit(*cfg.MasqueradeBit); err != nil {
			return nil, err
		}
	}
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = DefaultMetricsAddr
	}
	if cfg.Kernel == nil {
		cfg.Kernel = nodenet.Host()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &Agent{cfg: cfg, kube: kube, dyn: dyn, applier: &nodenet.Applier{Kernel: cfg.Kernel, Scope: Scope()}, metrics: NewMetrics(), clock: cfg.Clock}, nil
}

// Metrics returns the agent's metrics.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// Run keeps the node's state, and serves the metrics, until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	log := a.cfg.Log.With("node", a.cfg.NodeName)
	if a.cfg.MetricsAddr != "-" {
		ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", a.cfg.MetricsAddr, err)
		}
		mctx, cancel := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := a.metrics.Serve(mctx, ln); err != nil {
				log.Error("metrics", "err", err)
			}
		}()
		defer func() { cancel(); <-served }()
	}
	kick := make(chan struct{}, 1)
	poke := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal(kick) },
		UpdateFunc: func(any, any) { signal(kick) },
		DeleteFunc: func(any) { signal(kick) },
	}
	nodes := informers.NewSharedInformerFactory(a.kube, resync)
	leases := informers.NewSharedInformerFactoryWithOptions(a.kube, resync, informers.WithNamespace(a.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.cfg.LeaseName).String()
		}))
	clusters := dynamicinformer.NewFilteredDynamicSharedInformerFactory(a.dyn, resync, a.cfg.Namespace, nil)
	nodeInf := nodes.Core().V1().Nodes().Informer()
	leaseInf := leases.Coordination().V1().Leases().Informer()
	clusterInf := clusters.ForResource(v1.SchemeGroupVersion.WithResource("clusters")).Informer()
	// The Gateways: the active one's status gives each connection's path
	// MTU (the gateway engine measures it; the agent applies it).
	gatewayInf := clusters.ForResource(v1.SchemeGroupVersion.WithResource("gateways")).Informer()
	for _, inf := range []cache.SharedIndexInformer{nodeInf, leaseInf, clusterInf, gatewayInf} {
		if _, err := inf.AddEventHandler(poke); err != nil {
			return err
		}
	}
	nodes.Start(ctx.Done())
	leases.Start(ctx.Done())
	clusters.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), nodeInf.HasSynced, leaseInf.HasSynced, clusterInf.HasSynced, gatewayInf.HasSynced) {
		return a.stop(log)
	}
	a.loop(ctx, log, kick, func() (Facts, error) {
		return a.facts(nodeInf.GetStore(), leaseInf.GetStore(), clusterInf.GetStore(), gatewayInf.GetStore())
	})
	return a.stop(log)
}

// loop reconciles the facts now, on every kick, every resync, and after a
// failure again after a back-off (retryBase doubling up to retryMax, reset
// by a success), until ctx ends. A kick applies only a changed state (see
// reconcile); the first reconcile, the resync and a retry apply whatever.
func (a *Agent) loop(ctx context.Context, log *slog.Logger, kick <-chan struct{}, facts func() (Facts, error)) {
	tick := a.clock.NewTicker(resync)
	defer tick.Stop()
	// One item: the node's whole state is one reconcile.
	const item = "state"
	backoff := workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax)
	var retry clock.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	resync := true
	for {
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		var retryC <-chan time.Time
		f, err := facts()
		if err := a.reconcile(f, err, resync); err != nil {
			d := backoff.When(item)
			log.Error("route agent", "err", err, "retry_in", d)
			retry = a.clock.NewTimer(d)
			retryC = retry.C()
		} else {
			backoff.Forget(item)
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
			resync = false
		case <-tick.C():
			resync = true
		case <-retryC:
			resync = true
		}
	}
}

// reconcile computes the state from f (unless factsErr says the facts
// could not be read) and applies it, recording the outcome in the metrics.
// A state equal to the one last applied, after a successful apply, is not
// applied again unless resync is set: informer events that change nothing
// of it (a Lease renewal every 2 s, a Node's status) would otherwise read
// every table of the packet filter, a fork and exec of iptables-save and
// ip6tables-save per table, several times a second on every node. Drift
// (someone else changing what is ours) is repaired on the resync, as the
// gateway repairs its share every status interval.
func (a *Agent) reconcile(f Facts, factsErr error, resync bool) error {
	err := factsErr
	if err == nil {
		err = Validate(f.Nodes)
	}
	var s nodenet.State
	if err == nil {
		s, err = Compute(f)
	}
	var txt string
	took := time.Duration(-1) // no apply
	if err == nil {
		txt = s.String()
		start := a.clock.Now()
		switch {
		case resync || !a.inKernel:
			err = a.applier.Apply(s)
			took = a.clock.Since(start)
		case txt != a.last:
			// An informer event: a failover changes routes, not the
			// packet filter, which ApplyChange then leaves unread.
			err = a.applier.ApplyChange(a.lastState, s)
			took = a.clock.Since(start)
		}
	}
	if err != nil {
		a.inKernel = false
		a.metrics.recordFailure()
		return err
	}
	a.inKernel = true
	changed := txt != a.last
	if changed {
		a.cfg.Log.Info("data plane set", "node", a.cfg.NodeName, "active", f.Active, "remote", len(f.Remote))
		a.last, a.lastState = txt, s
	}
	active := ""
	if slices.ContainsFunc(f.Nodes, func(n Node) bool { return n.Name == f.Active }) {
		active = f.Active
	}
	a.metrics.recordSuccess(changed, active, routedRemote(s), took)
	return nil
}

// routedRemote counts the remote subnets s routes through a gateway (not
// unreachable), once each whatever the number of routes to one.
func routedRemote(s nodenet.State) int {
	seen := map[netip.Prefix]bool{}
	for _, r := range s.Routes {
		if r.Table == RemoteTable && !r.Unreachable {
			seen[r.Dst] = true
		}
	}
	return len(seen)
}

// Cleanup removes everything the route agent makes on the node k, and
// nothing else (nodenet.Applier.Remove over Scope).
func Cleanup(k nodenet.Kernel) error {
	return (&nodenet.Applier{Kernel: k, Scope: Scope()}).Remove()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// facts reads the informers' stores.
func (a *Agent) facts(nodes, leases, clusters, gateways cache.Store) (Facts, error) {
	f := Facts{Local: a.cfg.LocalCIDRs, Cable: a.cfg.CableDriver, UnderlayMTU: a.cfg.UnderlayMTU, MasqueradeBit: a.cfg.MasqueradeBit, Families: a.applier.Kernel.Families()}
	for _, o := range nodes.List() {
		n := o.(*corev1.Node)
		nd := Node{Name: n.Name}
		for _, ad := range n.Status.Addresses {
			if ad.Type == corev1.NodeInternalIP {
				if ip, err := netip.ParseAddr(ad.Address); err == nil && !nd.IP.IsValid() {
					nd.IP = ip
				}
			}
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil {
				nd.PodCIDRs = append(nd.PodCIDRs, p)
			}
		}
		f.Nodes = append(f.Nodes, nd)
		if n.Name == a.cfg.NodeName {
			f.Self = nd
		}
	}
	sort.Slice(f.Nodes, func(i, j int) bool { return f.Nodes[i].Name < f.Nodes[j].Name })
	if f.Self.Name == "" {
		return f, fmt.Errorf("node %s not found", a.cfg.NodeName)
	}
	for _, o := range leases.List() {
		l := o.(*coordinationv1.Lease)
		if l.Name == a.cfg.LeaseName && l.Spec.HolderIdentity != nil {
			f.Active = *l.Spec.HolderIdentity
		}
	}
	byCluster := pathMTUs(gateways, f.Active)
	for _, o := range clusters.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var c v1.Cluster
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &c); err != nil {
			continue
		}
		if c.Labels[v1.ClusterIDLabel] == a.cfg.ClusterID || string(c.Spec.ClusterID) == a.cfg.ClusterID {
			continue
		}
		subnets := RemoteSubnets(c.Spec)
		f.Remote = append(f.Remote, subnets...)
		if m, ok := byCluster[c.Spec.ClusterID]; ok {
			if f.PathMTU == nil {
				f.PathMTU = map[netip.Prefix]int{}
			}
			for _, p := range subnets {
				f.PathMTU[p.Masked()] = m
			}
		}
	}
	return f, nil
}

// pathMTUs is the path MTU of each remote cluster, in bytes, as the status
// of the active gateway's Gateway (named after its node) gives them: only
// the active gateway's, as only its cables carry traffic. A connection
// without a figure is left out.
func pathMTUs(gateways cache.Store, active string) map[v1.ClusterID]int {
	out := map[v1.ClusterID]int{}
	if active == "" {
		return out
	}
	for _, o := range gateways.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok || u.GetName() != active {
			continue
		}
		var g v1.Gateway
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &g); err != nil {
			continue
		}
		for _, c := range g.Status.Connections {
			if c.PathMTU <= 0 {
				continue
			}
			if m, ok := out[c.ClusterID]; !ok || int(c.PathMTU) < m {
				out[c.ClusterID] = int(c.PathMTU)
			}
		}
	}
	return out
}

// stop cleans up when the agent's DaemonSet is gone or going (Strait is
// being removed from the cluster), and otherwise leaves the data plane as
// it is, so that a restart does not interrupt traffic.
func (a *Agent) stop(log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := a.kube.AppsV1().DaemonSets(a.cfg.Namespace).Get(ctx, a.cfg.DaemonSet, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || (err == nil && ds.DeletionTimestamp != nil):
		log.Info("removing the data plane: the route agent is being uninstalled")
		return Cleanup(a.cfg.Kernel)
	case err != nil:
		log.Warn("cannot tell whether this is an uninstall; leaving the data plane", "err", err)
	default:
		log.Info("stopping; the data plane stays")
	}
	return nil
}
