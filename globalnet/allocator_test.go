package globalnet

// Integration tests of the allocator reading from the manager's cache: a
// real apiserver (test/kubetest), the controller as its ServiceAccount.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
)

// holderResources are the resources of the objects that hold global IPs.
var holderResources = []string{"clusterglobalegressips", "globalegressips", "globalingressips"}

// readCounter counts the reads (GETs other than watches: lists and single
// objects) of holderResources that go through a transport.
type readCounter struct {
	mu sync.Mutex
	n  map[string]int // "list globalegressips", "get globalingressips"
}

func (rc *readCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method == http.MethodGet && req.URL.Query().Get("watch") != "true" {
			segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
			for i, s := range segs {
				if slices.Contains(holderResources, s) {
					verb := "list"
					if i < len(segs)-1 {
						verb = "get"
					}
					rc.mu.Lock()
					rc.n[verb+" "+s]++
					rc.mu.Unlock()
					break
				}
			}
		}
		return rt.RoundTrip(req)
	})
}

func (rc *readCounter) snapshot() (map[string]int, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out, total := map[string]int{}, 0
	for k, v := range rc.n {
		out[k] = v
		total += v
	}
	return out, total
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// exportService makes the ClusterIP Service app/name and its ServiceExport.
func (cl *cluster) exportService(t *testing.T, name string) {
	t.Helper()
	cl.create(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}})
	cl.create(t, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name}})
}

// addresses returns every holder's addresses by "kind/namespace/name", as
// stored, and the number of holders without an Allocated=True condition.
func (cl *cluster) addresses(ctx context.Context) (map[string]string, int, error) {
	var cg v1.ClusterGlobalEgressIPList
	var eg v1.GlobalEgressIPList
	var in v1.GlobalIngressIPList
	for _, l := range []client.ObjectList{&cg, &eg, &in} {
		if err := cl.c.List(ctx, l); err != nil {
			return nil, 0, err
		}
	}
	out, pending := map[string]string{}, 0
	count := func(conds []metav1.Condition) {
		if c := allocated(conds); c == nil || c.Status != metav1.ConditionTrue {
			pending++
		}
	}
	for _, o := range cg.Items {
		out["ClusterGlobalEgressIP/"+o.Name] = ipStrings(o.Status.AllocatedIPs)
		count(o.Status.Conditions)
	}
	for _, o := range eg.Items {
		out["GlobalEgressIP/"+o.Namespace+"/"+o.Name] = ipStrings(o.Status.AllocatedIPs)
		count(o.Status.Conditions)
	}
	for _, o := range in.Items {
		out["GlobalIngressIP/"+o.Namespace+"/"+o.Name] = string(o.Status.AllocatedIP)
		count(o.Status.Conditions)
	}
	return out, pending, nil
}

// After the controller has started, a burst of events (GlobalEgressIPs and
// exported Services made at once, each allotted, each GlobalIngressIP and
// strait-gn Service made) makes the allocator read none of the holders
// from the apiserver: it reads them from the manager's cache.
func TestAllocatorReadsCached(t *testing.T) {
	cl := newCluster(t, "242.1.0.0/24")
	reads := &readCounter{n: map[string]int{}}
	cl.stop = cl.runWrapped(t, cl.k, reads.wrap)
	cl.egressStatus(t, "", v1.ClusterEgressName)
	before, nBefore := reads.snapshot()
	// The allocator lists each kind once, uncached, as it becomes the
	// leader (client-go's informers list through watches): the count sees
	// the controller's reads.
	if before["list clusterglobalegressips"] == 0 || before["list globalegressips"] == 0 || before["list globalingressips"] == 0 {
		t.Fatalf("the counter did not see the allocator's first lists: %v", before)
	}

	const n = 15
	for i := range n {
		cl.create(t, egress(fmt.Sprintf("e%02d", i), 1, map[string]string{"e": strconv.Itoa(i)}))
		cl.exportService(t, fmt.Sprintf("s%02d", i))
	}
	wait4(t, "every holder allotted", func(ctx context.Context) (bool, error) {
		addrs, pending, err := cl.addresses(ctx)
		return err == nil && pending == 0 && len(addrs) == 1+2*n, err
	})
	cl.waitServices(t, n)
	after, nAfter := reads.snapshot()
	t.Logf("uncached reads of the holders: %d at the start, %d after %d GlobalEgressIPs and %d exports (%v)", nBefore, nAfter, n, n, after)
	if nAfter != nBefore {
		t.Errorf("the allocator read holders from the apiserver %d times during the burst: before %v, after %v", nAfter-nBefore, before, after)
	}
}

// waitServices waits until app has n strait-gn Services, each with the
// global IP of its exported Service's GlobalIngressIP as its external IP.
func (cl *cluster) waitServices(t *testing.T, n int) {
	t.Helper()
	var why string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var svcs corev1.ServiceList
		if err := cl.c.List(ctx, &svcs, client.InNamespace("app"), client.MatchingLabels{ManagedLabel: "true"}); err != nil {
			return false, err
		}
		if len(svcs.Items) != n {
			why = fmt.Sprintf("%d Services", len(svcs.Items))
			return false, nil
		}
		for _, s := range svcs.Items {
			var g v1.GlobalIngressIP
			if err := cl.c.Get(ctx, client.ObjectKey{Namespace: "app", Name: "svc-" + s.Labels[ServiceLabel]}, &g); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			if s.Name != ServiceName(s.Labels[ServiceLabel]) || !slices.Equal(s.Spec.ExternalIPs, []string{string(g.Status.AllocatedIP)}) {
				why = fmt.Sprintf("%s: external IPs %v, its GlobalIngressIP's %s", s.Name, s.Spec.ExternalIPs, g.Status.AllocatedIP)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d strait-gn Services: %v; last: %s", n, err, why)
	}
}

// holderEvent is one watch event of a holder: the object's key and
// addresses after it (none when deleted), at resource version rv.
type holderEvent struct {
	rv    uint64
	key   string
	addrs []string
}

// recordHolders watches the three kinds from now on and returns a func
// that stops the watches and returns their events in resource-version
// order (etcd's revision orders writes of every kind).
func recordHolders(t *testing.T, cl *cluster) func() []holderEvent {
	t.Helper()
	wc, err := client.NewWithWatch(cl.env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var events []holderEvent
	var wg sync.WaitGroup
	for _, l := range []client.ObjectList{&v1.ClusterGlobalEgressIPList{}, &v1.GlobalEgressIPList{}, &v1.GlobalIngressIPList{}} {
		if err := wc.List(ctx, l); err != nil {
			t.Fatal(err)
		}
		w, err := wc.Watch(ctx, l, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: l.(metav1.ListInterface).GetResourceVersion()}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						t.Errorf("a watch of %T ended early", l)
						return
					}
					if ev.Type == watch.Error || ev.Type == watch.Bookmark {
						continue
					}
					o := ev.Object.(client.Object)
					rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
					if err != nil {
						t.Errorf("resourceVersion %q: %v", o.GetResourceVersion(), err)
						return
					}
					e := holderEvent{rv: rv}
					switch o := o.(type) {
					case *v1.ClusterGlobalEgressIP:
						e.key, e.addrs = "ClusterGlobalEgressIP/"+o.Name, ipStrs(o.Status.AllocatedIPs)
					case *v1.GlobalEgressIP:
						e.key, e.addrs = "GlobalEgressIP/"+o.Namespace+"/"+o.Name, ipStrs(o.Status.AllocatedIPs)
					case *v1.GlobalIngressIP:
						e.key = "GlobalIngressIP/" + o.Namespace + "/" + o.Name
						if o.Status.AllocatedIP != "" {
							e.addrs = []string{string(o.Status.AllocatedIP)}
						}
					}
					if ev.Type == watch.Deleted {
						e.addrs = nil
					}
					mu.Lock()
					events = append(events, e)
					mu.Unlock()
				}
			}
		}()
	}
	return func() []holderEvent {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		slices.SortFunc(events, func(x, y holderEvent) int { return cmp.Compare(x.rv, y.rv) })
		return events
	}
}

func ipStrs(ips []v1.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, string(ip))
	}
	return out
}

// checkNeverTwice replays the holders' events in order and reports every
// moment at which one address was held by two objects.
func checkNeverTwice(t *testing.T, events []holderEvent) {
	t.Helper()
	held := map[string][]string{} // key → addresses
	owner := map[string]string{}  // address → key
	bad := 0
	for _, e := range events {
		for _, a := range held[e.key] {
			delete(owner, a)
		}
		delete(held, e.key)
		for _, a := range e.addrs {
			if o, ok := owner[a]; ok && o != e.key {
				if bad++; bad <= 10 {
					t.Errorf("at resourceVersion %d %s was given %s, which %s holds", e.rv, e.key, a, o)
				}
			}
			owner[a] = e.key
		}
		if len(e.addrs) > 0 {
			held[e.key] = e.addrs
		}
	}
	if bad > 10 {
		t.Errorf("... %d times in all", bad)
	}
}

// Many holders made and deleted in quick succession: at no moment does an
// address belong to two objects (checked over every write, in the order
// the apiserver made them), every address is kept across a restart of the
// controller, and once everything is deleted nothing is left over: the
// whole global CIDR can be allotted again.
func TestAllocatorBurst(t *testing.T) {
	ctx := context.Background()
	// A /25: 126 usable addresses, 8 of them cluster-egress's.
	cl := newCluster(t, "242.1.0.0/25")
	stopRecording := recordHolders(t, cl)
	cl.start(t)
	cl.egressStatus(t, "", v1.ClusterEgressName)

	// 30 GlobalEgressIPs (one or two addresses) and 30 exported Services
	// at once; every third GlobalEgressIP is deleted as the next ones are
	// made, and 10 more are made after, so that freed addresses are found
	// again while the cache lags. (How the cache lags here is up to the
	// machine; TestAllocatorLaggingCache makes it lag on purpose.)
	const n = 30
	var wg sync.WaitGroup
	for _, part := range []func(){
		func() {
			for i := range n {
				cl.create(t, egress(fmt.Sprintf("e%02d", i), int32(1+i%2), map[string]string{"e": strconv.Itoa(i)}))
				if i%3 == 2 {
					if err := cl.c.Delete(ctx, egress(fmt.Sprintf("e%02d", i-2), 1, nil)); err != nil {
						t.Error(err)
					}
				}
			}
		},
		func() {
			for i := range n {
				cl.exportService(t, fmt.Sprintf("s%02d", i))
			}
		},
	} {
		wg.Add(1)
		go func() { defer wg.Done(); part() }()
	}
	wg.Wait()
	for i := range 10 {
		cl.create(t, egress(fmt.Sprintf("f%02d", i), 1, map[string]string{"f": strconv.Itoa(i)}))
	}
	holders := 1 + (n - n/3) + 10 + n
	var before map[string]string
	wait4(t, "every holder allotted", func(ctx context.Context) (bool, error) {
		addrs, pending, err := cl.addresses(ctx)
		before = addrs
		return err == nil && pending == 0 && len(addrs) == holders, err
	})
	cl.waitServices(t, n)
	seen := map[string]string{}
	for k, a := range before {
		if a == "" {
			t.Errorf("%s has no address", k)
		}
		for _, ip := range strings.Split(a, ",") {
			if o, ok := seen[ip]; ok {
				t.Errorf("%s is held by %s and %s", ip, o, k)
			}
			seen[ip] = k
		}
	}

	// Restart: every address kept, and the next object gets a free one.
	cl.stop()
	cl.start(t)
	cl.create(t, egress("after", 1, map[string]string{"after": "1"}))
	st := cl.egressStatus(t, "app", "after")
	if c := allocated(st.Conditions); c.Status != metav1.ConditionTrue || len(st.AllocatedIPs) != 1 {
		t.Fatalf("after the restart: %+v", st)
	} else if o, ok := seen[string(st.AllocatedIPs[0])]; ok {
		t.Errorf("after the restart, %s was given to app/after too", o)
	}
	now, _, err := cl.addresses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, a := range before {
		if now[k] != a {
			t.Errorf("%s after the restart: %q, before %q", k, now[k], a)
		}
	}
	cl.waitServices(t, n)

	// Everything goes: the GlobalIngressIPs and strait-gn Services too, and
	// no address stays taken: six objects then fill the 118 addresses that
	// cluster-egress leaves.
	var egs v1.GlobalEgressIPList
	if err := cl.c.List(ctx, &egs); err != nil {
		t.Fatal(err)
	}
	for i := range egs.Items {
		if err := cl.c.Delete(ctx, &egs.Items[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := cl.c.Delete(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: fmt.Sprintf("s%02d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	wait4(t, "the GlobalIngressIPs and strait-gn Services gone", func(ctx context.Context) (bool, error) {
		var in v1.GlobalIngressIPList
		var svcs corev1.ServiceList
		if err := cl.c.List(ctx, &in); err != nil {
			return false, err
		}
		err := cl.c.List(ctx, &svcs, client.MatchingLabels{ManagedLabel: "true"})
		return err == nil && len(in.Items) == 0 && len(svcs.Items) == 0, err
	})
	for i, size := range []int32{20, 20, 20, 20, 20, 18} {
		cl.create(t, egress(fmt.Sprintf("fill%d", i), size, map[string]string{"fill": strconv.Itoa(i)}))
	}
	wait4(t, "the whole CIDR allotted again", func(ctx context.Context) (bool, error) {
		_, pending, err := cl.addresses(ctx)
		return err == nil && pending == 0, err
	})
	var fill v1.GlobalEgressIPList
	if err := cl.c.List(ctx, &fill); err != nil {
		t.Fatal(err)
	}
	for _, g := range fill.Items {
		if c := meta.FindStatusCondition(g.Status.Conditions, v1.ConditionAllocated); c.Status != metav1.ConditionTrue {
			t.Errorf("%s: %s %s", g.Name, c.Reason, c.Message)
		}
	}
	checkNeverTwice(t, stopRecording())
}

// snapshot is a frozen copy of the holders as the apiserver has them now,
// with stale in place of their current versions: a cache that lags.
func (cl *cluster) snapshot(t *testing.T, stale ...client.Object) client.Reader {
	t.Helper()
	ctx := context.Background()
	var cg v1.ClusterGlobalEgressIPList
	var eg v1.GlobalEgressIPList
	var in v1.GlobalIngressIPList
	for _, l := range []client.ObjectList{&cg, &eg, &in} {
		if err := cl.c.List(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	objs := map[string]client.Object{}
	for i := range cg.Items {
		objs[keyOf(&cg.Items[i]).String()] = &cg.Items[i]
	}
	for i := range eg.Items {
		objs[keyOf(&eg.Items[i]).String()] = &eg.Items[i]
	}
	for i := range in.Items {
		objs[keyOf(&in.Items[i]).String()] = &in.Items[i]
	}
	for _, o := range stale {
		objs[keyOf(o).String()] = o.DeepCopyObject().(client.Object)
	}
	b := fake.NewClientBuilder().WithScheme(scheme.New())
	for _, o := range objs {
		o.SetManagedFields(nil)
		b = b.WithObjects(o)
	}
	return b.Build()
}

func (k assumeKey) String() string { return k.kind + " " + k.NamespacedName.String() }

// The cache lags the apiserver, as it does for a moment after every write:
// the allocator must not give away the addresses of a holder whose status
// the cache does not show yet, whether the allocator wrote that status
// itself or the leader before it did. The cache is frozen here at chosen
// versions, in the order a watch would bring them: F is deleted and B made
// before A's status is written, and the cache shows the first two but not
// the third. Allotting from what it shows would give A F's freed address
// (a write that fails: A changed since) and B A's (a write that succeeds).
func TestAllocatorLaggingCache(t *testing.T) {
	for _, newLeader := range []bool{false, true} {
		t.Run(fmt.Sprintf("newLeader=%v", newLeader), func(t *testing.T) {
			ctx := context.Background()
			cl := newCluster(t, "242.1.0.0/24")
			direct := cl.c
			newAllocator := func() *allocator {
				return &allocator{reader: direct, assumed: newAssumed(direct), cfg: Config{GlobalCIDR: cl.cidr},
					log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			}
			reconcileWith := func(a *allocator, cache client.Reader) error {
				c, err := client.New(cl.env.Config, client.Options{Scheme: scheme.New(), Cache: &client.CacheOptions{Reader: cache}})
				if err != nil {
					t.Fatal(err)
				}
				a.c = c
				_, err = a.Reconcile(ctx, reconcile.Request{})
				return err
			}
			get := func(name string) v1.GlobalEgressIP {
				var g v1.GlobalEgressIP
				if err := direct.Get(ctx, client.ObjectKey{Namespace: "app", Name: name}, &g); err != nil {
					t.Fatal(err)
				}
				return g
			}

			a := newAllocator()
			for i := range 4 { // cluster-egress made and allotted; then f made and allotted
				if i == 2 {
					cl.create(t, egress("f", 1, map[string]string{"f": "1"}))
				}
				if err := reconcileWith(a, cl.snapshot(t)); err != nil {
					t.Fatal(err)
				}
			}
			if got := ipStrings(get("f").Status.AllocatedIPs); got != "242.1.0.10" {
				t.Fatalf("f: %q", got)
			}
			cl.create(t, egress("a", 1, map[string]string{"a": "1"}))
			s1 := cl.snapshot(t)
			staleA := get("a")
			cl.create(t, egress("b", 1, map[string]string{"b": "1"}))
			if err := direct.Delete(ctx, egress("f", 1, nil)); err != nil {
				t.Fatal(err)
			}
			// A is allotted from s1, where F still holds .10.
			if err := reconcileWith(a, s1); err != nil {
				t.Fatal(err)
			}
			if got := ipStrings(get("a").Status.AllocatedIPs); got != "242.1.0.11" {
				t.Fatalf("a: %q", got)
			}
			if newLeader {
				a = newAllocator()
			}
			// The next pass sees F gone and B, but A as before its write.
			err := reconcileWith(a, cl.snapshot(t, &staleA))
			ga, gb := get("a"), get("b")
			t.Logf("a %s, b %s (pass: %v)", ipStrings(ga.Status.AllocatedIPs), ipStrings(gb.Status.AllocatedIPs), err)
			if ipStrings(ga.Status.AllocatedIPs) == ipStrings(gb.Status.AllocatedIPs) {
				t.Errorf("a and b were both given %s", ipStrings(ga.Status.AllocatedIPs))
			}
			if got := ipStrings(gb.Status.AllocatedIPs); got != "242.1.0.10" {
				t.Errorf("b: %q, want the address f freed, 242.1.0.10", got)
			}
		})
	}
}
