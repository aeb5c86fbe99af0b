package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway"
	"strait.dev/strait/gateway/health"
	"strait.dev/strait/gateway/natdiscovery"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/testutil"
)

// waitTimeout bounds every wait: far above what any step takes on a loaded
// 2-core machine (a Lease renewal period is 2 s), it only catches a hang.
const waitTimeout = 90 * time.Second

// kicker wakes waiters whenever something they look at may have changed: a
// data plane call, an informer event.
type kicker struct{ c chan struct{} }

func newKicker() *kicker { return &kicker{c: make(chan struct{}, 1)} }

func (k *kicker) poke() {
	select {
	case k.c <- struct{}{}:
	default:
	}
}

// waitFor evaluates cond now and after every kick until it holds; no sleeps.
func (k *kicker) waitFor(t *testing.T, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-k.c:
		case <-deadline.C:
			for _, d := range detail {
				what += "; " + d()
			}
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// watch runs an informer on resource in namespace of the cluster behind rc
// that kicks k on every event and calls onEvent, if set, with the object.
func (k *kicker) watch(t *testing.T, rc *rest.Config, namespace string, gvr schema.GroupVersionResource, onEvent func(*unstructured.Unstructured)) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, namespace, nil)
	handle := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok && onEvent != nil {
			onEvent(u)
		}
		k.poke()
	}
	if _, err := f.ForResource(gvr).Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: handle, UpdateFunc: func(_, o any) { handle(o) }, DeleteFunc: func(any) { k.poke() },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	t.Cleanup(func() { close(stop); f.Shutdown() })
}

// recorder is a Dataplane that remembers what it was given, safely, and
// kicks waiters on every call; with events, it also writes every call
// there, in the order of all the engines' calls.
type recorder struct {
	k      *kicker
	node   string
	events *eventLog
	mu     sync.Mutex
	last   gateway.CableState
	sets   int
	closes int
}

func (r *recorder) Close() error {
	r.mu.Lock()
	r.last = gateway.CableState{}
	r.closes++
	r.mu.Unlock()
	r.events.add(r.node + " close")
	r.k.poke()
	return nil
}

func (r *recorder) Set(_ context.Context, s gateway.CableState) error {
	r.mu.Lock()
	r.last = s
	r.sets++
	r.mu.Unlock()
	names := make([]string, len(s.Peers))
	for i, p := range s.Peers {
		names[i] = p.Name
	}
	r.events.add(r.node + " set " + strings.Join(names, ","))
	r.k.poke()
	return nil
}

// eventLog is what happened, in order, across engines; nil records nothing.
type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *eventLog) add(line string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// since is what happened from the i-th event on.
func (l *eventLog) since(i int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[min(i, len(l.lines)):])
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// settings are the last state's cable settings.
func (r *recorder) settings() cabledriver.Settings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.Settings
}

// peers are the names of the last state's peers.
func (r *recorder) peers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.last.Peers {
		out = append(out, p.Name)
	}
	return out
}

func (r *recorder) counts() (sets, closes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sets, r.closes
}

// fixture is a member cluster c1 with two gateway nodes, enrolled at a
// broker with a second member c2.
type fixture struct {
	member   *kubetest.Env
	mc, bc   client.Client
	info     *broker.Info
	c1Token  string
	c2Token  string
	k        *kicker
	roles    *roleLog
	gateways schema.GroupVersionResource
	// globalCIDR, when valid, is the engines' Config.GlobalCIDR.
	globalCIDR netip.Prefix
	// events, when set, records the engines' data plane calls in order.
	events *eventLog
}

// roleLog records every HAStatus each Gateway showed, in order.
type roleLog struct {
	mu   sync.Mutex
	seen map[string][]v1.HAStatus
}

func (l *roleLog) record(u *unstructured.Unstructured) {
	s, _, _ := unstructured.NestedString(u.Object, "status", "haStatus")
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.seen[u.GetName()]
	if s != "" && (len(h) == 0 || h[len(h)-1] != v1.HAStatus(s)) {
		l.seen[u.GetName()] = append(h, v1.HAStatus(s))
	}
}

// history is the roles a Gateway showed.
func (l *roleLog) history(name string) []v1.HAStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen[name])
}

// newFixture sets up the clusters; withCredential false leaves the broker
// credential out of c1 (createCredential puts it in).
func newFixture(t *testing.T, withCredential ...bool) *fixture {
	t.Helper()
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	memberEnv := kubetest.New(t, kubetest.Options{})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatal(err)
	}
	member := func(id, pods, svcs string) broker.Member {
		return broker.Member{ClusterID: id, ClusterUID: id, PodCIDRs: []netip.Prefix{netip.MustParsePrefix(pods)}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(svcs)}}
	}
	c1Token, err := broker.Enroll(ctx, info, member("c1", "10.1.0.0/16", "10.101.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	c2Token, err := broker.Enroll(ctx, info, member("c2", "10.2.0.0/16", "10.102.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := client.New(memberEnv.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := client.New(brokerEnv.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{member: memberEnv, mc: mc, bc: bc, info: info, c1Token: c1Token, c2Token: c2Token, k: newKicker(),
		roles: &roleLog{seen: map[string][]v1.HAStatus{}}, gateways: v1.SchemeGroupVersion.WithResource("gateways")}
	if len(withCredential) == 0 || withCredential[0] {
		f.createCredential(t)
	}
	for i, name := range []string{"node-a", "node-b"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels:      map[string]string{corev1.LabelTopologyRegion: "eu", v1.GatewayNodeLabel: "true"},
			Annotations: map[string]string{gateway.PublicIPAnnotation: "198.18.1." + strconv.Itoa(1+i)}}}
		if err := mc.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1." + strconv.Itoa(1+i)}}
		if err := mc.Status().Update(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	f.k.watch(t, memberEnv.Config, v1.ComponentNamespace, f.gateways, f.roles.record)
	f.k.watch(t, memberEnv.Config, v1.ComponentNamespace, coordinationv1.SchemeGroupVersion.WithResource("leases"), nil)
	f.k.watch(t, memberEnv.Config, v1.ComponentNamespace, v1.SchemeGroupVersion.WithResource("endpoints"), nil)
	f.k.watch(t, brokerEnv.Config, info.Namespace, v1.SchemeGroupVersion.WithResource("endpoints"), nil)
	f.k.watch(t, brokerEnv.Config, info.Namespace, v1.SchemeGroupVersion.WithResource("clusters"), nil)
	return f
}

// createCredential stores c1's broker credential in c1.
func (f *fixture) createCredential(t *testing.T) {
	t.Helper()
	if err := f.mc.Create(context.Background(), broker.CredentialSecret(v1.ComponentNamespace, f.info, f.c1Token)); err != nil {
		t.Fatal(err)
	}
}

// running is an engine running in a goroutine.
type running struct {
	rec     *recorder
	metrics *gateway.Metrics
	cancel  context.CancelFunc
	done    chan error
}

// exited reports whether Run returned.
func (r *running) exited() bool {
	select {
	case err := <-r.done:
		r.done <- err
		return true
	default:
		return false
	}
}

func (f *fixture) start(t *testing.T, node string) *running {
	t.Helper()
	return f.startWith(t, node, f.member.Config)
}

// startWith starts an engine that reaches the member cluster through rc;
// tune, when given, changes its Config first.
func (f *fixture) startWith(t *testing.T, node string, rc *rest.Config, tune ...func(*gateway.Config)) *running {
	t.Helper()
	r := &running{rec: &recorder{k: f.k, node: node, events: f.events}, metrics: gateway.NewMetrics(), done: make(chan error, 1)}
	cfg := gateway.Config{
		ClusterID: "c1", Namespace: v1.ComponentNamespace, NodeName: node,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")},
		CableDriver: v1.CableDriverWireGuard, Cable: cabledriver.Settings{Port: 4500}, NATDiscoveryPort: 4490,
		BrokerSecret: broker.SecretName, Dataplane: r.rec, Metrics: r.metrics, GlobalCIDR: f.globalCIDR,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, f := range tune {
		f(&cfg)
	}
	e, err := gateway.New(rc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, r.cancel = context.WithCancel(context.Background())
	go func() { r.done <- e.Run(ctx); f.k.poke() }()
	t.Cleanup(func() { r.cancel(); <-r.done })
	return r
}

// stop stops the engine and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("Run after a clean stop: %v", err)
	}
	r.done <- nil // for the cleanup
}

// scrape is the engine's metrics in the text format.
func (r *running) scrape(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// termGoroutines lists the goroutines an engine's active term started that
// are still there: any in a method of the Engine other than Run (the
// standby loop) and startReach (the engine's reachability probes), and any
// syncer.
func termGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// Run's own, and the reachability probes it runs for its whole life
		// (startReach), are the engine's, not the term's.
		inEngine := strings.Contains(g, "strait.dev/strait/gateway.(*Engine).") && !strings.Contains(g, "strait.dev/strait/gateway.(*Engine).Run(") &&
			!strings.Contains(g, "strait.dev/strait/gateway.(*Engine).startReach")
		if inEngine || strings.Contains(g, "strait.dev/strait/pkg/syncer.(*Syncer).Run(") {
			out = append(out, g)
		}
	}
	return out
}

// role is a Gateway's current HAStatus.
func (f *fixture) role(name string) v1.HAStatus {
	var gw v1.Gateway
	if err := f.mc.Get(context.Background(), client.ObjectKey{Namespace: v1.ComponentNamespace, Name: name}, &gw); err != nil {
		return ""
	}
	return gw.Status.HAStatus
}

func (f *fixture) brokerEndpoints() []string {
	var eps v1.EndpointList
	_ = f.bc.List(context.Background(), &eps, client.InNamespace(f.info.Namespace))
	var names []string
	for _, e := range eps.Items {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	return names
}

// createRemote makes c2's gateway Endpoint at the broker, as c2 would.
func (f *fixture) createRemote(t *testing.T) {
	t.Helper()
	c2, err := client.New(f.info.RESTConfig(f.c2Token), client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	remote := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: "c2.gw", Namespace: f.info.Namespace, Labels: map[string]string{v1.ClusterIDLabel: "c2"}},
		Spec: v1.EndpointSpec{ClusterID: "c2", Hostname: "gw", PrivateIPs: v1.DualStackIPs{"192.168.2.1"}, Subnets: []v1.CIDR{"10.2.0.0/16"},
			CableDriver: v1.CableDriverWireGuard, WireGuard: &v1.WireGuardConfig{PublicKey: "c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Port: 4500}},
	}
	if err := c2.Create(context.Background(), remote); err != nil {
		t.Fatal(err)
	}
}

// TestEngineElectsPublishesAndFailsOver runs two gateway engines of cluster
// c1 against real apiservers (the member's and the broker's).
func TestEngineElectsPublishesAndFailsOver(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	logs := map[string]*testutil.SyncBuffer{"node-a": {}, "node-b": {}}
	engines := map[string]*running{}
	for _, n := range []string{"node-a", "node-b"} {
		engines[n] = f.startWith(t, n, f.member.Config, infoLogTo(logs[n]))
	}
	var first, other string
	f.k.waitFor(t, "one active and one passive gateway", func() bool {
		a, b := f.role("node-a"), f.role("node-b")
		switch {
		case a == v1.HAStatusActive && b == v1.HAStatusPassive:
			first, other = "node-a", "node-b"
		case b == v1.HAStatusActive && a == v1.HAStatusPassive:
			first, other = "node-b", "node-a"
		default:
			return false
		}
		return true
	})
	f.k.waitFor(t, "the active gateway's Endpoint at the broker", func() bool {
		return slices.Equal(f.brokerEndpoints(), []string{gateway.EndpointName("c1", first)})
	})
	ep := &v1.Endpoint{}
	if err := f.bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: gateway.EndpointName("c1", first)}, ep); err != nil {
		t.Fatal(err)
	}
	if ep.Spec.WireGuard == nil || ep.Spec.WireGuard.Port != 4500 || len(ep.Spec.PublicIPs) != 1 || len(ep.Spec.Subnets) != 2 {
		t.Errorf("published Endpoint %+v", ep.Spec)
	}
	// The standby is listed as a candidate, with the key it will take over
	// with (its Secret, made by whichever engine came first).
	f.waitCandidates(t, first, other)
	// The Cluster is synced on its own, perhaps a moment after the Endpoint.
	var cl v1.Cluster
	f.k.waitFor(t, "the Cluster at the broker", func() bool {
		return f.bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: "c1"}, &cl) == nil
	})
	if cl.Spec.Topology.Region != "eu" || len(cl.Spec.PodCIDRs) != 1 {
		t.Errorf("published Cluster: %+v", cl.Spec)
	}
	// The private key stays in the cluster, never in the Endpoint.
	var secret corev1.Secret
	if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-wireguard-" + first}, &secret); err != nil || len(secret.Data["privateKey"]) == 0 {
		t.Errorf("WireGuard key Secret: %v", err)
	}

	// A remote cluster's Endpoint reaches the active gateway's data plane,
	// as a peer.
	f.createRemote(t)
	f.k.waitFor(t, "the remote Endpoint in the active data plane", func() bool {
		return slices.Equal(engines[first].rec.peers(), []string{"c2.gw"})
	})
	f.k.waitFor(t, "the connection to c2 in the active Gateway's status", func() bool {
		var gw v1.Gateway
		if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: first}, &gw); err != nil {
			return false
		}
		c := gw.Status.Connections
		return gw.Status.LocalEndpoint == gateway.EndpointName("c1", first) && len(c) == 1 && c[0].Endpoint == "c2.gw" && c[0].ClusterID == "c2" &&
			c[0].UsingIP == "192.168.2.1" && c[0].Status == v1.Connecting
	})
	if got := engines[other].rec.peers(); len(got) != 0 {
		t.Errorf("the passive gateway's data plane was given %v", got)
	}

	// Failover: stop the active engine; the standby takes over and
	// republishes; the old Endpoint goes from the broker.
	engines[first].stop(t)
	f.k.waitFor(t, other+" active and "+first+"'s Endpoint replaced at the broker", func() bool {
		return f.role(other) == v1.HAStatusActive && f.role(first) == v1.HAStatusPassive &&
			slices.Equal(f.brokerEndpoints(), []string{gateway.EndpointName("c1", other), "c2.gw"})
	})
	f.k.waitFor(t, "the remote Endpoint in the new active data plane", func() bool {
		return slices.Equal(engines[other].rec.peers(), []string{"c2.gw"})
	})
	// The stopped gateway's node is still a gateway node: a candidate.
	f.waitCandidates(t, other, first)
	logTakeovers(t, other, logs[other])
}

// infoLogTo has an engine log at Info level to w.
func infoLogTo(w io.Writer) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
}

// logTakeovers reports (t.Log) how long each of node's active terms took
// from its start to forwarding, from the engine's own log line: a figure
// to read over several runs, not a bound.
func logTakeovers(t *testing.T, node string, log fmt.Stringer) {
	t.Helper()
	for _, l := range strings.Split(log.String(), "\n") {
		if i := strings.Index(l, "forwarding; takeover announced"); i >= 0 {
			if j := strings.Index(l, " after="); j >= 0 {
				t.Logf("%s: forwarding; takeover announced %s", node, strings.Fields(l[j:])[0])
			}
		}
	}
}

// waitCandidates waits until the Endpoint of active at the broker lists
// exactly the standby gateway on node standby as a candidate, as its own
// Endpoint would describe it: the fixture's addresses (behind NAT: the
// public address is not one of the Node's) and the public half of the key
// in the node's Secret.
func (f *fixture) waitCandidates(t *testing.T, active, standby string) {
	t.Helper()
	ctx := context.Background()
	var got []v1.GatewayCandidate
	var want string
	f.k.waitFor(t, "the standby "+standby+" as the only candidate in "+active+"'s Endpoint at the broker", func() bool {
		var secret corev1.Secret
		if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-wireguard-" + standby}, &secret); err != nil {
			return false
		}
		key, err := wgtypes.ParseKey(string(secret.Data["privateKey"]))
		if err != nil {
			t.Fatalf("%s's key: %v", standby, err)
		}
		i := strings.TrimPrefix(standby, "node-")[0] - 'a' + 1
		want = fmt.Sprintf("[{%s [192.168.1.%d] [198.18.1.%d] true %s 4500 [] false}]", standby, i, i, key.PublicKey())
		ep := &v1.Endpoint{}
		if err := f.bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: gateway.EndpointName("c1", active)}, ep); err != nil {
			return false
		}
		got = ep.Spec.Candidates
		return candidatesString(got) == want
	}, func() string { return fmt.Sprintf("candidates %s, want %s", candidatesString(got), want) })
}

// candidatesString renders candidates for comparison: hostname, private and
// public IPs, NAT, WireGuard key and port, health-check IPs, VXLAN or not.
func candidatesString(cs []v1.GatewayCandidate) string {
	var parts []string
	for _, c := range cs {
		key, port := "", int32(0)
		if c.WireGuard != nil {
			key, port = c.WireGuard.PublicKey, c.WireGuard.Port
		}
		parts = append(parts, fmt.Sprintf("{%s %v %v %t %s %d %v %t}", c.Hostname, c.PrivateIPs, c.PublicIPs, c.NATTraversal, key, port, c.HealthCheckIPs, c.VXLAN != nil))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestEngineLosesLeaseAndStandsBy steals the Lease from under an active
// engine: it must clear its data plane and stand by in the same process
// (Run does not return), and become active again, in a new epoch, once the
// Lease is free. A clean stop then releases the Lease.
// With a global CIDR (Globalnet), the gateway publishes it as the
// Cluster's globalCIDRs and as its Endpoint's only subnet, and health-checks
// from the global CIDR's second address.
func TestEnginePublishesGlobalCIDR(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.globalCIDR = netip.MustParsePrefix("242.1.0.0/16")
	f.start(t, "node-a")
	ep := &v1.Endpoint{}
	f.k.waitFor(t, "the active gateway's Endpoint at the broker", func() bool {
		return f.bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: gateway.EndpointName("c1", "node-a")}, ep) == nil
	})
	if got := fmt.Sprint(ep.Spec.Subnets, ep.Spec.HealthCheckIPs); got != "[242.1.0.0/16] [242.1.0.1]" {
		t.Errorf("published Endpoint subnets and health-check IPs %s, want [242.1.0.0/16] [242.1.0.1]", got)
	}
	var cl v1.Cluster
	f.k.waitFor(t, "the Cluster at the broker", func() bool {
		return f.bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: "c1"}, &cl) == nil
	})
	if got := fmt.Sprint(cl.Spec.GlobalCIDRs, cl.Spec.PodCIDRs); got != "[242.1.0.0/16] [10.1.0.0/16]" {
		t.Errorf("published Cluster global and pod CIDRs %s, want [242.1.0.0/16] [10.1.0.0/16]", got)
	}
}

func TestEngineLosesLeaseAndStandsBy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	kube, err := kubernetes.NewForConfig(f.member.Config)
	if err != nil {
		t.Fatal(err)
	}
	leases := kube.CoordinationV1().Leases(v1.ComponentNamespace)
	eng := f.start(t, "node-a")
	f.createRemote(t)
	f.k.waitFor(t, "node-a active with the remote as a peer", func() bool {
		return f.role("node-a") == v1.HAStatusActive && slices.Equal(eng.rec.peers(), []string{"c2.gw"})
	})
	// The metrics show the connection while active (the status is written
	// after the metrics are set, and kicks us).
	f.k.waitFor(t, "the connection to c2 in the metrics", func() bool {
		var gw v1.Gateway
		if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "node-a"}, &gw); err != nil || len(gw.Status.Connections) == 0 {
			return false
		}
		return strings.Contains(eng.scrape(t), `strait_connection_status{cluster_id="c2",endpoint="c2.gw"`)
	})
	epochOf := func() int {
		var ep v1.Endpoint
		if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "c1.node-a"}, &ep); err != nil {
			return -1
		}
		n, _ := strconv.Atoi(ep.Annotations[v1.GatewayEpochAnnotation])
		return n
	}
	firstEpoch := epochOf()
	_, closesBefore := eng.rec.counts()
	rolesBefore := len(f.roles.history("node-a"))

	// Another holder takes the Lease (as a gateway that won a race would).
	stealLease(t, leases)
	// Two clears: the term's own as it ends, and the standby's once it has
	// seen the thief hold the Lease.
	f.k.waitFor(t, "node-a's data plane cleared and its Gateway passive", func() bool {
		if eng.exited() {
			t.Fatal("Run returned after losing the Lease")
		}
		_, closes := eng.rec.counts()
		h := f.roles.history("node-a")
		return closes >= closesBefore+2 && len(h) > rolesBefore && h[len(h)-1] == v1.HAStatusPassive
	})
	// The term's goroutines ended before it returned, and so before the
	// passive status was written: none is left while node-a stands by.
	if left := termGoroutines(); len(left) > 0 {
		t.Errorf("%d goroutines of the lost term remain:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	// A standby shows no connection of the term it lost.
	if m := eng.scrape(t); strings.Contains(m, "strait_connection_") || !strings.Contains(m, "strait_gateway_active 0") {
		t.Errorf("metrics of a standby:\n%s", m)
	}
	if eng.exited() {
		t.Fatal("Run returned after losing the Lease")
	}
	if got := eng.rec.peers(); len(got) != 0 {
		t.Errorf("data plane after losing the Lease: %v", got)
	}

	// The Lease is free again: node-a takes it, in a new epoch.
	_, closesLost := eng.rec.counts()
	l, err := leases.Get(ctx, gateway.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.HolderIdentity = ptr.To("")
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.k.waitFor(t, "node-a active again with the remote as a peer, in a new epoch", func() bool {
		l, err := leases.Get(ctx, gateway.LeaseName, metav1.GetOptions{})
		return err == nil && ptr.Deref(l.Spec.HolderIdentity, "") == "node-a" &&
			f.role("node-a") == v1.HAStatusActive && slices.Equal(eng.rec.peers(), []string{"c2.gw"}) && epochOf() > firstEpoch
	})
	// Nothing cleared the data plane of the new term.
	if _, closes := eng.rec.counts(); closes != closesLost {
		t.Errorf("the data plane was cleared while active again: closes went from %d to %d", closesLost, closes)
	}
	if eng.exited() {
		t.Fatal("Run returned")
	}

	// A clean stop releases the Lease and leaves a passive status.
	eng.stop(t)
	l, err = leases.Get(ctx, gateway.LeaseName, metav1.GetOptions{})
	if err != nil || ptr.Deref(l.Spec.HolderIdentity, "x") != "" {
		t.Errorf("Lease after a clean stop: holder %v (%v), want released", ptr.Deref(l.Spec.HolderIdentity, "<nil>"), err)
	}
	if got := f.role("node-a"); got != v1.HAStatusPassive {
		t.Errorf("status after a clean stop: %q, want passive", got)
	}
	if _, closes := eng.rec.counts(); closes <= closesLost {
		t.Error("the data plane was not cleared on the clean stop")
	}
}

// TestEngineRetriesAFailedTerm: an active term that fails (here: no broker
// credential yet) releases the Lease and stands by in the same process, and
// a later term succeeds once the cause is gone.
func TestEngineRetriesAFailedTerm(t *testing.T) {
	f := newFixture(t, false)
	eng := f.start(t, "node-a")
	f.k.waitFor(t, "a failed active term: node-a active, then passive again", func() bool {
		h := f.roles.history("node-a")
		return len(h) >= 3 && slices.Equal(h[len(h)-2:], []v1.HAStatus{v1.HAStatusActive, v1.HAStatusPassive})
	})
	if eng.exited() {
		t.Fatal("Run returned after a failed term")
	}
	f.createCredential(t)
	f.k.waitFor(t, "node-a active with its Endpoint at the broker", func() bool {
		return f.role("node-a") == v1.HAStatusActive && slices.Equal(f.brokerEndpoints(), []string{"c1.node-a"})
	})
	eng.stop(t)
}

// A change of the local facts during a term (a rotated key, a new public
// address on the Node) reaches the published Endpoint and the data plane in
// the same term: no failover, no clear of the data plane.
func TestEngineFollowsLocalChanges(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	eng := f.start(t, "node-a")
	f.createRemote(t)
	// The role history comes from an informer, which may lag the Gateway
	// read: wait until it too has seen node-a active (seen under load:
	// "roles went from [] to [active]" when it had not yet).
	f.k.waitFor(t, "node-a active with the remote as a peer", func() bool {
		h := f.roles.history("node-a")
		return f.role("node-a") == v1.HAStatusActive && slices.Equal(eng.rec.peers(), []string{"c2.gw"}) &&
			len(h) > 0 && h[len(h)-1] == v1.HAStatusActive
	})
	endpoint := func() (v1.Endpoint, error) {
		var ep v1.Endpoint
		err := f.bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: "c1.node-a"}, &ep)
		return ep, err
	}
	f.k.waitFor(t, "node-a's Endpoint at the broker", func() bool { _, err := endpoint(); return err == nil })
	before, _ := endpoint()
	_, closesBefore := eng.rec.counts()
	rolesBefore := f.roles.history("node-a")

	// Rotate the key in its Secret, and move the Node's public address.
	ks := cabledriver.WireGuard.Key
	key, err := ks.Generate()
	if err != nil {
		t.Fatal(err)
	}
	public, err := ks.Public(key)
	if err != nil {
		t.Fatal(err)
	}
	var secret corev1.Secret
	if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: ks.SecretPrefix + "node-a"}, &secret); err != nil {
		t.Fatal(err)
	}
	secret.Data["privateKey"] = []byte(key)
	if err := f.mc.Update(ctx, &secret); err != nil {
		t.Fatal(err)
	}
	var node corev1.Node
	if err := f.mc.Get(ctx, client.ObjectKey{Name: "node-a"}, &node); err != nil {
		t.Fatal(err)
	}
	node.Annotations[gateway.PublicIPAnnotation] = "198.18.1.99"
	if err := f.mc.Update(ctx, &node); err != nil {
		t.Fatal(err)
	}
	f.k.waitFor(t, "the new key and address at the broker and the new key in the data plane", func() bool {
		ep, err := endpoint()
		return err == nil && ep.Spec.WireGuard != nil && ep.Spec.WireGuard.PublicKey == public &&
			slices.Equal(ep.Spec.PublicIPs, v1.DualStackIPs{"198.18.1.99"}) && eng.rec.settings().PrivateKey == key
	})
	after, _ := endpoint()
	if after.Annotations[v1.GatewayEpochAnnotation] != before.Annotations[v1.GatewayEpochAnnotation] {
		t.Errorf("epoch went from %s to %s: a new term, not the same one", before.Annotations[v1.GatewayEpochAnnotation], after.Annotations[v1.GatewayEpochAnnotation])
	}
	if _, closes := eng.rec.counts(); closes != closesBefore {
		t.Errorf("the data plane was cleared (closes %d to %d)", closesBefore, closes)
	}
	if h := f.roles.history("node-a"); !slices.Equal(h, rolesBefore) || f.role("node-a") != v1.HAStatusActive {
		t.Errorf("roles went from %v to %v", rolesBefore, h)
	}
	if got := eng.rec.peers(); !slices.Equal(got, []string{"c2.gw"}) {
		t.Errorf("peers after the change: %v", got)
	}
}

// awayTransport fails every request while away is set, as an apiserver that
// is not up yet would, and kicks the waiters on each failure.
type awayTransport struct {
	next     http.RoundTripper
	away     *atomic.Bool
	failures *atomic.Int32
	k        *kicker
}

func (a awayTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if a.away.Load() {
		a.failures.Add(1)
		a.k.poke()
		return nil, errors.New("connection refused (the test's apiserver is away)")
	}
	return a.next.RoundTrip(r)
}

// An apiserver that is away when the engine starts is waited for: Run tries
// again with back-off instead of returning, and the engine becomes active
// once the apiserver answers.
func TestEngineWaitsForTheApiserver(t *testing.T) {
	f := newFixture(t)
	var away atomic.Bool
	var failures atomic.Int32
	away.Store(true)
	rc := rest.CopyConfig(f.member.Config)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return awayTransport{next: next, away: &away, failures: &failures, k: f.k}
	})
	eng := f.startWith(t, "node-a", rc)
	f.k.waitFor(t, "three failed requests", func() bool {
		if eng.exited() {
			t.Fatal("Run returned while the apiserver was away")
		}
		return failures.Load() >= 3
	})
	away.Store(false)
	f.k.waitFor(t, "node-a active", func() bool {
		if eng.exited() {
			t.Fatal("Run returned")
		}
		return f.role("node-a") == v1.HAStatusActive
	})
	eng.stop(t)
}

// A join again that changes the broker credential (the old token revoked
// with the member's service account, a new one in the Secret) takes effect
// in the running gateway: its syncer restarts with the new token and keeps
// the broker in step, with no restart of the engine.
func TestEngineFollowsCredential(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	eng := f.start(t, "node-a")
	mine := gateway.EndpointName("c1", "node-a")
	f.k.waitFor(t, "node-a active with its Endpoint at the broker", func() bool {
		return f.role("node-a") == v1.HAStatusActive && slices.Equal(f.brokerEndpoints(), []string{mine})
	})
	if err := f.bc.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.info.Namespace, Name: broker.MemberPrefix + "c1"}}); err != nil {
		t.Fatal(err)
	}
	tok, err := broker.Enroll(ctx, f.info, broker.Member{ClusterID: "c1", ClusterUID: "c1",
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	old, err := client.New(f.info.RESTConfig(f.c1Token), client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	// The apiserver caches a token's validity for a few seconds.
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsUnauthorized(old.List(ctx, &v1.EndpointList{}, client.InNamespace(f.info.Namespace))), nil
	}); err != nil {
		t.Fatalf("the old token still works: %v", err)
	}
	secret := broker.CredentialSecret(v1.ComponentNamespace, f.info, tok)
	if err := f.mc.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// The broker loses c1's Endpoint (an administrator's slip); the syncer,
	// with the new token, puts it back.
	if err := f.bc.DeleteAllOf(ctx, &v1.Endpoint{}, client.InNamespace(f.info.Namespace)); err != nil {
		t.Fatal(err)
	}
	f.k.waitFor(t, "c1's Endpoint back at the broker", func() bool {
		return slices.Equal(f.brokerEndpoints(), []string{mine})
	})
	eng.stop(t)
}

// crashTransport fails every request once dead is set, as the apiserver
// connection of a process killed with kill -9 would: nothing it would write
// on its way out (the Lease's release, a passive status) arrives.
type crashTransport struct {
	next http.RoundTripper
	dead *atomic.Bool
}

func (c crashTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.dead.Load() {
		return nil, errors.New("the test's gateway process was killed")
	}
	return c.next.RoundTrip(r)
}

// startCrashable starts an engine whose crash stops it as kill -9 would: it
// writes nothing more, and the Lease stays held.
func (f *fixture) startCrashable(t *testing.T, node string, tune ...func(*gateway.Config)) (r *running, crash func()) {
	t.Helper()
	var dead atomic.Bool
	rc := rest.CopyConfig(f.member.Config)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper { return crashTransport{next: next, dead: &dead} })
	r = f.startWith(t, node, rc, tune...)
	return r, func() {
		dead.Store(true)
		r.cancel()
		<-r.done
		r.done <- nil // for the cleanup
	}
}

// TestEngineCrashIsRefusedAtOnce: a killed active gateway's node refuses
// the standby's next heartbeat (ICMP port unreachable, real UDP on
// loopback), and the standby takes the Lease on that, not on missed
// heartbeats (1000 of them would take 100 s) nor on the Lease's expiry
// (15 s): its log says the active gateway is gone because it refused.
// The active gateway is the test's stand-in: it holds the Lease and answers
// heartbeats on node-a's InternalIP with a health.Prober, then closes its
// socket as kill -9 would (an engine stopped in-process stops cleanly and
// says it is leaving first).
func TestEngineCrashIsRefusedAtOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	port, ips := f.heartbeatAddresses(t)
	kube, err := kubernetes.NewForConfig(f.member.Config)
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.NewMicroTime(time.Now())
	if _, err := kube.CoordinationV1().Leases(v1.ComponentNamespace).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: gateway.LeaseName, Namespace: v1.ComponentNamespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-a"), LeaseDurationSeconds: ptr.To[int32](15),
			AcquireTime: &now, RenewTime: &now, LeaseTransitions: ptr.To[int32](1)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ips["node-a"]), uint16(port))))
	if err != nil {
		t.Fatal(err)
	}
	activeCtx, kill := context.WithCancel(ctx)
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		_ = health.NewProber(conn, health.Options{Interval: time.Hour}).Run(activeCtx)
	}()
	t.Cleanup(func() { kill(); <-killed })

	logB := &testutil.SyncBuffer{}
	f.startWith(t, "node-b", f.member.Config, func(c *gateway.Config) {
		c.HealthCheckPort, c.HealthCheckBind = port, netip.MustParseAddr(ips["node-b"])
		c.HeartbeatFailures = 1000
		c.Log = slog.New(slog.NewTextHandler(io.MultiWriter(logB, os.Stderr), &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	// A log line kicks no informer: polled.
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, waitTimeout, true, func(context.Context) (bool, error) {
		return strings.Contains(logB.String(), "hearing the active gateway's heartbeats"), nil
	}); err != nil {
		t.Fatalf("node-b never heard node-a's heartbeats: %v", err)
	}
	kill()
	<-killed
	_ = conn.Close()
	f.k.waitFor(t, "node-b active", func() bool { return f.role("node-b") == v1.HAStatusActive })
	logs := logB.String()
	if !strings.Contains(logs, "the active gateway is gone") || !strings.Contains(logs, "refused") ||
		!strings.Contains(logs, "the active gateway stopped answering heartbeats; taking the Lease") {
		t.Fatalf("node-b is active, but did not take the Lease on a refused heartbeat; its log:\n%s", logs)
	}
}

// listOnce lets the first list of a resource's collection through (a GET
// without a watch, or a watch that sends the initial objects) and refuses
// every later one, as an apiserver that no longer answers lists would;
// watches go through.
type listOnce struct {
	next     http.RoundTripper
	resource string
	lists    *atomic.Int32
}

func (l listOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	q := r.URL.Query()
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+l.resource) &&
		(q.Get("watch") != "true" || q.Get("sendInitialEvents") == "true") && l.lists.Add(1) > 1 {
		return nil, errors.New("the test refuses a second list of " + l.resource)
	}
	return l.next.RoundTrip(r)
}

// TestEngineStandbyKeepsEndpointsListed: a standby keeps the Endpoints
// listed and watched while it waits, and takes over with them: its first
// step forwards to the remote peers without listing the Endpoints again.
// node-b's apiserver connection lets one list of Endpoints through (its
// first, standing by, with c2's Endpoint already there) and refuses every
// later one; when the active node-a crashes, node-b takes over and gives
// its data plane c2's gateway as a peer.
func TestEngineStandbyKeepsEndpointsListed(t *testing.T) {
	f := newFixture(t)
	a, crash := f.startCrashable(t, "node-a")
	f.createRemote(t)
	f.k.waitFor(t, "node-a active with c2's gateway as its peer", func() bool {
		return f.role("node-a") == v1.HAStatusActive && slices.Equal(a.rec.peers(), []string{"c2.gw"})
	})
	var lists atomic.Int32
	rc := rest.CopyConfig(f.member.Config)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return listOnce{next: next, resource: "endpoints", lists: &lists}
	})
	b := f.startWith(t, "node-b", rc)
	f.k.waitFor(t, "node-b passive, having listed the Endpoints", func() bool {
		return f.role("node-b") == v1.HAStatusPassive && lists.Load() >= 1
	})
	crash()
	f.k.waitFor(t, "node-b's data plane with c2's gateway as its peer", func() bool {
		return slices.Equal(b.rec.peers(), []string{"c2.gw"})
	}, func() string {
		return fmt.Sprintf("node-b's role %s, lists of Endpoints tried %d", f.role("node-b"), lists.Load())
	})
}

// TestEngineCrashedGatewayIsShownPassive: when the active gateway crashes
// (no status written, the Lease not released) and the standby takes over,
// the Gateway objects soon show exactly one active gateway, the Lease
// holder's; the crashed one's says who holds the Lease.
func TestEngineCrashedGatewayIsShownPassive(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	kube, err := kubernetes.NewForConfig(f.member.Config)
	if err != nil {
		t.Fatal(err)
	}
	holder := func() string {
		l, err := kube.CoordinationV1().Leases(v1.ComponentNamespace).Get(ctx, gateway.LeaseName, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return ptr.Deref(l.Spec.HolderIdentity, "")
	}
	// actives are the Gateways of c1 that say active, sorted.
	actives := func() []string {
		var gws v1.GatewayList
		if err := f.mc.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
			return nil
		}
		var out []string
		for _, g := range gws.Items {
			if g.Status.HAStatus == v1.HAStatusActive {
				out = append(out, g.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	_, crash := f.startCrashable(t, "node-a")
	f.k.waitFor(t, "node-a active, holding the Lease", func() bool {
		return f.role("node-a") == v1.HAStatusActive && holder() == "node-a"
	})
	f.start(t, "node-b")
	f.k.waitFor(t, "node-b passive", func() bool { return f.role("node-b") == v1.HAStatusPassive })

	crash()
	if got := f.role("node-a"); got != v1.HAStatusActive {
		t.Fatalf("node-a's Gateway says %q after the crash; the crash should have left it active", got)
	}
	f.k.waitFor(t, "node-b holding the Lease", func() bool { return holder() == "node-b" })
	var got []string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		got = actives()
		return slices.Equal(got, []string{holder()}), nil
	}); err != nil {
		t.Fatalf("active Gateways %v, Lease held by %q; want only the Lease holder's: %v", got, holder(), err)
	}
	if !slices.Equal(got, []string{"node-b"}) {
		t.Fatalf("active Gateways %v, want [node-b]", got)
	}
	var gw v1.Gateway
	if err := f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "node-a"}, &gw); err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(gw.Status.Conditions, "Ready")
	if ready == nil || ready.Status == metav1.ConditionTrue || !strings.Contains(ready.Message, "node-b") ||
		gw.Status.LocalEndpoint != "" || len(gw.Status.Connections) != 0 {
		t.Errorf("the crashed gateway's status %+v; want its Ready condition not true and naming node-b, no endpoint nor connections", gw.Status)
	}
}

// TestEngineThatLostTheLeaseWritesNoActiveStatus: an active gateway whose
// Lease was taken, and that has not noticed yet (it renews every retry
// period), does not write an active status: a connection that appears
// after the takeover must never show in an active status of it.
func TestEngineThatLostTheLeaseWritesNoActiveStatus(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	kube, err := kubernetes.NewForConfig(f.member.Config)
	if err != nil {
		t.Fatal(err)
	}
	leases := kube.CoordinationV1().Leases(v1.ComponentNamespace)
	var mu sync.Mutex
	var activeWithRemote []string // resourceVersions of such statuses of node-a
	f.k.watch(t, f.member.Config, v1.ComponentNamespace, f.gateways, func(u *unstructured.Unstructured) {
		var gw v1.Gateway
		if u.GetName() != "node-a" || runtimeConvert(u, &gw) != nil || gw.Status.HAStatus != v1.HAStatusActive {
			return
		}
		for _, c := range gw.Status.Connections {
			if c.Endpoint == "c2.gw" {
				mu.Lock()
				activeWithRemote = append(activeWithRemote, gw.ResourceVersion)
				mu.Unlock()
			}
		}
	})
	eng := f.start(t, "node-a")
	f.k.waitFor(t, "node-a active", func() bool { return f.role("node-a") == v1.HAStatusActive })
	rolesBefore := len(f.roles.history("node-a"))

	stealLease(t, leases)
	// A new remote reaches node-a's term before it sees the thief (put
	// straight into the member's namespace, as the syncer imports it, so
	// that it comes within the retry period); its connection would be
	// worth a status write.
	remote := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: "c2.gw", Namespace: v1.ComponentNamespace, Labels: map[string]string{v1.ClusterIDLabel: "c2"}},
		Spec: v1.EndpointSpec{ClusterID: "c2", Hostname: "gw", PrivateIPs: v1.DualStackIPs{"192.168.2.1"}, Subnets: []v1.CIDR{"10.2.0.0/16"},
			CableDriver: v1.CableDriverWireGuard, WireGuard: &v1.WireGuardConfig{PublicKey: "c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Port: 4500}},
	}
	if err := f.mc.Create(ctx, remote); err != nil {
		t.Fatal(err)
	}
	f.k.waitFor(t, "node-a passive", func() bool {
		if eng.exited() {
			t.Fatal("Run returned after losing the Lease")
		}
		h := f.roles.history("node-a")
		return len(h) > rolesBefore && h[len(h)-1] == v1.HAStatusPassive
	})
	mu.Lock()
	defer mu.Unlock()
	if len(activeWithRemote) > 0 {
		t.Errorf("node-a wrote an active status with the connection to c2 after losing the Lease (resourceVersions %v)", activeWithRemote)
	}
}

func runtimeConvert(u *unstructured.Unstructured, out any) error {
	return k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}

// stealLease gives the gateway Lease to "thief", as a gateway that won a
// race would take it: a new holder, renewed now, one more transition.
func stealLease(t *testing.T, leases coordinationv1client.LeaseInterface) {
	t.Helper()
	ctx := context.Background()
	// The holder renews every few hundred milliseconds: a renewal between
	// the Get and the Update is a conflict, and the thief tries again.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, gateway.LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.AcquireTime = ptr.To("thief"), &now, &now
		l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// heartbeatAddresses gives node-a and node-b each its own loopback
// address as InternalIP, where its engine answers heartbeats (with
// Config.HealthCheckBind), and a UDP port free there for the health checks.
func (f *fixture) heartbeatAddresses(t *testing.T) (port int, ips map[string]string) {
	t.Helper()
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	port = probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	ips = map[string]string{"node-a": "127.0.0.3", "node-b": "127.0.0.4"}
	for node, ip := range ips {
		var n corev1.Node
		if err := f.mc.Get(context.Background(), client.ObjectKey{Name: node}, &n); err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
		if err := f.mc.Status().Update(context.Background(), &n); err != nil {
			t.Fatal(err)
		}
	}
	return port, ips
}

// leaseHolders watches the gateway Lease from now on; the function returns
// every holder it had, in order ("" for none).
func (f *fixture) leaseHolders(t *testing.T) func() []string {
	var (
		mu      sync.Mutex
		holders []string
	)
	f.k.watch(t, f.member.Config, v1.ComponentNamespace, coordinationv1.SchemeGroupVersion.WithResource("leases"), func(u *unstructured.Unstructured) {
		h, _, _ := unstructured.NestedString(u.Object, "spec", "holderIdentity")
		mu.Lock()
		defer mu.Unlock()
		if len(holders) == 0 || holders[len(holders)-1] != h {
			holders = append(holders, h)
		}
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(holders)
	}
}

// TestEngineCleanStopHandsOver stops the active engine cleanly (its Run's
// context ends, as on SIGTERM) with a standby that hears its heartbeats:
// real UDP heartbeats, each engine answering on its own loopback address,
// its node's InternalIP. The role must go over make before break: the
// standby takes the Lease straight from the stopping gateway (no moment
// without a holder: it was told, it did not find a released Lease, and it
// cannot have missed heartbeats, which would take 1000 of them), and drives
// its data plane with the remote peer before the stopping gateway clears
// its own.
func TestEngineCleanStopHandsOver(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.events = &eventLog{}
	port, ips := f.heartbeatAddresses(t)
	leaseHolders := f.leaseHolders(t)
	start := func(node string) *running {
		return f.startWith(t, node, f.member.Config, func(c *gateway.Config) {
			c.HealthCheckPort, c.HealthCheckBind = port, netip.MustParseAddr(ips[node])
			c.HeartbeatFailures = 1000
		})
	}
	engines := map[string]*running{"node-a": start("node-a")}
	f.k.waitFor(t, "node-a active", func() bool { return f.role("node-a") == v1.HAStatusActive })
	engines["node-b"] = start("node-b")
	f.k.waitFor(t, "node-b passive", func() bool { return f.role("node-b") == v1.HAStatusPassive })
	f.createRemote(t)
	f.k.waitFor(t, "the remote Endpoint in node-a's data plane", func() bool {
		return slices.Equal(engines["node-a"].rec.peers(), []string{"c2.gw"})
	})
	f.k.waitFor(t, "node-a's status listing the connection to c2", func() bool {
		var gw v1.Gateway
		return f.mc.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "node-a"}, &gw) == nil && len(gw.Status.Connections) == 1
	})
	// node-a answers heartbeats on its node's address (else this test
	// proves nothing); node-b, watching it since its first look at the
	// Lease, hears it.
	heard := make(chan struct{})
	go func() {
		defer close(heard)
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 5)})
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		req := make([]byte, 24)
		copy(req, "STHC")
		req[4], req[5], req[15] = 1, 1, 1
		buf := make([]byte, 64)
		for {
			if _, err := c.WriteToUDP(req, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: port}); err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _, err := c.ReadFromUDP(buf); err == nil && n == 24 {
				return
			}
		}
	}()
	<-heard
	before := leaseHolders()
	if !slices.Equal(before, []string{"node-a"}) {
		t.Fatalf("Lease holders before the stop: %q; want only node-a", before)
	}
	mark := f.events.len()
	engines["node-a"].stop(t)
	f.k.waitFor(t, "node-b active with the remote as a peer", func() bool {
		return f.role("node-b") == v1.HAStatusActive && slices.Equal(engines["node-b"].rec.peers(), []string{"c2.gw"})
	})
	got := leaseHolders()
	if !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("Lease holders %q; want node-a then node-b, with no moment without a holder", got)
	}
	events := f.events.since(mark)
	bSet := slices.Index(events, "node-b set c2.gw")
	aClose := slices.Index(events, "node-a close")
	if bSet < 0 || aClose < 0 || aClose < bSet {
		t.Errorf("data plane calls after the stop: %q; want node-b's set with c2.gw before node-a's close", events)
	}
	if f.role("node-a") != v1.HAStatusPassive {
		t.Errorf("node-a's Gateway says %s after its stop; want passive", f.role("node-a"))
	}
}

// holdTransport holds every request for a Node, once the Lease was
// written, until the request's context ends, and says so on held: a new
// term's first request, its Node's read (for the local Endpoint), comes
// before it drives the data plane. (Not the Endpoints' list: the engine's
// Endpoints informer runs from the start, standing by too.)
type holdTransport struct {
	next  http.RoundTripper
	taken *atomic.Bool
	held  chan<- struct{}
}

func (h holdTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if h.taken.Load() && strings.Contains(r.URL.Path, "/nodes/") {
		select {
		case h.held <- struct{}{}:
		default:
		}
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	resp, err := h.next.RoundTrip(r)
	if err == nil && strings.Contains(r.URL.Path, "/leases") && r.Method != http.MethodGet {
		h.taken.Store(true)
	}
	return resp, err
}

// An engine stopped early in its active term, before it drove the data
// plane (here while it reads its Node), has nothing to hand over
// but still gives the Lease back, rather than leave the standbys to wait
// for heartbeats or its expiry.
func TestEngineStoppedEarlyInTermReleasesLease(t *testing.T) {
	f := newFixture(t)
	var taken atomic.Bool
	held := make(chan struct{}, 1)
	rc := rest.CopyConfig(f.member.Config)
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return holdTransport{next: next, taken: &taken, held: held}
	})
	eng := f.startWith(t, "node-a", rc)
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the engine never read its Node in its term")
	}
	eng.stop(t)
	l, err := kubernetes.NewForConfigOrDie(f.member.Config).CoordinationV1().Leases(v1.ComponentNamespace).Get(context.Background(), gateway.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != "" {
		t.Errorf("Lease held by %q after the engine stopped; want it released", h)
	}
	if _, closes := eng.rec.counts(); closes != 0 {
		t.Errorf("%d data plane closes by a term that never drove it; want none", closes)
	}
}

// remoteGateway is c2's gateway as the engines under test see it, on
// 127.0.0.9: it answers NAT discovery on a port of its own, and health
// probes on the engines' health-check port (its health-check address is
// 127.0.0.9) from the sources answer allows. Its Endpoint is at the broker.
type remoteGateway struct {
	mu     sync.Mutex
	answer func(from netip.Addr) bool
}

// startRemoteGateway publishes c2's gateway "gw": NAT discovery and
// health probes answered on 127.0.0.9, and with healthIPs (more
// health-check addresses, such as "::1" for a dual-stack cluster) the
// health probes there too.
func (f *fixture) startRemoteGateway(t *testing.T, healthPort int, healthIPs ...string) *remoteGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	remoteIP := net.IPv4(127, 0, 0, 9)
	natConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: remoteIP})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = natdiscovery.New(natConn).Run(ctx) }()
	r := &remoteGateway{answer: func(netip.Addr) bool { return true }}
	healthIPs = append([]string{"127.0.0.9"}, healthIPs...)
	for _, ip := range healthIPs {
		hc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(healthPort))))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			<-ctx.Done()
			hc.Close()
		}()
		go func() {
			// A health request (package health's wire format: 24 bytes, kind
			// byte 5 is 1) comes back as a reply (kind 2, no flags), with its
			// sequence number and send time.
			b := make([]byte, 64)
			for {
				n, from, err := hc.ReadFromUDPAddrPort(b)
				if err != nil {
					return
				}
				r.mu.Lock()
				ok := r.answer(from.Addr())
				r.mu.Unlock()
				if n == 24 && b[5] == 1 && ok {
					b[5], b[6] = 2, 0
					_, _ = hc.WriteToUDPAddrPort(b[:n], from)
				}
			}
		}()
	}
	c2, err := client.New(f.info.RESTConfig(f.c2Token), client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	remote := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: "c2.gw", Namespace: f.info.Namespace, Labels: map[string]string{v1.ClusterIDLabel: "c2"}},
		Spec: v1.EndpointSpec{ClusterID: "c2", Hostname: "gw", PrivateIPs: v1.DualStackIPs{"127.0.0.9"}, Subnets: []v1.CIDR{"10.2.0.0/16"},
			NATDiscoveryPort: int32(natConn.LocalAddr().(*net.UDPAddr).Port), CableDriver: v1.CableDriverWireGuard, WireGuard: &v1.WireGuardConfig{PublicKey: "c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Port: 4500}},
	}
	for _, ip := range healthIPs {
		remote.Spec.HealthCheckIPs = append(remote.Spec.HealthCheckIPs, v1.IP(ip))
	}
	if err := c2.Create(context.Background(), remote); err != nil {
		t.Fatal(err)
	}
	return r
}

// answerOnly makes the remote gateway answer health probes from these
// sources only; none answers nobody.
func (r *remoteGateway) answerOnly(sources ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = func(from netip.Addr) bool { return slices.Contains(sources, from.Unmap().String()) }
}

// cutOffPair starts node-a, active, and node-b, standby, each answering
// heartbeats on its own loopback address, with a remote gateway, and waits
// until node-a reports the remote connected. The engines' main probers
// send from their addresses (127.0.0.3, 127.0.0.4); the probes a standby
// sends through the active gateway leave from 127.0.0.1 (no route agent
// here: they go straight to the remote; from ::1 to an IPv6 address).
// With tune, the engines' Configs are changed after cutOffPair's own
// changes; with remoteHealthIPs, the remote gateway has those
// health-check addresses after 127.0.0.9.
func cutOffPair(t *testing.T, tune func(*gateway.Config), remoteHealthIPs ...string) (f *fixture, remote *remoteGateway, logs map[string]*testutil.SyncBuffer, leaseHolders func() []string) {
	t.Helper()
	f = newFixture(t)
	port, ips := f.heartbeatAddresses(t)
	leaseHolders = f.leaseHolders(t)
	remote = f.startRemoteGateway(t, port, remoteHealthIPs...)
	logs = map[string]*testutil.SyncBuffer{"node-a": {}, "node-b": {}}
	start := func(node string) *running {
		return f.startWith(t, node, f.member.Config, func(c *gateway.Config) {
			c.HealthCheckPort, c.HealthCheckBind = port, netip.MustParseAddr(ips[node])
			c.HealthCheckInterval = 200 * time.Millisecond
			c.Log = slog.New(slog.NewTextHandler(io.MultiWriter(logs[node], os.Stderr), &slog.HandlerOptions{Level: slog.LevelInfo}))
			if tune != nil {
				tune(c)
			}
		})
	}
	start("node-a")
	f.k.waitFor(t, "node-a active", func() bool { return f.role("node-a") == v1.HAStatusActive })
	start("node-b")
	f.k.waitFor(t, "node-b passive", func() bool { return f.role("node-b") == v1.HAStatusPassive })
	f.k.waitFor(t, "node-a connected to c2, reporting it reachable", func() bool {
		gw := f.gateway("node-a")
		c := meta.FindStatusCondition(gw.Status.Conditions, "RemoteClustersReachable")
		return len(gw.Status.Connections) == 1 && gw.Status.Connections[0].Status == v1.Connected && c != nil && c.Status == metav1.ConditionTrue
	})
	return f, remote, logs, leaseHolders
}

func (f *fixture) gateway(node string) v1.Gateway {
	var gw v1.Gateway
	_ = f.mc.Get(context.Background(), client.ObjectKey{Namespace: v1.ComponentNamespace, Name: node}, &gw)
	return gw
}

// TestEngineCutOffGatewayIsReplaced: the active gateway loses every remote
// cluster (its health probes through the cable go unanswered, as when its
// uplink, cable device or WireGuard is broken) while the standby reaches
// the remote gateway (its NAT discovery port answers, and so do the probes
// the standby sends). The active gateway reports it in its Gateway status
// and heartbeat answers, and the standby takes the role. When the new
// active gateway loses the remote cluster too (the fault is the remote's),
// the old one, cut off itself a moment ago, stays standby: no flapping.
// Real UDP throughout: heartbeats, health probes and NAT discovery on
// loopback addresses.
func TestEngineCutOffGatewayIsReplaced(t *testing.T) {
	f, remote, logs, leaseHolders := cutOffPair(t, nil)
	reachable := func(node string) *metav1.Condition {
		gw := f.gateway(node)
		return meta.FindStatusCondition(gw.Status.Conditions, "RemoteClustersReachable")
	}
	// node-a's probes go unanswered; node-b's are answered.
	remote.answerOnly("127.0.0.4", "127.0.0.1")
	f.k.waitFor(t, "node-b holding the Lease", func() bool {
		h := leaseHolders()
		return len(h) > 0 && h[len(h)-1] == "node-b"
	})
	if got := leaseHolders(); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("Lease holders %q; want node-a then node-b", got)
	}
	if !strings.Contains(logs["node-a"].String(), "lost every remote cluster") {
		t.Errorf("node-a's log does not say it lost every remote cluster:\n%s", logs["node-a"])
	}
	if !strings.Contains(logs["node-b"].String(), `why="the active gateway lost every remote cluster"`) {
		t.Errorf("node-b's log does not say why it took the Lease:\n%s", logs["node-b"])
	}

	// The remote answers nobody now: node-b loses it too and reports so;
	// node-a hears it and, cut off itself a moment ago, stays standby.
	remote.answerOnly()
	f.k.waitFor(t, "node-b reporting every remote cluster lost", func() bool {
		c := reachable("node-b")
		return f.role("node-b") == v1.HAStatusActive && c != nil && c.Status == metav1.ConditionFalse && c.Reason == "LostEveryRemoteCluster" &&
			strings.Contains(c.Message, "c2.gw")
	})
	f.k.waitFor(t, "node-a hearing node-b cut off and staying standby", func() bool {
		return strings.Contains(logs["node-a"].String(), "staying standby")
	})
	// Back: node-b reaches the remote again and says so; the Lease never
	// went back to node-a.
	remote.answerOnly("127.0.0.3", "127.0.0.4", "127.0.0.1")
	f.k.waitFor(t, "node-b reporting the remote cluster reachable again", func() bool {
		c := reachable("node-b")
		return c != nil && c.Status == metav1.ConditionTrue
	})
	if got := leaseHolders(); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("Lease holders %q; want node-a then node-b only (no flapping)", got)
	}
}

// TestEngineRemoteFaultMovesTheRoleOnce: the remote cluster answers NAT
// discovery but carries no traffic (its cable device is down, say), so
// the active gateway's own probes and the standby's probes through it go
// unanswered alike. The standby's probes through node-a would condemn it
// first (node-a counts 6 unanswered probes to an error, node-b 3), but
// node-a's own probes fail too, and it says so in its heartbeat answers:
// node-b waits until node-a says it is cut off, and takes the role for
// that. Node-a, cut off itself a moment ago, must not take the role back
// when node-b loses the remote too. (Taking the role on its probes through
// node-a, node-b left node-a free to take it back on its own probes
// through node-b, and the role moved every 2 s or so: in a dual-stack
// e2e, the remote cluster's standby then never reached a stable active
// gateway here, and never took over from its own cut-off one.)
func TestEngineRemoteFaultMovesTheRoleOnce(t *testing.T) {
	f, remote, logs, leaseHolders := cutOffPair(t, func(c *gateway.Config) {
		if c.NodeName == "node-a" {
			c.HealthCheckFailures = 6
		}
	})
	remote.answerOnly()
	f.k.waitFor(t, "node-b holding the Lease", func() bool {
		h := leaseHolders()
		return len(h) > 0 && h[len(h)-1] == "node-b"
	}, func() string { return "node-b's log:\n" + logs["node-b"].String() })
	if !strings.Contains(logs["node-b"].String(), `why="the active gateway lost every remote cluster"`) {
		t.Errorf("node-b took the Lease before node-a said it was cut off:\n%s", logs["node-b"])
	}
	if !strings.Contains(logs["node-b"].String(), "waiting for it to say it is cut off") {
		t.Errorf("node-b's log does not say it waited for node-a's verdict:\n%s", logs["node-b"])
	}
	f.k.waitFor(t, "node-b reporting every remote cluster lost", func() bool {
		gw := f.gateway("node-b")
		c := meta.FindStatusCondition(gw.Status.Conditions, "RemoteClustersReachable")
		return f.role("node-b") == v1.HAStatusActive && c != nil && c.Reason == "LostEveryRemoteCluster"
	})
	// Time for node-a to take the role back, had it been going to: its
	// probes through node-b have failed for long enough, and it hears
	// node-b say it is cut off.
	time.Sleep(3 * time.Second)
	if got := leaseHolders(); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("Lease holders %q; want node-a then node-b only (no flapping)\nnode-a's log:\n%s", got, logs["node-a"])
	}
}

// TestEngineReplacesGatewayThatForwardsNothing: the active gateway's own
// probes are answered (it reports the remote connected), but the probes
// the standby sends through it are not, as when its FORWARD path drops
// traffic; the standby reaches the remote gateway's NAT discovery port, so
// it takes the role, and says why.
func TestEngineReplacesGatewayThatForwardsNothing(t *testing.T) {
	f, remote, logs, leaseHolders := cutOffPair(t, nil)
	remote.answerOnly("127.0.0.3", "127.0.0.4")
	f.k.waitFor(t, "node-b holding the Lease", func() bool {
		h := leaseHolders()
		return len(h) > 0 && h[len(h)-1] == "node-b"
	})
	if !strings.Contains(logs["node-b"].String(), "its forwarding path is broken") {
		t.Errorf("node-b's log does not say why it took the Lease:\n%s", logs["node-b"])
	}
	if strings.Contains(logs["node-a"].String(), "lost every remote cluster") {
		t.Errorf("node-a said it lost every remote cluster; its own probes were answered:\n%s", logs["node-a"])
	}
}

// TestEngineReplacesGatewayThatForwardsNoIPv6: in a dual-stack cluster,
// the active gateway forwards IPv4 but drops IPv6 (an operator's ip6tables
// rule, say): the standby's probes through it to the remote gateway's
// IPv4 health-check address are answered, those to its IPv6 one (::1
// here) are not. The cluster cannot carry IPv6 through that gateway, so
// the standby takes the role, as for a gateway that forwards nothing.
// (Probing the first family alone, as the standby once did, kept it
// standing by.)
func TestEngineReplacesGatewayThatForwardsNoIPv6(t *testing.T) {
	dual := func(c *gateway.Config) {
		c.PodCIDRs = append(c.PodCIDRs, netip.MustParsePrefix("fd00:10:1::/56"))
	}
	f, remote, logs, leaseHolders := cutOffPair(t, dual, "::1")
	// Everything but the standby's IPv6 probes, which leave from ::1.
	remote.answerOnly("127.0.0.3", "127.0.0.4", "127.0.0.1")
	f.k.waitFor(t, "node-b holding the Lease", func() bool {
		h := leaseHolders()
		return len(h) > 0 && h[len(h)-1] == "node-b"
	}, func() string { return "node-b's log:\n" + logs["node-b"].String() })
	if !strings.Contains(logs["node-b"].String(), "its forwarding path is broken") {
		t.Errorf("node-b's log does not say why it took the Lease:\n%s", logs["node-b"])
	}
}
