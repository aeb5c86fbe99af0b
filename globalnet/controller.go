package globalnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/scheme"
)

// LeaseName is the Lease in the component namespace whose holder allots
// global IPs and writes Globalnet's objects; every instance applies the
// NAT.
const LeaseName = "strait-globalnet"

// DefaultMetricsAddr is where the controller serves Prometheus metrics: a
// port of its own on the gateway node's host network, next to the
// gateway's and the route agent's.
const DefaultMetricsAddr = ":9478"

// DaemonSetName is the controller's DaemonSet (the chart's templates/
// globalnet.yaml): when it is gone as the controller stops, Globalnet is
// being removed and its NAT goes too.
const DaemonSetName = "strait-globalnet"

// Labels of the objects the controller makes.
const (
	// ManagedLabel (value "true") marks the GlobalIngressIPs and the
	// strait-gn Services the controller makes and deletes.
	ManagedLabel = "globalnet.strait.dev/managed"
	// ServiceLabel names the exported Service a GlobalIngressIP or a
	// strait-gn Service stands for.
	ServiceLabel = "globalnet.strait.dev/service"
	// ServicePrefix begins the name of the Service made for an exported
	// ClusterIP Service: "strait-gn-" and a hash of its name.
	ServicePrefix = "strait-gn-"
)

// resync bounds how long drift of the node's NAT (someone flushing our
// chain) lasts.
const resync = 30 * time.Second

// Default numbers of addresses, as the CRDs default them.
const (
	defaultClusterIPs = 8
	defaultEgressIPs  = 1
)

// Config configures the Globalnet controller on one gateway node.
type Config struct {
	// ClusterID is this cluster's ID.
	ClusterID string
	// Namespace is Strait's component namespace (strait-system): the Lease
	// and the DaemonSet are there.
	Namespace string
	// NodeName is the node this instance runs on (for logs).
	NodeName string
	// GlobalCIDR is the cluster's global CIDR, allotted by the broker.
	GlobalCIDR netip.Prefix
	// LeaderElection makes the instance wait for LeaseName before it
	// allots; off only in tests that run one controller.
	LeaderElection bool
	// MetricsAddr is where to serve Prometheus metrics ("" or "0": none).
	MetricsAddr string
	// Registerer is where Globalnet's own metrics (Metrics) go; nil is
	// controller-runtime's metrics.Registry, which MetricsAddr serves,
	// when MetricsAddr is set, else nowhere. They are unregistered when
	// Run returns.
	Registerer prometheus.Registerer
	// HealthAddr serves /healthz and /readyz ("" or "0": none).
	HealthAddr string
	// Kernel is the node's kernel; nil is nodenet.Host().
	Kernel nodenet.Kernel
	Log    *slog.Logger
}

// Run runs the controller until ctx ends: on every instance the NAT of the
// node (ComputeNAT over the objects' status, applied within NATScope), and
// on the Lease holder the allocator (cluster-egress made, addresses allotted
// and written to status, GlobalIngressIPs and strait-gn Services made and
// deleted as Services are exported). When it stops and its DaemonSet is
// gone, the NAT is removed. Errors: a bad Config or the manager's.
func Run(ctx context.Context, rc *rest.Config, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = v1.ComponentNamespace
	}
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = "0"
	}
	if cfg.HealthAddr == "" {
		cfg.HealthAddr = "0"
	}
	if cfg.Kernel == nil {
		cfg.Kernel = nodenet.Host()
	}
	if _, err := NewPool(cfg.GlobalCIDR); err != nil {
		return err
	}
	cfg.GlobalCIDR = cfg.GlobalCIDR.Masked()
	log := cfg.Log.With("component", "globalnet", "cluster", cfg.ClusterID, "node", cfg.NodeName)
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme:                        scheme.New(),
		Logger:                        logr.FromSlogHandler(log.Handler()),
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:        cfg.HealthAddr,
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              LeaseName,
		LeaderElectionNamespace:       cfg.Namespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("globalnet manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "all"}}}
	})
	metrics := NewMetrics(cfg.GlobalCIDR)
	reg := cfg.Registerer
	if reg == nil && cfg.MetricsAddr != "0" {
		reg = ctrlmetrics.Registry
	}
	if reg != nil {
		if err := reg.Register(metrics); err != nil {
			return fmt.Errorf("globalnet metrics: %w", err)
		}
		defer reg.Unregister(metrics)
	}
	al := &allocator{c: mgr.GetClient(), reader: mgr.GetAPIReader(), assumed: newAssumed(mgr.GetAPIReader()), cfg: cfg, log: log.With("controller", "allocator"), metrics: metrics}
	err = ctrl.NewControllerManagedBy(mgr).Named("globalnet-allocator").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: ptr.To(true)}).
		Watches(&v1.ClusterGlobalEgressIP{}, all).
		Watches(&v1.GlobalEgressIP{}, all).
		Watches(&v1.GlobalIngressIP{}, all).
		Watches(&mcsv1beta1.ServiceExport{}, all).
		Watches(&corev1.Service{}, all).
		Watches(&discoveryv1.EndpointSlice{}, all).
		Complete(al)
	if err != nil {
		return err
	}
	nat := &natApplier{c: mgr.GetClient(), cfg: cfg, applier: &nodenet.Applier{Kernel: cfg.Kernel, Scope: NATScope()}, log: log.With("controller", "nat")}
	err = ctrl.NewControllerManagedBy(mgr).Named("globalnet-nat").
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: ptr.To(true), NeedLeaderElection: ptr.To(false)}).
		Watches(&v1.ClusterGlobalEgressIP{}, all).
		Watches(&v1.GlobalEgressIP{}, all).
		Watches(&v1.GlobalIngressIP{}, all).
		Watches(&corev1.Pod{}, all).
		Complete(nat)
	if err != nil {
		return err
	}
	if err := mgr.Add(&uninstaller{reader: mgr.GetAPIReader(), cfg: cfg, log: log}); err != nil {
		return err
	}
	log.Info("starting", "globalCIDR", cfg.GlobalCIDR, "namespace", cfg.Namespace, "leaderElection", cfg.LeaderElection)
	return mgr.Start(ctx)
}

// Cleanup removes Globalnet's NAT from the node k, and nothing else.
func Cleanup(k nodenet.Kernel) error {
	return (&nodenet.Applier{Kernel: k, Scope: NATScope()}).Remove()
}

// uninstaller removes the node's NAT when the controller stops because its
// DaemonSet is gone (leave); a restart or an upgrade leaves it in place.
type uninstaller struct {
	reader client.Reader
	cfg    Config
	log    *slog.Logger
}

var _ manager.LeaderElectionRunnable = (*uninstaller)(nil)

func (u *uninstaller) NeedLeaderElection() bool { return false }

func (u *uninstaller) Start(ctx context.Context) error {
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ds appsv1.DaemonSet
	err := u.reader.Get(sctx, types.NamespacedName{Namespace: u.cfg.Namespace, Name: DaemonSetName}, &ds)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && ds.DeletionTimestamp != nil):
		u.log.Info("removing the NAT: Globalnet is being uninstalled")
		return Cleanup(u.cfg.Kernel)
	case err != nil:
		u.log.Warn("cannot tell whether this is an uninstall; leaving the NAT", "err", err)
	default:
		u.log.Info("stopping; the NAT stays")
	}
	return nil
}

// natApplier makes the node's NAT match the objects' status.
type natApplier struct {
	c       client.Client
	cfg     Config
	applier *nodenet.Applier
	log     *slog.Logger
	last    string
}

func (n *natApplier) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var o Objects
	var cl v1.ClusterGlobalEgressIPList
	var eg v1.GlobalEgressIPList
	var in v1.GlobalIngressIPList
	var pods corev1.PodList
	for _, l := range []client.ObjectList{&cl, &eg, &in, &pods} {
		if err := n.c.List(ctx, l); err != nil {
			return reconcile.Result{}, err
		}
	}
	for i := range cl.Items {
		if cl.Items[i].Name == v1.ClusterEgressName {
			o.Cluster = &cl.Items[i]
		}
	}
	o.Egress, o.Ingress, o.Pods = eg.Items, in.Items, pods.Items
	s := ComputeNAT(NATFactsFrom(n.cfg.GlobalCIDR, o))
	if err := n.applier.Apply(s); err != nil {
		return reconcile.Result{}, fmt.Errorf("apply NAT: %w", err)
	}
	if txt := s.String(); txt != n.last {
		n.log.Info("NAT set", "rules", countRules(s))
		n.last = txt
	}
	return reconcile.Result{RequeueAfter: resync}, nil
}

func countRules(s nodenet.State) int {
	n := 0
	for _, c := range s.Chains {
		n += len(c.Rules)
	}
	return n
}

// allocator is the leader's controller: one reconcile over everything, as
// allocation is a function of all objects together. It reads from the
// manager's cache, merged with what it wrote itself that the cache may not
// show yet (assumed); it lists the holders uncached once, as it becomes the
// leader, for the writes of the leader before it that the cache, filled
// before this instance led, may lack.
type allocator struct {
	c       client.Client // cached reads
	reader  client.Reader // uncached
	assumed *assumed
	// started: the holders were listed uncached since this instance leads.
	started bool
	cfg     Config
	log     *slog.Logger
	metrics *Metrics // nil: none
}

// holder is one object that holds global IPs, as the allocator sees it.
type holder struct {
	key  string // the pool's owner key
	obj  client.Object
	n    int
	ips  []v1.IP // status as read
	cond []metav1.Condition
	// superseded: an older namespace-wide GlobalEgressIP in the namespace.
	superseded string
}

func (a *allocator) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	if !a.started {
		if err := a.start(ctx); err != nil {
			return reconcile.Result{}, err
		}
	}
	if err := a.ensureClusterEgress(ctx); err != nil {
		return reconcile.Result{}, err
	}
	if err := a.syncIngress(ctx); err != nil {
		return reconcile.Result{}, err
	}
	holders, err := a.holders(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	var errs []error
	for _, h := range a.allot(holders) {
		if err := a.writeStatus(ctx, h); err != nil {
			errs = append(errs, err)
		}
	}
	if err := a.syncServices(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := a.syncMirrors(ctx); err != nil {
		errs = append(errs, err)
	}
	var res reconcile.Result
	if a.assumed.waiting() {
		res.RequeueAfter = verifyAfter
	}
	return res, errors.Join(errs...)
}

// start lists the holders uncached and assumes them: the previous leader
// may have written statuses after this instance's cache was filled (it is
// filled before the Lease is won), and the cache may not show them yet.
func (a *allocator) start(ctx context.Context) error {
	var cl v1.ClusterGlobalEgressIPList
	var eg v1.GlobalEgressIPList
	var in v1.GlobalIngressIPList
	for _, l := range []client.ObjectList{&cl, &eg, &in} {
		if err := a.reader.List(ctx, l); err != nil {
			return fmt.Errorf("list the holders as the leader: %w", err)
		}
	}
	for i := range cl.Items {
		a.assumed.write(&cl.Items[i])
	}
	for i := range eg.Items {
		a.assumed.write(&eg.Items[i])
	}
	for i := range in.Items {
		a.assumed.write(&in.Items[i])
	}
	a.started = true
	return nil
}

// clusterEgress, egressIPs and ingressIPs are the holders as the allocator
// sees them: the cache's, merged with its own writes.
func (a *allocator) clusterEgress(ctx context.Context) ([]*v1.ClusterGlobalEgressIP, error) {
	var l v1.ClusterGlobalEgressIPList
	if err := a.c.List(ctx, &l); err != nil {
		return nil, err
	}
	return view(ctx, a.assumed, l.Items)
}

func (a *allocator) egressIPs(ctx context.Context) ([]*v1.GlobalEgressIP, error) {
	var l v1.GlobalEgressIPList
	if err := a.c.List(ctx, &l); err != nil {
		return nil, err
	}
	return view(ctx, a.assumed, l.Items)
}

func (a *allocator) ingressIPs(ctx context.Context) ([]*v1.GlobalIngressIP, error) {
	var l v1.GlobalIngressIPList
	if err := a.c.List(ctx, &l); err != nil {
		return nil, err
	}
	return view(ctx, a.assumed, l.Items)
}

// ensureClusterEgress makes cluster-egress when it is missing.
func (a *allocator) ensureClusterEgress(ctx context.Context) error {
	cl, err := a.clusterEgress(ctx)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(cl, func(c *v1.ClusterGlobalEgressIP) bool { return c.Name == v1.ClusterEgressName }) {
		return nil
	}
	c := &v1.ClusterGlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterEgressName}}
	err = a.c.Create(ctx, c)
	if err == nil {
		a.assumed.write(c)
		a.log.Info("made the ClusterGlobalEgressIP", "name", c.Name)
	}
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// holders returns every object that holds global IPs, the cluster's
// first, then oldest first.
func (a *allocator) holders(ctx context.Context) ([]*holder, error) {
	cl, err := a.clusterEgress(ctx)
	if err != nil {
		return nil, err
	}
	egs, err := a.egressIPs(ctx)
	if err != nil {
		return nil, err
	}
	in, err := a.ingressIPs(ctx)
	if err != nil {
		return nil, err
	}
	var out []*holder
	slices.SortFunc(cl, func(x, y *v1.ClusterGlobalEgressIP) int { return olderFirst(&x.ObjectMeta, &y.ObjectMeta) })
	for _, c := range cl {
		out = append(out, &holder{key: "ClusterGlobalEgressIP/" + c.Name, obj: c, n: int(ptr.Deref(c.Spec.NumberOfIPs, defaultClusterIPs)), ips: c.Status.AllocatedIPs, cond: c.Status.Conditions})
	}
	var rest []*holder
	wide := map[string]string{} // namespace → its oldest namespace-wide GlobalEgressIP
	slices.SortFunc(egs, func(x, y *v1.GlobalEgressIP) int { return olderFirst(&x.ObjectMeta, &y.ObjectMeta) })
	for _, g := range egs {
		h := &holder{key: "GlobalEgressIP/" + g.Namespace + "/" + g.Name, obj: g, n: int(ptr.Deref(g.Spec.NumberOfIPs, defaultEgressIPs)), ips: g.Status.AllocatedIPs, cond: g.Status.Conditions}
		if g.Spec.PodSelector == nil {
			if first, ok := wide[g.Namespace]; ok {
				h.superseded = first
			} else {
				wide[g.Namespace] = g.Name
			}
		}
		rest = append(rest, h)
	}
	for _, g := range in {
		var ips []v1.IP
		if g.Status.AllocatedIP != "" {
			ips = []v1.IP{g.Status.AllocatedIP}
		}
		rest = append(rest, &holder{key: "GlobalIngressIP/" + g.Namespace + "/" + g.Name, obj: g, n: 1, ips: ips, cond: g.Status.Conditions})
	}
	slices.SortStableFunc(rest, func(x, y *holder) int {
		mx, my := x.obj.(metav1.ObjectMetaAccessor).GetObjectMeta(), y.obj.(metav1.ObjectMetaAccessor).GetObjectMeta()
		return olderFirst(mx.(*metav1.ObjectMeta), my.(*metav1.ObjectMeta))
	})
	return append(out, rest...), nil
}

// allot rebuilds the pool from the holders' status (the older holder keeps
// an address two claim), then allots to those without a valid run, and
// returns the holders with the status they should have.
func (a *allocator) allot(holders []*holder) []*holder {
	pool, _ := NewPool(a.cfg.GlobalCIDR) // checked in Run
	var need []*holder
	refused := 0
	for _, h := range holders {
		if h.superseded != "" || h.obj.GetDeletionTimestamp() != nil {
			need = append(need, h)
			continue
		}
		addrs, ok := parseIPs(h.ips)
		if ok && len(addrs) == h.n && pool.Reserve(h.key, addrs) == nil {
			h.cond = setCond(h.obj, h.cond, metav1.ConditionTrue, v1.ReasonSuccess, fmt.Sprintf("%d global IPs from %s", h.n, a.cfg.GlobalCIDR))
			continue
		}
		need = append(need, h)
	}
	for _, h := range need {
		if h.superseded != "" {
			h.ips = nil
			h.cond = setCond(h.obj, h.cond, metav1.ConditionFalse, v1.ReasonSuperseded,
				fmt.Sprintf("the older GlobalEgressIP %s selects every pod of the namespace too; delete one of them", h.superseded))
			continue
		}
		if h.obj.GetDeletionTimestamp() != nil {
			continue
		}
		addrs, err := pool.Allocate(h.key, h.n)
		if err != nil {
			refused++
			h.ips = nil
			h.cond = setCond(h.obj, h.cond, metav1.ConditionFalse, v1.ReasonIPPoolExhausted,
				fmt.Sprintf("%d global IPs asked for, %s has no %d consecutive free addresses; free some or ask for fewer", h.n, a.cfg.GlobalCIDR, h.n))
			a.log.Warn("global CIDR exhausted", "object", h.key, "asked", h.n)
			continue
		}
		h.ips = nil
		for _, ad := range addrs {
			h.ips = append(h.ips, v1.IP(ad.String()))
		}
		h.cond = setCond(h.obj, h.cond, metav1.ConditionTrue, v1.ReasonSuccess, fmt.Sprintf("%d global IPs from %s", h.n, a.cfg.GlobalCIDR))
		a.log.Info("allotted", "object", h.key, "ips", h.ips)
	}
	a.metrics.recordAllotment(pool, refused)
	return holders
}

func parseIPs(ips []v1.IP) ([]netip.Addr, bool) {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		ad, err := netip.ParseAddr(string(ip))
		if err != nil {
			return nil, false
		}
		out = append(out, ad)
	}
	return out, len(out) > 0
}

func setCond(obj client.Object, conds []metav1.Condition, status metav1.ConditionStatus, reason, msg string) []metav1.Condition {
	conds = slices.Clone(conds)
	meta.SetStatusCondition(&conds, metav1.Condition{Type: v1.ConditionAllocated, Status: status, Reason: reason, Message: msg, ObservedGeneration: obj.GetGeneration()})
	return conds
}

// writeStatus writes h's status when it differs from what was read.
func (a *allocator) writeStatus(ctx context.Context, h *holder) error {
	switch o := h.obj.(type) {
	case *v1.ClusterGlobalEgressIP:
		want := v1.GlobalEgressIPStatus{AllocatedIPs: h.ips, Conditions: h.cond}
		if equality.Semantic.DeepEqual(o.Status, want) {
			return nil
		}
		o.Status = want
	case *v1.GlobalEgressIP:
		want := v1.GlobalEgressIPStatus{AllocatedIPs: h.ips, Conditions: h.cond}
		if equality.Semantic.DeepEqual(o.Status, want) {
			return nil
		}
		o.Status = want
	case *v1.GlobalIngressIP:
		want := v1.GlobalIngressIPStatus{Conditions: h.cond}
		if len(h.ips) == 1 {
			want.AllocatedIP = h.ips[0]
		}
		if equality.Semantic.DeepEqual(o.Status, want) {
			return nil
		}
		o.Status = want
	}
	switch err := a.c.Status().Update(ctx, h.obj); {
	case apierrors.IsNotFound(err):
		a.assumed.deleted(h.obj)
	case err != nil:
		return fmt.Errorf("status of %s: %w", h.key, err)
	default:
		a.assumed.write(h.obj)
	}
	return nil
}

// desiredIngress is the GlobalIngressIPs the exports call for, by
// namespace/name.
func (a *allocator) desiredIngress(ctx context.Context) (map[types.NamespacedName]v1.GlobalIngressIPSpec, error) {
	var exports mcsv1beta1.ServiceExportList
	if err := a.c.List(ctx, &exports); err != nil {
		return nil, err
	}
	slices.SortFunc(exports.Items, func(x, y mcsv1beta1.ServiceExport) int {
		return olderFirst(&metav1.ObjectMeta{Namespace: x.Namespace, Name: x.Name}, &metav1.ObjectMeta{Namespace: y.Namespace, Name: y.Name})
	})
	want := map[types.NamespacedName]v1.GlobalIngressIPSpec{}
	for _, ex := range exports.Items {
		if ex.DeletionTimestamp != nil {
			continue
		}
		var svc corev1.Service
		err := a.c.Get(ctx, types.NamespacedName{Namespace: ex.Namespace, Name: ex.Name}, &svc)
		if apierrors.IsNotFound(err) || (err == nil && svc.DeletionTimestamp != nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			continue
		case svc.Spec.ClusterIP == corev1.ClusterIPNone:
			var slices discoveryv1.EndpointSliceList
			if err := a.c.List(ctx, &slices, client.InNamespace(svc.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
				return nil, err
			}
			for _, sl := range slices.Items {
				for _, ep := range sl.Endpoints {
					if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || !ptr.Deref(ep.Conditions.Ready, true) {
						continue
					}
					k := types.NamespacedName{Namespace: svc.Namespace, Name: objectName("pod-", ep.TargetRef.Name)}
					if _, ok := want[k]; !ok {
						want[k] = v1.GlobalIngressIPSpec{Target: v1.HeadlessServicePod, ServiceRef: v1.ObjectRef{Name: svc.Name}, PodRef: &v1.ObjectRef{Name: ep.TargetRef.Name}}
					}
				}
			}
		default:
			k := types.NamespacedName{Namespace: svc.Namespace, Name: objectName("svc-", svc.Name)}
			want[k] = v1.GlobalIngressIPSpec{Target: v1.ClusterIPService, ServiceRef: v1.ObjectRef{Name: svc.Name}}
		}
	}
	return want, nil
}

// syncIngress makes the GlobalIngressIPs the exports call for and deletes
// the controller's others.
func (a *allocator) syncIngress(ctx context.Context) error {
	want, err := a.desiredIngress(ctx)
	if err != nil {
		return err
	}
	have, err := a.ingressIPs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range have {
		if g.Labels[ManagedLabel] != "true" {
			continue
		}
		k := types.NamespacedName{Namespace: g.Namespace, Name: g.Name}
		spec, ok := want[k]
		if ok && spec.Target == g.Spec.Target {
			delete(want, k)
			if !equality.Semantic.DeepEqual(spec, g.Spec) {
				g.Spec = spec
				g.Labels[ServiceLabel] = spec.ServiceRef.Name
				if err := a.c.Update(ctx, g); err != nil {
					errs = append(errs, err)
				} else {
					a.assumed.write(g)
				}
			}
			continue
		}
		// Not wanted, or its target changed (immutable): it goes, and
		// comes back anew if wanted.
		err := a.c.Delete(ctx, g, client.Preconditions{UID: &g.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		} else {
			a.assumed.deleted(g)
			a.log.Info("deleted GlobalIngressIP", "namespace", g.Namespace, "name", g.Name)
		}
	}
	for k, spec := range want {
		g := &v1.GlobalIngressIP{
			ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name, Labels: map[string]string{ManagedLabel: "true", ServiceLabel: spec.ServiceRef.Name}},
			Spec:       spec,
		}
		switch err := a.c.Create(ctx, g); {
		case apierrors.IsAlreadyExists(err):
			// Made before; the cache and the assumed writes lack it
			// (made by the previous leader, or deleted and made again
			// by someone else): it comes with the next event.
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("create GlobalIngressIP %s: %w", k, err))
			continue
		}
		a.assumed.write(g)
		a.log.Info("made GlobalIngressIP", "namespace", k.Namespace, "name", k.Name, "target", spec.Target)
	}
	return errors.Join(errs...)
}

// ServiceName is the name of the Service made for the exported ClusterIP
// Service svc: ServicePrefix and the first 10 hex digits of the SHA-256 of
// its name (a Service's name has at most 63 characters).
func ServiceName(svc string) string {
	sum := sha256.Sum256([]byte(svc))
	return ServicePrefix + hex.EncodeToString(sum[:])[:10]
}

// objectName is prefix+name, shortened with a hash when longer than an
// object name may be (253).
func objectName(prefix, name string) string {
	if len(prefix)+len(name) <= 253 {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(name))
	return prefix + name[:200] + "-" + hex.EncodeToString(sum[:])[:10]
}

// syncServices makes, for each ClusterIPService GlobalIngressIP with an
// address, the Service strait-gn-<hash> next to the exported one: its
// selector and ports, externalIPs the global IP, owned by the
// GlobalIngressIP; and deletes the controller's others (the garbage
// collector would too, once their owner is gone).
func (a *allocator) syncServices(ctx context.Context) error {
	in, err := a.ingressIPs(ctx)
	if err != nil {
		return err
	}
	want := map[types.NamespacedName]*corev1.Service{}
	for _, g := range in {
		if g.Labels[ManagedLabel] != "true" || g.Spec.Target != v1.ClusterIPService || g.Status.AllocatedIP == "" || g.DeletionTimestamp != nil {
			continue
		}
		var svc corev1.Service
		if err := a.c.Get(ctx, types.NamespacedName{Namespace: g.Namespace, Name: g.Spec.ServiceRef.Name}, &svc); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: g.Namespace, Name: ServiceName(svc.Name),
				Labels: map[string]string{ManagedLabel: "true", ServiceLabel: svc.Name},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.SchemeGroupVersion.String(), Kind: "GlobalIngressIP",
					Name: g.Name, UID: g.UID, Controller: ptr.To(true)}}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: svc.Spec.Selector, ExternalIPs: []string{string(g.Status.AllocatedIP)}},
		}
		for _, p := range svc.Spec.Ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: p.TargetPort})
		}
		want[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	var cached corev1.ServiceList
	if err := a.c.List(ctx, &cached, client.MatchingLabels{ManagedLabel: "true"}); err != nil {
		return err
	}
	have, err := view(ctx, a.assumed, cached.Items)
	if err != nil {
		return err
	}
	var errs []error
	for _, cur := range have {
		k := types.NamespacedName{Namespace: cur.Namespace, Name: cur.Name}
		w, ok := want[k]
		if !ok {
			if err := a.c.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			} else {
				a.assumed.deleted(cur)
			}
			continue
		}
		delete(want, k)
		if equality.Semantic.DeepEqual(cur.Spec.Selector, w.Spec.Selector) && equality.Semantic.DeepEqual(cur.Spec.ExternalIPs, w.Spec.ExternalIPs) &&
			samePorts(cur.Spec.Ports, w.Spec.Ports) && equality.Semantic.DeepEqual(cur.OwnerReferences, w.OwnerReferences) {
			continue
		}
		cur.Spec.Selector, cur.Spec.ExternalIPs, cur.Spec.Ports, cur.OwnerReferences = w.Spec.Selector, w.Spec.ExternalIPs, w.Spec.Ports, w.OwnerReferences
		if err := a.c.Update(ctx, cur); err != nil {
			errs = append(errs, err)
		} else {
			a.assumed.write(cur)
		}
	}
	for _, s := range want {
		switch err := a.c.Create(ctx, s); {
		case err == nil:
			a.assumed.write(s)
		case !apierrors.IsAlreadyExists(err):
			errs = append(errs, fmt.Errorf("create Service %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// samePorts compares what syncServices sets of each port (the apiserver
// fills in the rest).
func samePorts(a, b []corev1.ServicePort) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.ServicePort) bool {
		return x.Name == y.Name && x.Protocol == y.Protocol && x.Port == y.Port && x.TargetPort == y.TargetPort &&
			ptr.Deref(x.AppProtocol, "") == ptr.Deref(y.AppProtocol, "")
	})
}
