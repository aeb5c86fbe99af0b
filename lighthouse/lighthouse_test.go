package lighthouse

// Integration tests: a broker and member clusters, each a real etcd and
// kube-apiserver (test/kubetest), with the real agent and syncer between
// them. The harness runs no kube-controller-manager, so the tests write the
// local EndpointSlices the cluster's EndpointSlice controller would.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/pkg/syncer"
	"strait.dev/strait/test/kubetest"
)

type fabric struct {
	brokerEnv *kubetest.Env
	info      *broker.Info
	members   map[string]*memberCluster
	t         *testing.T // the whole test, which the agents live as long as
}

type memberCluster struct {
	id   string
	env  *kubetest.Env
	c    client.Client
	stop func()
	// metrics is where the running agent's metrics are registered.
	metrics *prometheus.Registry
}

// newFabric runs a broker in an apiserver of its own and a member with a
// running agent per ID.
func newFabric(t *testing.T, ids ...string) *fabric { return buildFabric(t, false, nil, ids...) }

// buildFabric is newFabric; with hostBroker the first member's apiserver
// hosts the broker too, as a user's first cluster often does; opts are
// the harness options of members' apiservers, by ID (none: the defaults).
func buildFabric(t *testing.T, hostBroker bool, opts map[string]kubetest.Options, ids ...string) *fabric {
	t.Helper()
	ctx := context.Background()
	f := &fabric{t: t, members: map[string]*memberCluster{}}
	if hostBroker {
		f.brokerEnv = kubetest.New(t, kubetest.Options{})
	} else {
		f.brokerEnv = kubetest.New(t, kubetest.Options{SkipCRDs: true})
	}
	var err error
	if f.info, err = broker.Deploy(ctx, f.brokerEnv.Config, broker.DeployOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		m := &memberCluster{id: id}
		if hostBroker && i == 0 {
			m.env = f.brokerEnv
		} else {
			m.env = kubetest.New(t, opts[id])
		}
		m.c = mustClient(t, m.env.Config)
		tok, err := broker.Enroll(ctx, f.info, broker.Member{ClusterID: id, ClusterUID: "uid-" + id,
			PodCIDRs:     []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", i+1))},
			ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.10%d.0.0/16", i+1))}})
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, m.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}})
		mustCreate(t, m.c, broker.CredentialSecret(v1.ComponentNamespace, f.info, tok))
		applyRBAC(t, m.c)
		f.members[id] = m
		m.start(t)
	}
	return f
}

// start runs m's agent until m.stop or the end of t.
func (m *memberCluster) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	m.metrics = prometheus.NewRegistry()
	cfg := Config{ClusterID: m.id, Namespace: v1.ComponentNamespace, Workers: 2, Registerer: m.metrics,
		Log: slog.New(slog.NewTextHandler(testLogOut, &slog.HandlerOptions{Level: testLogLevel})).With("member", m.id)}
	// The agent runs as its ServiceAccount, with exactly the RBAC the
	// manifest grants it.
	rc := rest.CopyConfig(m.env.Config)
	rc.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + v1.ComponentNamespace + ":" + agentName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + v1.ComponentNamespace, "system:authenticated"},
	}
	go func() { done <- Run(ctx, rc, cfg) }()
	m.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", m.id, err)
		}
		m.stop = func() {}
	}
	t.Cleanup(func() { m.stop() })
}

// agentName is the agent's ServiceAccount (deploy/charts/strait/templates/lighthouse.yaml).
const agentName = "strait-lighthouse"

// applyRBAC applies the ServiceAccount and RBAC of lighthouse.yaml as join
// renders it, without the Deployment: the test runs the agents itself.
func applyRBAC(t *testing.T, c client.Client) {
	t.Helper()
	objs, err := manifests.Render("lighthouse.yaml", manifests.GatewayValues{Namespace: v1.ComponentNamespace,
		ClusterID: "c0", PodCIDRs: "10.0.0.0/16", ServiceCIDRs: "10.100.0.0/16", CableDriver: "wireguard", ImageRepository: "strait", ImageTag: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			continue
		}
		if o.GetName() != agentName {
			t.Fatalf("%s %s in lighthouse.yaml, want %s", o.GetKind(), o.GetName(), agentName)
		}
		mustCreate(t, c, o)
	}
}

func mustClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// eventually polls check until it returns "" (a description of what is
// still wrong otherwise). The minute is a guard against a hang, not a
// bound on how fast anything is.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"service-own": "label"}, Annotations: map[string]string{"service-own": "annotation"}},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

func svcPort(name string, proto corev1.Protocol, n int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: n}
}

// localSlice is what the cluster's EndpointSlice controller would write
// for Service ns/name: ready endpoints at ips, named after host.
func localSlice(ns, name, slice string, ports []corev1.ServicePort, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: slice, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.Port)})
	}
	for i, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			Hostname: ptr.To(fmt.Sprintf("host-%d", i)), NodeName: ptr.To("node-1"),
		})
	}
	return s
}

func serviceExport(ns, name string, labels map[string]string) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: mcsv1beta1.ServiceExportSpec{ExportedLabels: labels}}
}

// conditions renders an export's conditions as "Type=Status/Reason ...".
func conditions(c client.Client, ns, name string) string {
	var se mcsv1beta1.ServiceExport
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &se); err != nil {
		return err.Error()
	}
	var out []string
	for _, cond := range se.Status.Conditions {
		out = append(out, cond.Type+"="+string(cond.Status)+"/"+cond.Reason)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// importState renders what a cluster has for service ns/name: the
// ServiceImport's type, ports, IP count and clusters, and the imported
// slices as "cluster:bound:ips".
func importState(c client.Client, ns, name string) string {
	ctx := context.Background()
	var si mcsv1beta1.ServiceImport
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &si); err != nil {
		if apierrors.IsNotFound(err) {
			return "none"
		}
		return err.Error()
	}
	var ports, clusters []string
	for _, p := range si.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s:%s/%d", p.Name, p.Protocol, p.Port))
	}
	for _, cl := range si.Status.Clusters {
		clusters = append(clusters, cl.Cluster)
	}
	var slices discoveryv1.EndpointSliceList
	_ = c.List(ctx, &slices, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: name})
	var sl []string
	for _, s := range slices.Items {
		var ips []string
		for _, ep := range s.Endpoints {
			ips = append(ips, ep.Addresses...)
		}
		bound := s.Labels[discoveryv1.LabelServiceName] == DerivedServiceName(name)
		sl = append(sl, fmt.Sprintf("%s:%v:%s", s.Labels[mcsv1beta1.LabelSourceCluster], bound, strings.Join(ips, ",")))
	}
	sort.Strings(sl)
	return fmt.Sprintf("%s ports=%s ips=%d clusters=%s slices=%s", si.Spec.Type, strings.Join(ports, ","), len(si.Spec.IPs), strings.Join(clusters, ","), strings.Join(sl, " "))
}

func TestLighthouse(t *testing.T) {
	f := newFabric(t, "c1", "c2")
	c1, c2 := f.members["c1"].c, f.members["c2"].c
	ctx := context.Background()
	for _, c := range []client.Client{c1, c2} {
		mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	}
	http, dns := svcPort("http", corev1.ProtocolTCP, 80), svcPort("dns", corev1.ProtocolUDP, 53)

	t.Run("export from one cluster, import in both", func(t *testing.T) {
		mustCreate(t, c2, service("app", "web", http, dns), localSlice("app", "web", "web-abc", []corev1.ServicePort{http, dns}, "10.2.0.5", "10.2.0.6"),
			serviceExport("app", "web", map[string]string{"exported": "yes"}))
		want := "ClusterSetIP ports=dns:UDP/53,http:TCP/80 ips=1 clusters=c2 slices=c2:true:10.2.0.5,10.2.0.6"
		for id, c := range map[string]client.Client{"c1": c1, "c2": c2} {
			eventually(t, id+" imports app/web", func() string {
				if got := importState(c, "app", "web"); got != want {
					return got
				}
				return ""
			})
		}
		eventually(t, "export conditions", func() string {
			if got := conditions(c2, "app", "web"); got != "Conflict=False/NoConflicts Ready=True/Exported Valid=True/Valid" {
				return got
			}
			return ""
		})
		// The agents' metrics count the export and the imports, and the
		// syncs with the broker.
		eventually(t, "metrics", func() string {
			got := metricValues(t, f.members["c2"].metrics, "strait_lighthouse_exports", "strait_lighthouse_imports") + "; " +
				metricValues(t, f.members["c1"].metrics, "strait_lighthouse_exports", "strait_lighthouse_imports")
			if want := "strait_lighthouse_exports{Conflict,False}=1 strait_lighthouse_exports{Ready,True}=1 strait_lighthouse_exports{Valid,True}=1 strait_lighthouse_imports=1; strait_lighthouse_imports=1"; got != want {
				return got + ", want " + want
			}
			for _, id := range []string{"c1", "c2"} {
				if v := metricValues(t, f.members[id].metrics, "strait_lighthouse_broker_last_sync_timestamp_seconds"); v == "" {
					return id + ": no sync with the broker in the metrics: " + v
				}
			}
			return ""
		})
		// Only the exported labels, never the Service's own.
		var si mcsv1beta1.ServiceImport
		if err := c1.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web"}, &si); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(si.Labels) != "map[exported:yes]" || len(si.Annotations) != 0 {
			t.Errorf("labels %v annotations %v, want only the exported label", si.Labels, si.Annotations)
		}
		// The clusterset IP is the derived Service's.
		var derived corev1.Service
		if err := c1.Get(ctx, types.NamespacedName{Namespace: "app", Name: DerivedServiceName("web")}, &derived); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(derived.Spec.ClusterIPs, si.Spec.IPs) || !strings.HasPrefix(si.Spec.IPs[0], "10.") {
			t.Errorf("import IPs %v, derived Service %v", si.Spec.IPs, derived.Spec.ClusterIPs)
		}
		// Remote endpoints lose their node name; the source cluster keeps it.
		for id, c := range map[string]client.Client{"c1": c1, "c2": c2} {
			var sl discoveryv1.EndpointSliceList
			if err := c.List(ctx, &sl, client.InNamespace("app"), importedSlices("web")); err != nil || len(sl.Items) != 1 {
				t.Fatalf("%s: %v %d slices", id, err, len(sl.Items))
			}
			ep := sl.Items[0].Endpoints[0]
			if (ep.NodeName != nil) != (id == "c2") || ptr.Deref(ep.Hostname, "") != "host-0" || !ptr.Deref(ep.Conditions.Ready, false) {
				t.Errorf("%s: endpoint %+v", id, ep)
			}
		}
	})

	t.Run("endpoint changes reach every cluster", func(t *testing.T) {
		var s discoveryv1.EndpointSlice
		if err := c2.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web-abc"}, &s); err != nil {
			t.Fatal(err)
		}
		s.Endpoints = s.Endpoints[:1]
		if err := c2.Update(ctx, &s); err != nil {
			t.Fatal(err)
		}
		eventually(t, "c1 sees one endpoint", func() string {
			if got := importState(c1, "app", "web"); !strings.HasSuffix(got, "slices=c2:true:10.2.0.5") {
				return got
			}
			return ""
		})
	})

	t.Run("no Service, then a Service", func(t *testing.T) {
		mustCreate(t, c2, serviceExport("app", "later", nil))
		eventually(t, "NoService", func() string {
			if got := conditions(c2, "app", "later"); got != "Ready=False/Failed Valid=False/NoService" {
				return got
			}
			return ""
		})
		if got := importState(c1, "app", "later"); got != "none" {
			t.Errorf("import of an export without a Service: %s", got)
		}
		mustCreate(t, c2, service("app", "later", http))
		eventually(t, "valid once the Service exists", func() string {
			if got := conditions(c2, "app", "later"); got != "Conflict=False/NoConflicts Ready=True/Exported Valid=True/Valid" {
				return got
			}
			if got := importState(c1, "app", "later"); !strings.HasPrefix(got, "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c2") {
				return got
			}
			return ""
		})
	})

	t.Run("ExternalName is refused", func(t *testing.T) {
		ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.invalid"}}
		mustCreate(t, c2, ext, serviceExport("app", "ext", nil))
		eventually(t, "InvalidServiceType", func() string {
			if got := conditions(c2, "app", "ext"); got != "Ready=False/Failed Valid=False/InvalidServiceType" {
				return got
			}
			return ""
		})
		for _, c := range []client.Client{c1, c2} {
			if got := importState(c, "app", "ext"); got != "none" {
				t.Errorf("import of an ExternalName export: %s", got)
			}
		}
	})

	t.Run("namespace sameness: an import appears when its namespace does", func(t *testing.T) {
		mustCreate(t, c2, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late"}})
		mustCreate(t, c2, service("late", "db", http), serviceExport("late", "db", nil))
		eventually(t, "c2 imports late/db", func() string {
			if got := importState(c2, "late", "db"); !strings.HasPrefix(got, "ClusterSetIP") {
				return got
			}
			return ""
		})
		if err := c1.Get(ctx, types.NamespacedName{Name: "late"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			t.Fatalf("namespace late in c1: %v", err)
		}
		mustCreate(t, c1, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "late"}})
		eventually(t, "c1 imports late/db once late exists", func() string {
			if got := importState(c1, "late", "db"); !strings.HasPrefix(got, "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c2") {
				return got
			}
			return ""
		})
	})

	t.Run("conflict: the oldest export wins, Conflict on both", func(t *testing.T) {
		other := svcPort("http", corev1.ProtocolTCP, 8080)
		sctp := svcPort("sctp", corev1.ProtocolSCTP, 9000)
		// The broker stamps have second precision, and exports stored
		// in the same second go by cluster ID (c1 first): start c1's in
		// a later second than c2's was stored, as it would be in life.
		var rec mcsv1beta1.ServiceImport
		if err := c2.Get(ctx, types.NamespacedName{Namespace: v1.ComponentNamespace, Name: ExportRecordName("web", "app", "c2")}, &rec); err != nil {
			t.Fatal(err)
		}
		stored, ok := syncer.BrokerCreatedAt(&rec)
		if !ok {
			t.Fatalf("c2's record has no broker stamp: %v", rec.Annotations)
		}
		time.Sleep(time.Until(stored.Add(time.Second)))
		mustCreate(t, c1, service("app", "web", other, sctp), localSlice("app", "web", "web-xyz", []corev1.ServicePort{other, sctp}, "10.1.0.7"),
			serviceExport("app", "web", map[string]string{"exported": "other"}))
		for id, c := range map[string]client.Client{"c1": c1, "c2": c2} {
			eventually(t, id+" sees the conflict", func() string {
				got := conditions(c, "app", "web")
				if !strings.Contains(got, "Conflict=True/PortConflict") || !strings.Contains(got, "Valid=True") {
					return got
				}
				// c2 exported first: its port number and labels win; the
				// union adds c1's SCTP port.
				if got := importState(c, "app", "web"); got != "ClusterSetIP ports=dns:UDP/53,http:TCP/80,sctp:SCTP/9000 ips=1 clusters=c1,c2 slices=c1:true:10.1.0.7 c2:true:10.2.0.5" {
					return got
				}
				return ""
			})
		}
		var se mcsv1beta1.ServiceExport
		if err := c1.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web"}, &se); err != nil {
			t.Fatal(err)
		}
		cond := meta.FindStatusCondition(se.Status.Conditions, "Conflict")
		if cond == nil {
			t.Fatalf("no Conflict condition: %+v", se.Status)
		}
		msg := cond.Message
		if !strings.Contains(msg, "cluster c2's, the oldest") || !strings.Contains(msg, "exported labels") {
			t.Errorf("conflict message %q", msg)
		}
		var si mcsv1beta1.ServiceImport
		if err := c1.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web"}, &si); err != nil || si.Labels["exported"] != "yes" {
			t.Errorf("labels %v %v, want c2's (the oldest)", si.Labels, err)
		}
	})

	t.Run("a cluster whose connection is in error is withdrawn", func(t *testing.T) {
		// c1 under LocalFirst uses its own endpoints for http; c2's slice
		// is bound for dns, which c1 does not offer.
		setGateway(t, c1, v1.ConnectionError)
		eventually(t, "c2's slice unbound in c1", func() string {
			if got := importState(c1, "app", "web"); !strings.HasSuffix(got, "slices=c1:true:10.1.0.7 c2:false:10.2.0.5") {
				return got
			}
			return ""
		})
		// Gateways gone in c2: c1's active gateway has no connection to
		// it at all, which is no better than one in error.
		setGateway(t, c1, v1.Connected)
		setGateway(t, c1, "")
		eventually(t, "c2's slice unbound in c1 without a connection", func() string {
			if got := importState(c1, "app", "web"); !strings.HasSuffix(got, "slices=c1:true:10.1.0.7 c2:false:10.2.0.5") {
				return got
			}
			return ""
		})
		setGateway(t, c1, v1.Connected)
		eventually(t, "c2's slice bound again", func() string {
			if got := importState(c1, "app", "web"); !strings.HasSuffix(got, "slices=c1:true:10.1.0.7 c2:true:10.2.0.5") {
				return got
			}
			return ""
		})
	})

	t.Run("an agent restart changes nothing", func(t *testing.T) {
		before := versions(t, c1, "app", v1.ComponentNamespace)
		f.members["c1"].stop()
		// Started on the whole test's t: the agent outlives this subtest.
		f.members["c1"].start(f.t)
		// Something new goes through the restarted agent, after the
		// resync of everything it found.
		mustCreate(t, c2, service("app", "probe", http), serviceExport("app", "probe", nil))
		eventually(t, "c1 imports app/probe", func() string {
			if got := importState(c1, "app", "probe"); !strings.HasPrefix(got, "ClusterSetIP") {
				return got
			}
			return ""
		})
		after := versions(t, c1, "app", v1.ComponentNamespace)
		for k, rv := range before {
			if after[k] != rv {
				t.Errorf("%s: resource version %s, was %s", k, after[k], rv)
			}
		}
	})

	t.Run("unexport removes the import everywhere", func(t *testing.T) {
		for _, c := range []client.Client{c1, c2} {
			if err := c.Delete(ctx, serviceExport("app", "web", nil)); err != nil {
				t.Fatal(err)
			}
		}
		for id, c := range map[string]client.Client{"c1": c1, "c2": c2} {
			eventually(t, id+" drops app/web", func() string {
				if got := importState(c, "app", "web"); got != "none" {
					return got
				}
				var sl discoveryv1.EndpointSliceList
				_ = c.List(ctx, &sl, client.InNamespace("app"), importedSlices("web"))
				if len(sl.Items) != 0 {
					return fmt.Sprintf("%d imported slices left", len(sl.Items))
				}
				if err := c.Get(ctx, types.NamespacedName{Namespace: "app", Name: DerivedServiceName("web")}, &corev1.Service{}); !apierrors.IsNotFound(err) {
					return fmt.Sprintf("derived Service: %v", err)
				}
				return ""
			})
		}
		// The users' Services stay.
		if err := c1.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web"}, &corev1.Service{}); err != nil {
			t.Error(err)
		}
	})

	t.Run("a broker outage keeps imports; exports made meanwhile arrive after it", func(t *testing.T) {
		f.brokerEnv.StopAPIServer()
		mustCreate(t, c2, service("app", "during", http), serviceExport("app", "during", nil))
		// The export cannot reach the broker: pending, not failed.
		eventually(t, "pending", func() string {
			if got := conditions(c2, "app", "during"); got != "Conflict=False/NoConflicts Ready=Unknown/Pending Valid=True/Valid" {
				return got
			}
			return ""
		})
		if got := importState(c1, "app", "later"); !strings.HasPrefix(got, "ClusterSetIP") {
			t.Errorf("import of app/later during the outage: %s", got)
		}
		if err := f.brokerEnv.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "c1 imports app/during after the outage", func() string {
			if got := importState(c1, "app", "during"); !strings.HasPrefix(got, "ClusterSetIP") {
				return got
			}
			return ""
		})
		if got := importState(c1, "app", "later"); !strings.HasPrefix(got, "ClusterSetIP") {
			t.Errorf("import of app/later after the outage: %s", got)
		}
	})
}

// setGateway makes c's active Gateway report its connection to c2 as
// status, or no connection when status is "".
func setGateway(t *testing.T, c client.Client, status v1.ConnectionStatus) {
	t.Helper()
	ctx := context.Background()
	gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "gw-1"}}
	if err := c.Get(ctx, client.ObjectKeyFromObject(gw), gw); apierrors.IsNotFound(err) {
		mustCreate(t, c, gw)
	} else if err != nil {
		t.Fatal(err)
	}
	gw.Status = v1.GatewayStatus{HAStatus: v1.HAStatusActive}
	if status != "" {
		gw.Status.Connections = []v1.Connection{{
			ClusterID: "c2", Endpoint: "c2-gw", Status: status,
			LatencyRTT: &v1.LatencyRTT{Last: metav1.Duration{Duration: time.Millisecond}, Min: metav1.Duration{Duration: time.Millisecond}, Average: metav1.Duration{Duration: time.Millisecond}, Max: metav1.Duration{Duration: time.Millisecond}},
		}}
	}
	if err := c.Status().Update(ctx, gw); err != nil {
		t.Fatal(err)
	}
}

// versions are the resource versions of everything in the given
// namespaces that the agent writes or reads.
func versions(t *testing.T, c client.Client, namespaces ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ns := range namespaces {
		for _, l := range []client.ObjectList{&mcsv1beta1.ServiceImportList{}, &mcsv1beta1.ServiceExportList{}, &discoveryv1.EndpointSliceList{}, &corev1.ServiceList{}} {
			if err := c.List(context.Background(), l, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			items, _ := meta.ExtractList(l)
			for _, o := range items {
				m := o.(client.Object)
				out[fmt.Sprintf("%T %s/%s", o, ns, m.GetName())] = m.GetResourceVersion()
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("only %d objects to compare", len(out))
	}
	return out
}

// testLogOut and testLogLevel: the agents' logs, warnings to stderr unless
// STRAIT_TEST_LOG names a file, which then gets everything from Debug up.
var testLogOut, testLogLevel = func() (io.Writer, slog.Level) {
	if p := os.Getenv("STRAIT_TEST_LOG"); p != "" {
		if f, err := os.Create(p); err == nil {
			return f, slog.LevelDebug
		}
	}
	return os.Stderr, slog.LevelWarn
}()

// TestLighthouseBrokerInMember: c1 hosts the broker, so its agent also sees
// the broker's copies of every record (ServiceImports and EndpointSlices in
// strait-broker). They are records, not imports: the agent must leave them
// alone, or c2's exports are deleted at the broker as fast as c2's syncer
// makes them again.
func TestLighthouseBrokerInMember(t *testing.T) {
	f := buildFabric(t, true, nil, "c1", "c2")
	c1, c2 := f.members["c1"].c, f.members["c2"].c
	ctx := context.Background()
	http := svcPort("http", corev1.ProtocolTCP, 80)
	for _, c := range []client.Client{c1, c2} {
		mustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	}
	mustCreate(t, c2, service("app", "web", http), localSlice("app", "web", "web-abc", []corev1.ServicePort{http}, "10.2.0.5"),
		serviceExport("app", "web", nil))
	eventually(t, "c1 imports app/web", func() string {
		if got := importState(c1, "app", "web"); got != "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c2 slices=c2:true:10.2.0.5" {
			return got
		}
		return ""
	})
	uids := func() map[string]string {
		out := map[string]string{}
		var sis mcsv1beta1.ServiceImportList
		var sls discoveryv1.EndpointSliceList
		for _, l := range []client.ObjectList{&sis, &sls} {
			if err := c1.List(ctx, l, client.InNamespace(v1.BrokerNamespace)); err != nil {
				t.Fatal(err)
			}
		}
		for _, o := range sis.Items {
			out["ServiceImport "+o.Name] = string(o.UID)
		}
		for _, o := range sls.Items {
			out["EndpointSlice "+o.Name] = string(o.UID)
		}
		return out
	}
	before := uids()
	if len(before) != 2 {
		t.Fatalf("broker copies %v, want c2's export record and slice record", before)
	}
	// Another export's round trip: whatever the agent did to the first
	// one's copies meanwhile, it has done by then.
	mustCreate(t, c2, service("app", "api", http), serviceExport("app", "api", nil))
	eventually(t, "c1 imports app/api", func() string {
		if got := importState(c1, "app", "api"); !strings.HasPrefix(got, "ClusterSetIP") {
			return got
		}
		return ""
	})
	after := uids()
	for k, uid := range before {
		if after[k] != uid {
			t.Errorf("%s at the broker: uid %q, was %q (deleted and made again)", k, after[k], uid)
		}
	}
}

// metricValues renders the series of reg's families names that are not 0,
// in the order Gather sorts them: "name{label values}=value ...".
func metricValues(t *testing.T, reg *prometheus.Registry, names ...string) string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range names {
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				if v == 0 {
					continue
				}
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetValue())
				}
				series := name
				if len(labels) > 0 {
					series += "{" + strings.Join(labels, ",") + "}"
				}
				out = append(out, fmt.Sprintf("%s=%g", series, v))
			}
		}
	}
	return strings.Join(out, " ")
}
