package syncer_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/pkg/syncer"
	"strait.dev/strait/test/kubetest"
)

var syncedGVRs = []schema.GroupVersionResource{
	v1.SchemeGroupVersion.WithResource("clusters"),
	v1.SchemeGroupVersion.WithResource("endpoints"),
}

// world is a broker and two members' namespaces, on real apiservers: the
// broker on one, both members' strait-system stand-ins on another.
type world struct {
	brokerEnv, memberEnv *kubetest.Env
	info                 *broker.Info
	tokens               map[string]string
	members              client.Client // admin on the members' apiserver
	brokerAdmin          client.Client
	// memberDyn and brokerDyn are the same admins' dynamic clients.
	memberDyn, brokerDyn dynamic.Interface
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{tokens: map[string]string{}}
	w.brokerEnv = kubetest.New(t, kubetest.Options{SkipCRDs: true})
	w.memberEnv = kubetest.New(t, kubetest.Options{})
	var err error
	if w.info, err = broker.Deploy(ctx, w.brokerEnv.Config, broker.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"c1", "c2"} {
		tok, err := broker.Enroll(ctx, w.info, member(id, "uid-"+id, fmt.Sprintf("10.%d.0.0/16", i+1), fmt.Sprintf("10.10%d.0.0/16", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		w.tokens[id] = tok
	}
	w.members = mustClient(t, w.memberEnv.Config)
	w.brokerAdmin = mustClient(t, w.brokerEnv.Config)
	if w.memberDyn, err = dynamic.NewForConfig(w.memberEnv.Config); err != nil {
		t.Fatal(err)
	}
	if w.brokerDyn, err = dynamic.NewForConfig(w.brokerEnv.Config); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if err := w.members.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: id + "-system"}}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func mustClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// endpoint is an Endpoint record owned by owner, in the broker namespace
// until the caller moves it. (Also the broker test's helper before.)
func endpoint(name, owner, clusterID string) *v1.Endpoint {
	return &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.BrokerNamespace, Labels: map[string]string{v1.ClusterIDLabel: owner}},
		Spec: v1.EndpointSpec{
			ClusterID: v1.ClusterID(clusterID), Hostname: name, PrivateIPs: v1.DualStackIPs{"192.168.1.11"},
			Subnets: []v1.CIDR{"10.1.0.0/16"}, CableDriver: v1.CableDriverVXLAN, VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800},
		},
	}
}

// member is the enrolment of a member cluster with one pod and one service
// CIDR. (It was the broker test's helper before the syncer moved here.)
func member(id, uid, pods, services string) broker.Member {
	return broker.Member{ClusterID: id, ClusterUID: uid,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix(pods)}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(services)}}
}

// syncerOptions vary the syncer startSyncerWith runs.
type syncerOptions struct {
	// resources to sync; nil means syncedGVRs, the gateway's.
	resources []schema.GroupVersionResource
	// stamp turns on Config.StampBrokerCreation.
	stamp bool
	// wrap, when set, wraps the transports of both of the syncer's clients.
	wrap transport.WrapperFunc
	// settle and onHeld are Config.WithdrawSettle and Config.OnHeld.
	settle time.Duration
	onHeld func(int, string)
	// onSync is Config.OnSync.
	onSync func(error)
}

// startSyncer runs a member's syncer as the gateway does, with the member's
// own broker credential, so the isolation policy applies to everything it
// writes. The returned function stops it and returns once Run has.
func (w *world) startSyncer(t *testing.T, id string) context.CancelFunc {
	t.Helper()
	return w.startSyncerWith(t, id, syncerOptions{})
}

// startSyncerWith is startSyncer with opts.
func (w *world) startSyncerWith(t *testing.T, id string, opts syncerOptions) context.CancelFunc {
	t.Helper()
	localCfg, remoteCfg := rest.CopyConfig(w.memberEnv.Config), w.info.RESTConfig(w.tokens[id])
	if opts.wrap != nil {
		localCfg.Wrap(opts.wrap)
		remoteCfg.Wrap(opts.wrap)
	}
	local, err := dynamic.NewForConfig(localCfg)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := dynamic.NewForConfig(remoteCfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.resources == nil {
		opts.resources = syncedGVRs
	}
	s := syncer.New(syncer.Config{
		ClusterID: id, Local: local, LocalNamespace: id + "-system",
		Broker: remote, BrokerNamespace: w.info.Namespace, Resources: opts.resources,
		StampBrokerCreation: opts.stamp,
		WithdrawSettle:      opts.settle,
		OnHeld:              opts.onHeld,
		OnSync:              opts.onSync,
		Log:                 slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func clusterObj(id, ns string) *v1.Cluster {
	return &v1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: ns, Labels: map[string]string{v1.ClusterIDLabel: id}},
		Spec:       v1.ClusterSpec{ClusterID: v1.ClusterID(id), PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"}},
	}
}

// state renders the endpoints and clusters of a namespace as sorted text:
// name, owner and the one field the tests change.
func state(t *testing.T, c client.Client, ns string) string {
	t.Helper()
	var eps v1.EndpointList
	var cls v1.ClusterList
	if err := c.List(context.Background(), &eps, client.InNamespace(ns)); err != nil {
		return "error: " + err.Error()
	}
	if err := c.List(context.Background(), &cls, client.InNamespace(ns)); err != nil {
		return "error: " + err.Error()
	}
	var lines []string
	for _, e := range eps.Items {
		lines = append(lines, fmt.Sprintf("endpoint %s owner=%s host=%s", e.Name, e.Labels[v1.ClusterIDLabel], e.Spec.Hostname))
	}
	for _, c := range cls.Items {
		lines = append(lines, fmt.Sprintf("cluster %s owner=%s region=%s", c.Name, c.Labels[v1.ClusterIDLabel], c.Spec.Topology.Region))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// eventually waits until every namespace shows want. The bound only keeps a
// broken syncer from hanging the suite.
func eventually(t *testing.T, c func(ns string) client.Client, want string, namespaces ...string) {
	t.Helper()
	var got []string
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		ok := true
		got = got[:0]
		for _, ns := range namespaces {
			s := state(t, c(ns), ns)
			got = append(got, ns+":\n"+s)
			ok = ok && s == want
		}
		return ok, nil
	}); err != nil {
		t.Fatalf("not converged; want in every namespace:\n%s\ngot:\n%s", want, strings.Join(got, "\n"))
	}
}

// lines is an expected state, one record a line.
func lines(l ...string) string { return strings.Join(l, "\n") }

func TestSyncer(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	pick := func(ns string) client.Client {
		if ns == w.info.Namespace {
			return w.brokerAdmin
		}
		return w.members
	}
	all := []string{"c1-system", "c2-system", w.info.Namespace}

	// A leftover from before the syncers ran: c1's export whose source is
	// gone. (An import of a cluster the broker has no record of is kept:
	// TestBrokerVanishes.)
	c1Broker := mustClient(t, w.info.RESTConfig(w.tokens["c1"]))
	if err := c1Broker.Create(ctx, endpoint("c1.stale", "c1", "c1")); err != nil {
		t.Fatal(err)
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
	stopC1 := w.startSyncer(t, "c1")
	w.startSyncer(t, "c2")

	t.Run("both directions converge and orphans go", func(t *testing.T) {
		eventually(t, pick, lines(
			"cluster c1 owner=c1 region=",
			"cluster c2 owner=c2 region=",
			"endpoint c1.gw owner=c1 host=c1.gw",
			"endpoint c2.gw owner=c2 host=c2.gw",
		), all...)
	})

	t.Run("changes propagate", func(t *testing.T) {
		cl := &v1.Cluster{}
		if err := w.members.Get(ctx, client.ObjectKey{Namespace: "c1-system", Name: "c1"}, cl); err != nil {
			t.Fatal(err)
		}
		cl.Spec.Topology.Region = "eu"
		if err := w.members.Update(ctx, cl); err != nil {
			t.Fatal(err)
		}
		eventually(t, pick, lines(
			"cluster c1 owner=c1 region=eu",
			"cluster c2 owner=c2 region=",
			"endpoint c1.gw owner=c1 host=c1.gw",
			"endpoint c2.gw owner=c2 host=c2.gw",
		), all...)
	})

	t.Run("an import edited locally is put back", func(t *testing.T) {
		imp := &v1.Endpoint{}
		if err := w.members.Get(ctx, client.ObjectKey{Namespace: "c1-system", Name: "c2.gw"}, imp); err != nil {
			t.Fatal(err)
		}
		imp.Spec.Hostname = "tampered"
		if err := w.members.Update(ctx, imp); err != nil {
			t.Fatal(err)
		}
		eventually(t, pick, lines(
			"cluster c1 owner=c1 region=eu",
			"cluster c2 owner=c2 region=",
			"endpoint c1.gw owner=c1 host=c1.gw",
			"endpoint c2.gw owner=c2 host=c2.gw",
		), all...)
	})

	t.Run("no flip-flop under a busy writer", func(t *testing.T) {
		ep := &v1.Endpoint{}
		for i := range 20 {
			if err := w.members.Get(ctx, client.ObjectKey{Namespace: "c2-system", Name: "c2.gw"}, ep); err != nil {
				t.Fatal(err)
			}
			ep.Spec.Hostname = fmt.Sprintf("c2-n%d", i)
			if err := w.members.Update(ctx, ep); err != nil && !apierrors.IsConflict(err) {
				t.Fatal(err)
			}
		}
		want := lines(
			"cluster c1 owner=c1 region=eu",
			"cluster c2 owner=c2 region=",
			"endpoint c1.gw owner=c1 host=c1.gw",
			"endpoint c2.gw owner=c2 host=c2-n19",
		)
		eventually(t, pick, want, all...)
		// Once converged, nobody writes: resource versions stand still.
		versions := func() string {
			var out []string
			for _, ns := range all {
				var eps v1.EndpointList
				_ = pick(ns).List(ctx, &eps, client.InNamespace(ns))
				for _, e := range eps.Items {
					out = append(out, ns+"/"+e.Name+"@"+e.ResourceVersion)
				}
			}
			sort.Strings(out)
			return strings.Join(out, " ")
		}
		before := versions()
		// Not synchronisation: two quiet seconds are what is under test (a
		// flip-flopping pair of syncers rewrites within its resync back-off).
		time.Sleep(2 * time.Second)
		if after := versions(); after != before {
			t.Errorf("objects still being written after convergence:\nbefore %s\nafter  %s", before, after)
		}
		// Stamping is off, as for the gateway: after those quiet seconds no
		// copy, imported or own, carries a stamp.
		if got := stamped(t, w, syncedGVRs, all...); got != "" {
			t.Errorf("objects stamped with StampBrokerCreation off:\n%s", got)
		}
	})

	t.Run("broker outage keeps local state and sync resumes", func(t *testing.T) {
		w.brokerEnv.StopAPIServer()
		// Meanwhile c1 withdraws its Endpoint and changes its Cluster.
		if err := w.members.DeleteAllOf(ctx, &v1.Endpoint{}, client.InNamespace("c1-system"), client.MatchingLabels{v1.ClusterIDLabel: "c1"}); err != nil {
			t.Fatal(err)
		}
		cl := &v1.Cluster{}
		if err := w.members.Get(ctx, client.ObjectKey{Namespace: "c1-system", Name: "c1"}, cl); err != nil {
			t.Fatal(err)
		}
		cl.Spec.Topology.Region = "us"
		if err := w.members.Update(ctx, cl); err != nil {
			t.Fatal(err)
		}
		// Not synchronisation: the outage lasting a while is what is under
		// test; the syncers retry against the stopped broker meanwhile.
		time.Sleep(3 * time.Second)
		// c2 still has everything it imported: an unreachable broker deletes nothing.
		if got := state(t, w.members, "c2-system"); !strings.Contains(got, "endpoint c1.gw owner=c1") || !strings.Contains(got, "cluster c1 owner=c1") {
			t.Fatalf("c2 lost imports during the outage:\n%s", got)
		}
		startCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := w.brokerEnv.StartAPIServer(startCtx); err != nil {
			t.Fatal(err)
		}
		eventually(t, pick, lines(
			"cluster c1 owner=c1 region=us",
			"cluster c2 owner=c2 region=",
			"endpoint c2.gw owner=c2 host=c2-n19",
		), "c2-system", w.info.Namespace)
	})

	t.Run("a stopped syncer deletes nothing", func(t *testing.T) {
		// stopC1 returns once Run has: whatever the syncer does on its way
		// out is done by then, so no wait is needed, and no one else may
		// delete c1's exports at the broker.
		stopC1()
		if got := state(t, w.brokerAdmin, w.info.Namespace); !strings.Contains(got, "cluster c1 owner=c1") {
			t.Fatalf("stopping c1's syncer removed its exports:\n%s", got)
		}
	})
}
