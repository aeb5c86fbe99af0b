package lighthouse

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/pkg/syncer"
)

// DefaultMetricsAddr is where the agent serves Prometheus metrics.
const DefaultMetricsAddr = ":9464"

// LeaseName is the Lease in the component namespace whose holder is the
// cluster's active Lighthouse agent (leader election; the other replicas
// wait).
const LeaseName = "strait-lighthouse"

// Config configures the Lighthouse agent of one member cluster.
type Config struct {
	// ClusterID is this cluster's ID (the cluster.clusterset.k8s.io
	// ClusterProperty).
	ClusterID string
	// Namespace is Strait's component namespace (strait-system): the
	// export records live there, next to the broker Secret and the Gateways.
	Namespace string
	// BrokerSecret names the Secret in Namespace with the member's broker
	// credential (broker.SecretName).
	BrokerSecret string
	// LeaderElection makes the agent wait for LeaseName before it writes;
	// off only in tests that run one agent.
	LeaderElection bool
	// MetricsAddr is where to serve Prometheus metrics ("" or "0": none).
	MetricsAddr string
	// Registerer is where the agent's own metrics (Metrics) go; nil is
	// controller-runtime's metrics.Registry, which MetricsAddr serves,
	// when MetricsAddr is set, else nowhere. They are unregistered when
	// Run returns.
	Registerer prometheus.Registerer
	// HealthAddr serves /healthz and /readyz ("" or "0": none).
	HealthAddr string
	// Workers is how many services each controller reconciles at once; 0
	// is 4.
	Workers int
	Log     *slog.Logger
}

// Run runs the agent until ctx ends: the broker syncer for the export
// records, the export controller (ServiceExport → records and status) and
// the import controller (records → ServiceImports, derived Services and
// EndpointSlices in every namespace that exists). Errors: the manager's
// (a cache that cannot start, an address in use) or the syncer's (no
// broker credential).
func Run(ctx context.Context, rc *rest.Config, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = v1.ComponentNamespace
	}
	if cfg.BrokerSecret == "" {
		cfg.BrokerSecret = broker.SecretName
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.MetricsAddr == "" {
		cfg.MetricsAddr = "0"
	}
	if cfg.HealthAddr == "" {
		cfg.HealthAddr = "0"
	}
	rc = withRateLimit(rc)
	log := cfg.Log.With("component", "lighthouse", "cluster", cfg.ClusterID)
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
		// Gateways are read only in the component namespace, which is all
		// the RBAC grants (deploy/charts/strait/templates/lighthouse.yaml): a cluster-wide
		// watch would be forbidden and keep every controller from starting.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&v1.Gateway{}: {Namespaces: map[string]cache.Config{cfg.Namespace: {}}},
			// The cluster's own Cluster record (Globalnet: its global
			// CIDRs); the RBAC grants the component namespace only.
			&v1.Cluster{}: {Namespaces: map[string]cache.Config{cfg.Namespace: {}}},
		}},
	})
	if err != nil {
		return fmt.Errorf("lighthouse manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	reg := cfg.Registerer
	if reg == nil && cfg.MetricsAddr != "0" {
		reg = ctrlmetrics.Registry
	}
	metrics := NewMetrics(mgr.GetClient(), cfg.Namespace)
	if reg != nil {
		if err := reg.Register(metrics); err != nil {
			return fmt.Errorf("lighthouse metrics: %w", err)
		}
		defer reg.Unregister(metrics)
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return runSyncer(ctx, rc, cfg, log, metrics.recordSync) })); err != nil {
		return err
	}
	ex := &exporter{c: mgr.GetClient(), cfg: cfg, log: log.With("controller", "export")}
	im := &importer{c: mgr.GetClient(), reader: mgr.GetAPIReader(), cfg: cfg, log: log.With("controller", "import")}
	m := mapper{c: mgr.GetClient(), ns: cfg.Namespace}
	// SkipNameValidation: controller names are unique per process only for
	// controller-runtime's metrics; tests run several agents in one.
	opts := controller.Options{MaxConcurrentReconciles: cfg.Workers, SkipNameValidation: ptr.To(true)}

	err = ctrl.NewControllerManagedBy(mgr).Named("serviceexport").WithOptions(opts).
		For(&mcsv1beta1.ServiceExport{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(m.sameName)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(m.localSliceService)).
		Watches(&mcsv1beta1.ServiceImport{}, handler.EnqueueRequestsFromMapFunc(m.recordOrigin)).
		Watches(&v1.GlobalIngressIP{}, handler.EnqueueRequestsFromMapFunc(m.ingressService)).
		Watches(&v1.Cluster{}, handler.EnqueueRequestsFromMapFunc(m.ownClusterExports(cfg.ClusterID))).
		Complete(ex)
	if err != nil {
		return err
	}
	err = ctrl.NewControllerManagedBy(mgr).Named("serviceimport").WithOptions(opts).
		Watches(&mcsv1beta1.ServiceImport{}, handler.EnqueueRequestsFromMapFunc(m.importKey)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(m.sliceImportKey)).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(m.derivedImport)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(m.namespaceImports)).
		Watches(&v1.Gateway{}, handler.EnqueueRequestsFromMapFunc(m.allImports), builder.WithPredicates(healthChanged)).
		// The cluster's service families decide the clusterset IPs'.
		Watches(&networkingv1.ServiceCIDR{}, handler.EnqueueRequestsFromMapFunc(m.everyImport)).
		Complete(im)
	if err != nil {
		return err
	}
	log.Info("starting", "namespace", cfg.Namespace, "leaderElection", cfg.LeaderElection)
	return mgr.Start(ctx)
}

// runSyncer carries the export records between the component namespace and
// the broker, stamping each with the time the broker stored it (the order
// conflicts are resolved in). A missing broker credential is waited for
// until ctx ends (join writes it, perhaps after the agent starts), and a
// changed one (a join again) restarts the syncer with it.
func runSyncer(ctx context.Context, rc *rest.Config, cfg Config, log *slog.Logger, onSync func(error)) error {
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	local, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	return broker.RunWithCredentials(ctx, kube, cfg.Namespace, cfg.BrokerSecret, log, func(ctx context.Context, creds *broker.Credentials) error {
		remote, err := dynamic.NewForConfig(withRateLimit(creds.Info.RESTConfig(creds.Token)))
		if err != nil {
			return err
		}
		return syncer.New(syncer.Config{
			ClusterID: cfg.ClusterID, Local: local, LocalNamespace: cfg.Namespace,
			Broker: remote, BrokerNamespace: creds.Info.Namespace,
			Resources: []schema.GroupVersionResource{
				{Group: mcsv1beta1.GroupName, Version: "v1beta1", Resource: "serviceimports"},
				discoveryv1.SchemeGroupVersion.WithResource("endpointslices"),
			},
			StampBrokerCreation: true,
			Log:                 log,
			OnSync:              onSync,
		}).Run(ctx)
	})
}

// Client-side rate limits of the agent's clients (member and broker), in
// requests per second and burst. client-go's defaults (5 and 10) held a
// cluster's first sync of 2,000 exports to its broker for half an hour
// (make bench-mcs); these let it go as fast as the apiservers answer.
const (
	clientQPS   = 100
	clientBurst = 200
)

// withRateLimit returns a copy of rc with clientQPS and clientBurst, unless
// rc sets its own.
func withRateLimit(rc *rest.Config) *rest.Config {
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 && rc.RateLimiter == nil {
		rc.QPS, rc.Burst = clientQPS, clientBurst
	}
	return rc
}

// mapper maps watched objects to the services (namespace/name) whose
// export or import they touch.
type mapper struct {
	c  client.Reader
	ns string // the component namespace, where the records are
}

func one(ns, name string) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}}
}

// sameName: a Service affects the export of the same name.
func (m mapper) sameName(_ context.Context, o client.Object) []reconcile.Request {
	return one(o.GetNamespace(), o.GetName())
}

// localSliceService: a local EndpointSlice (not one of ours) affects the
// export of its Service; so does a slice record, so that a record written
// from a stale cache (the slice changed and changed back before the cache
// saw the first write) is compared and written again.
func (m mapper) localSliceService(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() == m.ns {
		return m.recordOrigin(ctx, o)
	}
	l := o.GetLabels()
	if l[discoveryv1.LabelManagedBy] == ManagedBy || l[discoveryv1.LabelServiceName] == "" {
		return nil
	}
	return one(o.GetNamespace(), l[discoveryv1.LabelServiceName])
}

// ingressService: a GlobalIngressIP (Globalnet) affects the export of the
// Service it stands for, or of one of whose pods.
func (m mapper) ingressService(_ context.Context, o client.Object) []reconcile.Request {
	g, ok := o.(*v1.GlobalIngressIP)
	if !ok || g.Spec.ServiceRef.Name == "" {
		return nil
	}
	return one(g.Namespace, g.Spec.ServiceRef.Name)
}

// ownClusterExports: the cluster's own Cluster record (whether it uses
// Globalnet) affects every export of the cluster.
func (m mapper) ownClusterExports(id string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		if o.GetNamespace() != m.ns || o.GetName() != id {
			return nil
		}
		var list mcsv1beta1.ServiceExportList
		if err := m.c.List(ctx, &list); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(list.Items))
		for _, se := range list.Items {
			out = append(out, one(se.Namespace, se.Name)...)
		}
		return out
	}
}

// recordOrigin: a record in the component namespace affects the export of
// its origin (conflicts, Ready).
func (m mapper) recordOrigin(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if o.GetNamespace() != m.ns || l[OriginNameLabel] == "" {
		return nil
	}
	return one(l[OriginNamespaceLabel], l[OriginNameLabel])
}

// importKey: an export record affects its origin's import; a ServiceImport
// elsewhere is an import (changed or deleted by someone: put it back),
// unless it is a record (labelled with a cluster ID) outside the component
// namespace: the broker's copies, where this cluster hosts the broker.
func (m mapper) importKey(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() == m.ns {
		return m.recordOrigin(ctx, o)
	}
	if isRecord(o) {
		return nil
	}
	return one(o.GetNamespace(), o.GetName())
}

// isRecord reports whether o is an export or slice record (or a broker
// copy of one): records carry the owning cluster's ID, imports never do.
func isRecord(o metav1.Object) bool {
	_, ok := o.GetLabels()[v1.ClusterIDLabel]
	return ok
}

// sliceImportKey: a slice record affects its origin's import, an imported
// slice its service's.
func (m mapper) sliceImportKey(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() == m.ns {
		return m.recordOrigin(ctx, o)
	}
	l := o.GetLabels()
	if isRecord(o) || l[discoveryv1.LabelManagedBy] != ManagedBy || l[mcsv1beta1.LabelServiceName] == "" {
		return nil
	}
	return one(o.GetNamespace(), l[mcsv1beta1.LabelServiceName])
}

// derivedImport: a derived Service affects its import.
func (m mapper) derivedImport(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[ManagedLabel] != "true" || l[mcsv1beta1.LabelServiceName] == "" {
		return nil
	}
	return one(o.GetNamespace(), l[mcsv1beta1.LabelServiceName])
}

// namespaceImports: a namespace that comes or goes affects the imports of
// every service exported from a namespace of its name.
func (m mapper) namespaceImports(ctx context.Context, o client.Object) []reconcile.Request {
	return m.origins(ctx, client.MatchingLabels{OriginNamespaceLabel: o.GetName()})
}

// healthChanged passes a Gateway's update only when what the import
// controller reads from it changed: its HA status, which clusters it has
// connections to and whether each is in error, and the order of those
// clusters by RTT (the nearest one serves LocalFirst). A gateway rewrites
// its status now and then with fresh RTTs (gateway statusInterval); each
// such write used to reconcile every import, and a new import waited
// behind all of them.
var healthChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		before, ok1 := e.ObjectOld.(*v1.Gateway)
		after, ok2 := e.ObjectNew.(*v1.Gateway)
		return !ok1 || !ok2 || healthKey(before) != healthKey(after)
	},
}

// healthKey sums up what GatewayHealth reads from gw: "<HA status>
// <cluster>=<status>... by RTT: <cluster>...".
func healthKey(gw *v1.Gateway) string {
	var conns []string
	type rtt struct {
		cluster string
		avg     time.Duration
	}
	var rtts []rtt
	for _, c := range gw.Status.Connections {
		conns = append(conns, string(c.ClusterID)+"="+string(c.Status))
		if c.Status == v1.Connected && c.LatencyRTT != nil {
			rtts = append(rtts, rtt{string(c.ClusterID), c.LatencyRTT.Average.Duration})
		}
	}
	slices.Sort(conns)
	slices.SortFunc(rtts, func(a, b rtt) int { return nearer(a.cluster, b.cluster, a.avg, b.avg) })
	order := make([]string, 0, len(rtts))
	for _, r := range rtts {
		order = append(order, r.cluster)
	}
	return string(gw.Status.HAStatus) + " " + strings.Join(conns, " ") + " by RTT: " + strings.Join(order, " ")
}

// allImports: a gateway's connections affect every import (health, RTT).
func (m mapper) allImports(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() != m.ns {
		return nil
	}
	return m.origins(ctx, client.HasLabels{OriginNameLabel})
}

// everyImport maps any object to every service with a record.
func (m mapper) everyImport(ctx context.Context, _ client.Object) []reconcile.Request {
	return m.origins(ctx, client.HasLabels{OriginNameLabel})
}

func (m mapper) origins(ctx context.Context, sel client.ListOption) []reconcile.Request {
	var recs mcsv1beta1.ServiceImportList
	if err := m.c.List(ctx, &recs, client.InNamespace(m.ns), sel); err != nil {
		return nil
	}
	seen := map[types.NamespacedName]bool{}
	var out []reconcile.Request
	for _, r := range recs.Items {
		k := types.NamespacedName{Namespace: r.Labels[OriginNamespaceLabel], Name: r.Labels[OriginNameLabel]}
		if k.Name != "" && !seen[k] {
			seen[k] = true
			out = append(out, reconcile.Request{NamespacedName: k})
		}
	}
	return out
}
