package e2e

// Strait's own conformance suite for the Multi-Cluster Services API
// (KEP-1645, sigs.k8s.io/mcs-api v1beta1), written from the KEP and the API
// documentation. It checks, on the sandbox's three real clusters joined
// with WireGuard, what the KEP asks of any implementation: when a
// ServiceImport exists and where, what its spec says (type, IPs, ports,
// session affinity, traffic policies), how exports that disagree are
// merged (the oldest export wins, ports are a union) and reported
// (Conflict on the ServiceExports), the EndpointSlices an importing
// cluster gets, and that the clusterset IP reaches exactly the exporting
// clusters' pods.
//
// Every subtest has its own namespace and runs in parallel with the
// others; none depends on another's objects.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/lighthouse"
)

// mcsWait bounds every wait of the suite. It guards against a hang; it is
// not a claim about how fast anything propagates.
const mcsWait = 90 * time.Second

// mcsRequests is how many requests a routing check sends through a
// clusterset IP: were a wrong cluster's pod one of two candidates, all of
// them missing it has a chance of 2^-20.
const mcsRequests = 20

// TestMCSConformance checks, in the clusterset of c1, c2 and c3 that
// joinClusterSet joins (or finds joined), the behaviour the MCS API
// defines, one subtest per behaviour.
func TestMCSConformance(t *testing.T) {
	need(t)
	joinClusterSet(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *mcsSuite)
	}{
		{"import lifetime with one and two exporters", testImportLifetime},
		{"only exported labels and annotations reach the import; the oldest export's win", testExportedMetadata},
		{"a ClusterIP Service imports as ClusterSetIP", testClusterSetIP},
		{"session affinity and traffic policies reach the import", testAffinityAndTraffic},
		{"one clusterset IP per IP family", testIPFamilies},
		{"import ports are the Service's ports", testPorts},
		{"ports are a union; a same-named port keeps the oldest export's number", testPortUnion},
		{"a headless Service imports as Headless without IPs", testHeadless},
		{"an ExternalName Service is not exported", testExternalName},
		{"headless against ClusterIP: the oldest export's type wins", testTypeConflict},
		{"EndpointSlices of every exporting cluster in every cluster", testEndpointSlices},
		{"the clusterset IP reaches exactly the exporting clusters' pods", testConnectivity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newMCSSuite(t))
		})
	}
}

// mcsSuite holds a client of each cluster for one subtest: each has its
// own, so that the client-side rate limits of parallel subtests do not
// add up.
type mcsSuite struct {
	cl map[string]client.Client
}

func newMCSSuite(t *testing.T) *mcsSuite {
	t.Helper()
	s := &mcsSuite{cl: map[string]client.Client{}}
	for _, c := range mcsClusters {
		s.cl[c] = ctrlClient(t, c)
	}
	return s
}

// --- the subtests ---

// testImportLifetime: a ServiceImport exists in every cluster with the
// namespace as long as at least one cluster exports the Service
// (KEP-1645, "Exporting Services" and "Importing Services"); it stays,
// with its clusterset IP, while one of two exporters unexports, and goes
// with its EndpointSlices and clusterset Service once the last one does.
func testImportLifetime(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-lifetime", "web"
	mcsNamespace(t, ns, mcsClusters...)
	for _, c := range []string{"c1", "c3"} {
		createService(t, c, ns, newService(name, tcpPort("http", 80)))
	}

	exportService(t, "c1", ns, name, nil)
	s.waitImportAll(t, ns, name, "exported from c1", func(si *mcsv1beta1.ServiceImport) bool {
		return slices.Equal(importClusters(si), []string{"c1"})
	})

	exportService(t, "c3", ns, name, nil)
	before := s.waitImportAll(t, ns, name, "exported from c1 and c3", func(si *mcsv1beta1.ServiceImport) bool {
		return slices.Equal(importClusters(si), []string{"c1", "c3"}) && len(si.Spec.IPs) > 0
	})

	unexport(t, "c1", ns, name)
	after := s.waitImportAll(t, ns, name, "exported from c3 alone", func(si *mcsv1beta1.ServiceImport) bool {
		return slices.Equal(importClusters(si), []string{"c3"})
	})
	for _, c := range mcsClusters {
		// The import never went away: the same object, the same
		// clusterset IP, so clients keep their address.
		if b, a := before[c], after[c]; a.UID != b.UID || !slices.Equal(a.Spec.IPs, b.Spec.IPs) {
			t.Errorf("%s: the ServiceImport was replaced when c1 unexported: uid %s ips %v before, uid %s ips %v after", c, b.UID, b.Spec.IPs, a.UID, a.Spec.IPs)
		}
		s.waitSliceSources(t, c, ns, name, func(src map[string][]string) bool { _, ok := src["c1"]; return !ok },
			"no EndpointSlice from c1, which unexported")
	}

	unexport(t, "c3", ns, name)
	for _, c := range mcsClusters {
		s.waitNoImport(t, c, ns, name)
	}
}

// testExportedMetadata: a ServiceImport carries the ServiceExport's
// spec.exportedLabels and spec.exportedAnnotations, never the Service's own
// labels or annotations; when exports disagree on them the oldest export's
// win and every export reports Conflict=True with LabelsConflict.
func testExportedMetadata(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-labels", "web"
	mcsNamespace(t, ns, mcsClusters...)
	for _, c := range []string{"c1", "c2"} {
		svc := newService(name, tcpPort("http", 80))
		svc.Labels = map[string]string{"example.com/service-own": "label"}
		svc.Annotations = map[string]string{"example.com/service-own": "annotation"}
		createService(t, c, ns, svc)
	}
	blue := map[string]string{"example.com/team": "blue", "example.com/tier": "web"}
	green := map[string]string{"example.com/team": "green", "example.com/tier": "web"}
	ann := map[string]string{"example.com/owner": "blue-team"}

	// c2 exports first, so that the oldest is not the lowest cluster ID.
	exportServiceSpec(t, "c2", ns, name, blue, ann)
	s.becomeOldest(t, "c2", ns, name)
	s.waitImportMetadata(t, ns, name, []string{"c2"}, blue, ann)

	exportServiceSpec(t, "c1", ns, name, green, ann)
	for _, c := range []string{"c1", "c2"} {
		s.waitExportCondition(t, c, ns, name, mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonLabelsConflict)
	}
	s.waitImportMetadata(t, ns, name, []string{"c1", "c2"}, blue, ann)

	// Agreeing again clears the conflict.
	exportServiceSpec(t, "c1", ns, name, blue, ann)
	for _, c := range []string{"c1", "c2"} {
		s.waitExportCondition(t, c, ns, name, mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts)
	}
}

// testClusterSetIP: a ClusterIP Service is a valid export and imports as
// type ClusterSetIP, whose IP is a Service's cluster IP in the importing
// cluster; unexporting deletes the import.
func testClusterSetIP(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-clustersetip", "web"
	mcsNamespace(t, ns, mcsClusters...)
	createService(t, "c2", ns, newService(name, tcpPort("http", 80)))
	exportService(t, "c2", ns, name, nil)
	s.waitExportCondition(t, "c2", ns, name, mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid)

	imports := s.waitImportAll(t, ns, name, "of type ClusterSetIP with an IP", func(si *mcsv1beta1.ServiceImport) bool {
		return si.Spec.Type == mcsv1beta1.ClusterSetIP && len(si.Spec.IPs) > 0
	})
	for _, c := range mcsClusters {
		si := imports[c]
		svc := s.clusterSetService(t, c, si)
		if !slices.Equal(svc.Spec.ClusterIPs, si.Spec.IPs) {
			t.Errorf("%s: the import's ips %v are not the cluster IPs %v of its Service %s", c, si.Spec.IPs, svc.Spec.ClusterIPs, svc.Name)
		}
	}

	unexport(t, "c2", ns, name)
	for _, c := range mcsClusters {
		s.waitNoImport(t, c, ns, name)
	}
}

// testAffinityAndTraffic: the import carries the Service's session
// affinity and its config, its internalTrafficPolicy and its
// trafficDistribution, and so does the Service behind the clusterset IP,
// which is what makes kube-proxy honour them.
func testAffinityAndTraffic(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-affinity", "web"
	mcsNamespace(t, ns, mcsClusters...)
	svc := newService(name, tcpPort("http", 80))
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(600))}}
	svc.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	svc.Spec.TrafficDistribution = ptr.To(corev1.ServiceTrafficDistributionPreferSameZone)
	createService(t, "c3", ns, svc)
	exportService(t, "c3", ns, name, nil)

	want := fmt.Sprintf("affinity=ClientIP timeout=600 internalTrafficPolicy=Local trafficDistribution=%s", corev1.ServiceTrafficDistributionPreferSameZone)
	imports := s.waitImportAll(t, ns, name, "with "+want, func(si *mcsv1beta1.ServiceImport) bool {
		return len(si.Spec.IPs) > 0 && trafficOf(si.Spec.SessionAffinity, si.Spec.SessionAffinityConfig, si.Spec.InternalTrafficPolicy, si.Spec.TrafficDistribution) == want
	})
	for _, c := range mcsClusters {
		d := s.clusterSetService(t, c, imports[c])
		if got := trafficOf(d.Spec.SessionAffinity, d.Spec.SessionAffinityConfig, d.Spec.InternalTrafficPolicy, d.Spec.TrafficDistribution); got != want {
			t.Errorf("%s: the clusterset IP's Service %s has %s, want %s", c, d.Name, got, want)
		}
	}
}

// testIPFamilies: the import has one IP per IP family of the cluster and
// names the families. The sandbox is IPv4 only: one IPv4 address.
func testIPFamilies(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-ipfamily", "web"
	mcsNamespace(t, ns, mcsClusters...)
	created := createService(t, "c1", ns, newService(name, tcpPort("http", 80)))
	if !slices.Equal(created.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) {
		t.Fatalf("the sandbox's Service has families %v; this subtest expects an IPv4-only cluster", created.Spec.IPFamilies)
	}
	exportService(t, "c1", ns, name, nil)
	imports := s.waitImportAll(t, ns, name, "with an IP", func(si *mcsv1beta1.ServiceImport) bool { return len(si.Spec.IPs) > 0 })
	for _, c := range mcsClusters {
		si := imports[c]
		if len(si.Spec.IPs) != 1 {
			t.Errorf("%s: ips %v, want exactly one (one per family, the cluster is IPv4 only)", c, si.Spec.IPs)
			continue
		}
		if a, err := netip.ParseAddr(si.Spec.IPs[0]); err != nil || !a.Is4() {
			t.Errorf("%s: ip %q is not an IPv4 address (%v)", c, si.Spec.IPs[0], err)
		}
		if !slices.Equal(si.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) {
			t.Errorf("%s: ipFamilies %v, want [IPv4]", c, si.Spec.IPFamilies)
		}
	}
}

// testPorts: the import's ports are the Service's: name, protocol, port
// and appProtocol (never the target port).
func testPorts(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-ports", "web"
	mcsNamespace(t, ns, mcsClusters...)
	ports := []corev1.ServicePort{
		{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), AppProtocol: ptr.To("http")},
		{Name: "grpc", Protocol: corev1.ProtocolTCP, Port: 9090, AppProtocol: ptr.To("kubernetes.io/h2c")},
		{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9100},
	}
	createService(t, "c2", ns, newService(name, ports...))
	exportService(t, "c2", ns, name, nil)
	want := renderServicePorts(ports)
	s.waitImportAll(t, ns, name, "with ports "+want, func(si *mcsv1beta1.ServiceImport) bool {
		return renderImportPorts(si.Spec.Ports) == want
	})
}

// testPortUnion: the import's ports are the union of the exports' ports,
// and exports whose ports differ report Conflict=True with PortConflict;
// a port of the same name but another number is the oldest export's.
func testPortUnion(t *testing.T, s *mcsSuite) {
	const ns = "mcs-port-union"
	mcsNamespace(t, ns, mcsClusters...)
	// c3 exports first, so that the oldest is not the lowest cluster ID.
	// union: c1 adds an SCTP port. renumber: c1 has metrics on another
	// number.
	createService(t, "c3", ns, newService("union", tcpPort("http", 80)))
	createService(t, "c3", ns, newService("renumber", tcpPort("http", 80), tcpPort("metrics", 9100)))
	createService(t, "c1", ns, newService("union", tcpPort("http", 80), corev1.ServicePort{Name: "assoc", Protocol: corev1.ProtocolSCTP, Port: 7777}))
	createService(t, "c1", ns, newService("renumber", tcpPort("http", 80), tcpPort("metrics", 9200)))
	for _, name := range []string{"union", "renumber"} {
		exportService(t, "c3", ns, name, nil)
	}
	s.becomeOldest(t, "c3", ns, "union", "renumber")
	for _, name := range []string{"union", "renumber"} {
		exportService(t, "c1", ns, name, nil)
	}

	for name, want := range map[string]string{
		"union":    "assoc SCTP/7777; http TCP/80",
		"renumber": "http TCP/80; metrics TCP/9100",
	} {
		for _, c := range []string{"c1", "c3"} {
			s.waitExportCondition(t, c, ns, name, mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonPortConflict)
		}
		// Both clusters listed: the import is the merge of both exports,
		// so c1's port numbers had their chance to win.
		s.waitImportAll(t, ns, name, "from c1 and c3 with ports "+want, func(si *mcsv1beta1.ServiceImport) bool {
			return slices.Equal(importClusters(si), []string{"c1", "c3"}) && renderImportPorts(si.Spec.Ports) == want
		})
	}
}

// testHeadless: a headless Service imports as type Headless, without IPs
// and without a clusterset IP Service.
func testHeadless(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-headless", "web"
	mcsNamespace(t, ns, mcsClusters...)
	svc := newService(name, tcpPort("http", 80))
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	createService(t, "c1", ns, svc)
	exportService(t, "c1", ns, name, nil)
	imports := s.waitImportAll(t, ns, name, "of type Headless", func(si *mcsv1beta1.ServiceImport) bool {
		return si.Spec.Type == mcsv1beta1.Headless
	})
	for _, c := range mcsClusters {
		if ips := imports[c].Spec.IPs; len(ips) != 0 {
			t.Errorf("%s: a Headless import has ips %v, want none", c, ips)
		}
		if svcs := s.ownedServices(t, c, ns, name); len(svcs) != 0 {
			t.Errorf("%s: a Headless import has Services %v", c, svcs)
		}
	}
}

// testExternalName: a ServiceExport of an ExternalName Service is
// Valid=False with InvalidServiceType and nothing is imported anywhere.
func testExternalName(t *testing.T, s *mcsSuite) {
	const ns = "mcs-externalname"
	mcsNamespace(t, ns, mcsClusters...)
	ext := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ext"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"},
	}
	createService(t, "c1", ns, ext)
	exportService(t, "c1", ns, "ext", nil)
	s.waitExportCondition(t, "c1", ns, "ext", mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonInvalidServiceType)

	// A barrier, so that "no import" is not just "not yet": a valid
	// export from the same cluster, made after the invalid one was
	// judged, reaches every cluster.
	createService(t, "c1", ns, newService("barrier", tcpPort("http", 80)))
	exportService(t, "c1", ns, "barrier", nil)
	s.waitImportAll(t, ns, "barrier", "exported after the ExternalName one", func(*mcsv1beta1.ServiceImport) bool { return true })
	for _, c := range mcsClusters {
		if st := s.importState(context.Background(), c, ns, "ext"); st != "none" {
			t.Errorf("%s: an ExternalName Service was imported: %s", c, st)
		}
	}
}

// testTypeConflict: exports of one Service as headless and as ClusterIP
// conflict (Conflict=True with TypeConflict on both) and the oldest
// export's type wins, whichever it is.
func testTypeConflict(t *testing.T, s *mcsSuite) {
	const ns = "mcs-type-conflict"
	mcsNamespace(t, ns, mcsClusters...)
	headless := func(name string) *corev1.Service {
		svc := newService(name, tcpPort("http", 80))
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		return svc
	}
	// headless-first: c2's headless export is the oldest; clusterip-first:
	// c2's ClusterIP one is.
	createService(t, "c2", ns, headless("headless-first"))
	createService(t, "c1", ns, newService("headless-first", tcpPort("http", 80)))
	createService(t, "c2", ns, newService("clusterip-first", tcpPort("http", 80)))
	createService(t, "c1", ns, headless("clusterip-first"))
	names := []string{"headless-first", "clusterip-first"}
	for _, name := range names {
		exportService(t, "c2", ns, name, nil)
	}
	s.becomeOldest(t, "c2", ns, names...)
	for _, name := range names {
		exportService(t, "c1", ns, name, nil)
	}

	for name, want := range map[string]mcsv1beta1.ServiceImportType{"headless-first": mcsv1beta1.Headless, "clusterip-first": mcsv1beta1.ClusterSetIP} {
		for _, c := range []string{"c1", "c2"} {
			s.waitExportCondition(t, c, ns, name, mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonTypeConflict)
		}
		imports := s.waitImportAll(t, ns, name, fmt.Sprintf("from c1 and c2 of type %s", want), func(si *mcsv1beta1.ServiceImport) bool {
			return slices.Equal(importClusters(si), []string{"c1", "c2"}) && si.Spec.Type == want && (want == mcsv1beta1.Headless || len(si.Spec.IPs) > 0)
		})
		for _, c := range mcsClusters {
			if ips := imports[c].Spec.IPs; want == mcsv1beta1.Headless && len(ips) != 0 {
				t.Errorf("%s: %s: a Headless import has ips %v, want none", c, name, ips)
			}
		}
	}
}

// testEndpointSlices: every cluster has, for each exporting cluster, MCS
// EndpointSlices labelled with the service name, the source cluster and
// the managing controller, holding that cluster's endpoints.
func testEndpointSlices(t *testing.T, s *mcsSuite) {
	const ns, name = "mcs-slices", "web"
	mcsNamespace(t, ns, mcsClusters...)
	want := map[string][]string{} // exporting cluster -> its pod IPs
	for _, c := range []string{"c1", "c2"} {
		svc := newService(name, corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)})
		createService(t, c, ns, svc)
		exportService(t, c, ns, name, nil)
	}
	for _, c := range []string{"c1", "c2"} {
		cs := kubeClient(t, c)
		pod := serverPod("srv-"+c, name)
		createRunning(t, c, cs, ns, pod)
		got, err := cs.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[c] = []string{got.Status.PodIP}
	}
	for _, c := range mcsClusters {
		s.waitSliceSources(t, c, ns, name, func(src map[string][]string) bool {
			return maps.EqualFunc(src, want, slices.Equal[[]string])
		}, fmt.Sprintf("slices from exactly %v", want))
		// Labels and ports, slice by slice.
		var list discoveryv1.EndpointSliceList
		if err := s.cl[c].List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: name}); err != nil {
			t.Fatal(err)
		}
		for _, sl := range list.Items {
			src := sl.Labels[mcsv1beta1.LabelSourceCluster]
			if sl.Labels[discoveryv1.LabelManagedBy] != lighthouse.ManagedBy {
				t.Errorf("%s: slice %s from %s: %s=%q, want %q", c, sl.Name, src, discoveryv1.LabelManagedBy, sl.Labels[discoveryv1.LabelManagedBy], lighthouse.ManagedBy)
			}
			if got := renderSlicePorts(sl.Ports); got != "http TCP/8080" {
				t.Errorf("%s: slice %s from %s has ports %q, want the endpoints' port: http TCP/8080", c, sl.Name, src, got)
			}
		}
	}
}

// testConnectivity: a client pod reaches the exporting clusters' pods
// through the import's clusterset IP over HTTP, TCP and UDP; a cluster
// that has the Service but does not export it never serves it, not even
// its own clients; and a port that only one exporting cluster's Service
// has goes only to that cluster.
func testConnectivity(t *testing.T, s *mcsSuite) {
	const ns = "mcs-connect"
	mcsNamespace(t, ns, mcsClusters...)
	// solo: the same Service in c2 and c3, exported from c3 alone.
	solo := []corev1.ServicePort{
		{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)},
		{Name: "tcp-echo", Protocol: corev1.ProtocolTCP, Port: 9000},
		{Name: "udp-echo", Protocol: corev1.ProtocolUDP, Port: 9001},
	}
	// split: exported from c2 and c3; only c2's has port alt.
	http := corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}
	alt := corev1.ServicePort{Name: "alt", Protocol: corev1.ProtocolTCP, Port: 8081, TargetPort: intstr.FromInt32(8080)}
	for _, c := range []string{"c2", "c3"} {
		svc := newService("solo", solo...)
		svc.Spec.Selector = map[string]string{"app": "srv"}
		createService(t, c, ns, svc)
	}
	splitC2, splitC3 := newService("split", http, alt), newService("split", http)
	splitC2.Spec.Selector, splitC3.Spec.Selector = map[string]string{"app": "srv"}, map[string]string{"app": "srv"}
	createService(t, "c2", ns, splitC2)
	createService(t, "c3", ns, splitC3)
	exportService(t, "c3", ns, "solo", nil)
	exportService(t, "c2", ns, "split", nil)
	exportService(t, "c3", ns, "split", nil)

	createRunning(t, "c2", kubeClient(t, "c2"), ns, serverPod("srv-c2", "srv"), toolPod("client"))
	createRunning(t, "c3", kubeClient(t, "c3"), ns, serverPod("srv-c3", "srv"))
	createRunning(t, "c1", kubeClient(t, "c1"), ns, toolPod("client"))

	ipOf := func(t *testing.T, cluster, name string, clusters ...string) string {
		t.Helper()
		si := waitImport(t, cluster, ns, name, fmt.Sprintf("with an IP, from %v", clusters), func(si *mcsv1beta1.ServiceImport) bool {
			return len(si.Spec.IPs) > 0 && slices.Equal(importClusters(si), clusters)
		})
		return si.Spec.IPs[0]
	}

	t.Run("from a cluster without the Service: HTTP, TCP and UDP", func(t *testing.T) {
		ip := ipOf(t, "c1", "solo", "c3")
		if pod := waitHTTP(t, "c1", ns, "client", ip, 80); pod != "srv-c3" {
			t.Errorf("c1 → solo %s:80 answered by %s, want srv-c3 (c3 alone exports solo)", ip, pod)
		}
		waitEcho(t, "c1", ns, "client", ip, 9000, false)
		waitEcho(t, "c1", ns, "client", ip, 9001, true)
	})

	t.Run("a cluster that has the Service but does not export it never serves it", func(t *testing.T) {
		ip := ipOf(t, "c2", "solo", "c3")
		waitHTTP(t, "c2", ns, "client", ip, 80)
		if got := httpPods(t, "c2", ns, "client", ip, 80, mcsRequests); !onlyFrom(got, "srv-c3") {
			t.Errorf("c2 → solo %s:80: answers %v, want all %d from srv-c3: c2 has solo too but does not export it", ip, got, mcsRequests)
		}
		waitEcho(t, "c2", ns, "client", ip, 9000, false)
		waitEcho(t, "c2", ns, "client", ip, 9001, true)
	})

	t.Run("a port of one exporting cluster's Service goes only to that cluster", func(t *testing.T) {
		ip := ipOf(t, "c1", "split", "c2", "c3")
		waitHTTP(t, "c1", ns, "client", ip, 80)
		waitHTTP(t, "c1", ns, "client", ip, 8081)
		if got := httpPods(t, "c1", ns, "client", ip, 8081, mcsRequests); !onlyFrom(got, "srv-c2") {
			t.Errorf("c1 → split %s:8081 (alt): answers %v, want all %d from srv-c2: only c2's split has port alt", ip, got, mcsRequests)
		}
	})
}

// --- helpers ---

// newService is a ClusterIP Service selecting pods app=<name>.
func newService(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: ports},
	}
}

func tcpPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port}
}

// createService creates svc in cluster's namespace ns and returns it as
// stored.
func createService(t *testing.T, cluster, ns string, svc *corev1.Service) *corev1.Service {
	t.Helper()
	got, err := kubeClient(t, cluster).CoreV1().Services(ns).Create(context.Background(), svc.DeepCopy(), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("%s: create Service %s/%s: %v", cluster, ns, svc.Name, err)
	}
	return got
}

// serverPod is a pod of the test workload serving HTTP on 8080, a TCP
// echo on 9000 and a UDP echo on 9001, labelled app=<app>.
func serverPod(name, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers:                    []corev1.Container{testpodContainer("c", "serve")},
		},
	}
}

// exportServiceSpec applies a ServiceExport with exported labels and
// annotations with kubectl, as an app team would; applying it again
// changes them.
func exportServiceSpec(t *testing.T, cluster, ns, name string, labels, annotations map[string]string) {
	t.Helper()
	applyServiceExport(t, cluster, ns, name, nil, labels, annotations)
}

// unexport deletes the ServiceExport ns/name of cluster with kubectl.
func unexport(t *testing.T, cluster, ns, name string) {
	t.Helper()
	mustKubectl(t, cluster, "delete", "serviceexport", "-n", ns, name)
}

// becomeOldest waits until cluster's exports of names in ns are Ready, and
// then until any export made afterwards is younger. Export ages come from
// apiserver timestamps, which have a resolution of one second: two exports
// stored in the same second would be equally old, and the tie could be
// broken by anything (the cluster ID, say), which would let a test of
// "the oldest wins" pass for the wrong reason. So it waits until the
// clock has passed the second after the last Ready transition.
func (s *mcsSuite) becomeOldest(t *testing.T, cluster, ns string, names ...string) {
	t.Helper()
	var last time.Time
	for _, name := range names {
		c := s.waitExportCondition(t, cluster, ns, name, mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, "")
		if c.LastTransitionTime.After(last) {
			last = c.LastTransitionTime.Time
		}
	}
	waitFor(t, 10*time.Second, "the second after the exports of "+cluster+" became Ready", func(context.Context) (bool, error) {
		return time.Now().After(last.Add(time.Second)), nil
	})
}

// waitExportCondition waits until cluster's ServiceExport ns/name has a
// condition typ with status and, unless reason is empty, reason (the MCS
// API allows several reasons joined by commas) and returns it.
func (s *mcsSuite) waitExportCondition(t *testing.T, cluster, ns, name string, typ mcsv1beta1.ServiceExportConditionType,
	status metav1.ConditionStatus, reason mcsv1beta1.ServiceExportConditionReason) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	var last string
	err := poll(mcsWait, func(ctx context.Context) (bool, error) {
		var se mcsv1beta1.ServiceExport
		if err := s.cl[cluster].Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &se); err != nil {
			if ctx.Err() == nil {
				last = err.Error()
			}
			return false, nil
		}
		last = renderConditions(se.Status.Conditions)
		c := meta.FindStatusCondition(se.Status.Conditions, string(typ))
		if c == nil || c.Status != status || reason != "" && !hasReason(c.Reason, reason) {
			return false, nil
		}
		got = *c
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: ServiceExport %s/%s never had %s=%s %s; conditions: %s", cluster, ns, name, typ, status, reason, last)
	}
	return got
}

func hasReason(reasons string, want mcsv1beta1.ServiceExportConditionReason) bool {
	for r := range strings.SplitSeq(reasons, ",") {
		if strings.TrimSpace(r) == string(want) {
			return true
		}
	}
	return false
}

func renderConditions(conds []metav1.Condition) string {
	var out []string
	for _, c := range conds {
		out = append(out, fmt.Sprintf("%s=%s/%s (%s)", c.Type, c.Status, c.Reason, c.Message))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// waitImportAll waits until every cluster has ServiceImport ns/name with
// cond, and returns them by cluster.
func (s *mcsSuite) waitImportAll(t *testing.T, ns, name, what string, cond func(*mcsv1beta1.ServiceImport) bool) map[string]*mcsv1beta1.ServiceImport {
	t.Helper()
	out := map[string]*mcsv1beta1.ServiceImport{}
	for _, c := range mcsClusters {
		out[c] = waitImport(t, c, ns, name, what, cond)
	}
	return out
}

// waitImportMetadata waits until every cluster imports ns/name from
// clusters with exactly the labels and annotations given: the exported
// ones, never the Service's own.
func (s *mcsSuite) waitImportMetadata(t *testing.T, ns, name string, clusters []string, labels, annotations map[string]string) {
	t.Helper()
	for _, c := range mcsClusters {
		var last string
		err := poll(mcsWait, func(ctx context.Context) (bool, error) {
			var si mcsv1beta1.ServiceImport
			if err := s.cl[c].Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &si); err != nil {
				if ctx.Err() == nil {
					last = err.Error()
				}
				return false, nil
			}
			last = fmt.Sprintf("clusters %v labels %v annotations %v", importClusters(&si), si.Labels, si.Annotations)
			return slices.Equal(importClusters(&si), clusters) && maps.Equal(si.Labels, labels) && maps.Equal(si.Annotations, annotations), nil
		})
		if err != nil {
			t.Fatalf("%s: ServiceImport %s/%s: want clusters %v labels %v annotations %v; have %s", c, ns, name, clusters, labels, annotations, last)
		}
	}
}

// clusterSetService returns the Service in si's cluster that si owns: the
// one whose cluster IP is the clusterset IP.
func (s *mcsSuite) clusterSetService(t *testing.T, cluster string, si *mcsv1beta1.ServiceImport) *corev1.Service {
	t.Helper()
	var found *corev1.Service
	var last string
	err := poll(mcsWait, func(ctx context.Context) (bool, error) {
		var list corev1.ServiceList
		if err := s.cl[cluster].List(ctx, &list, client.InNamespace(si.Namespace)); err != nil {
			if ctx.Err() == nil {
				last = err.Error()
			}
			return false, nil
		}
		var names []string
		for i := range list.Items {
			names = append(names, list.Items[i].Name)
			for _, o := range list.Items[i].OwnerReferences {
				if o.Kind == "ServiceImport" && o.UID == si.UID {
					found = &list.Items[i]
					return true, nil
				}
			}
		}
		last = "Services " + strings.Join(names, ", ")
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s: no Service owned by ServiceImport %s/%s (uid %s): %s", cluster, si.Namespace, si.Name, si.UID, last)
	}
	return found
}

// ownedServices names the Services of ns in cluster that a ServiceImport
// called name owns.
func (s *mcsSuite) ownedServices(t *testing.T, cluster, ns, name string) []string {
	t.Helper()
	var list corev1.ServiceList
	if err := s.cl[cluster].List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, svc := range list.Items {
		for _, o := range svc.OwnerReferences {
			if o.Kind == "ServiceImport" && o.Name == name {
				out = append(out, svc.Name)
			}
		}
	}
	return out
}

// waitNoImport waits until cluster has nothing left of the import ns/name:
// no ServiceImport, no MCS EndpointSlice, no Service it owned.
func (s *mcsSuite) waitNoImport(t *testing.T, cluster, ns, name string) {
	t.Helper()
	var last string
	if err := poll(mcsWait, func(ctx context.Context) (bool, error) {
		st := s.importState(ctx, cluster, ns, name)
		if ctx.Err() == nil {
			last = st
		}
		return st == "none", nil
	}); err != nil {
		t.Fatalf("%s: the import %s/%s is still there after the last export went: %s", cluster, ns, name, last)
	}
}

// importState describes what cluster has of the import ns/name: the
// ServiceImport, the MCS EndpointSlices and the Services it owns, or
// "none".
func (s *mcsSuite) importState(ctx context.Context, cluster, ns, name string) string {
	cl := s.cl[cluster]
	var parts []string
	var si mcsv1beta1.ServiceImport
	switch err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &si); {
	case err == nil:
		parts = append(parts, fmt.Sprintf("ServiceImport %s ips=%v clusters=%v", si.Spec.Type, si.Spec.IPs, importClusters(&si)))
	case !apierrors.IsNotFound(err):
		return err.Error()
	}
	var slicesList discoveryv1.EndpointSliceList
	if err := cl.List(ctx, &slicesList, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: name}); err != nil {
		return err.Error()
	}
	for _, sl := range slicesList.Items {
		parts = append(parts, fmt.Sprintf("EndpointSlice %s from %s", sl.Name, sl.Labels[mcsv1beta1.LabelSourceCluster]))
	}
	var svcs corev1.ServiceList
	if err := cl.List(ctx, &svcs, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	for _, svc := range svcs.Items {
		for _, o := range svc.OwnerReferences {
			if o.Kind == "ServiceImport" && o.Name == name {
				parts = append(parts, "Service "+svc.Name)
			}
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// waitSliceSources waits until cond holds for cluster's MCS EndpointSlices
// of service ns/name, given as source cluster → sorted endpoint addresses.
// Every such slice must name its source cluster.
func (s *mcsSuite) waitSliceSources(t *testing.T, cluster, ns, name string, cond func(map[string][]string) bool, what string) {
	t.Helper()
	var last map[string][]string
	var lastErr string
	err := poll(mcsWait, func(ctx context.Context) (bool, error) {
		var list discoveryv1.EndpointSliceList
		if err := s.cl[cluster].List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{mcsv1beta1.LabelServiceName: name}); err != nil {
			if ctx.Err() == nil {
				lastErr = err.Error()
			}
			return false, nil
		}
		src := map[string][]string{}
		for _, sl := range list.Items {
			c, ok := sl.Labels[mcsv1beta1.LabelSourceCluster]
			if !ok || c == "" {
				lastErr = fmt.Sprintf("slice %s has no %s label", sl.Name, mcsv1beta1.LabelSourceCluster)
				return false, nil
			}
			addrs := src[c]
			if addrs == nil {
				addrs = []string{}
			}
			for _, ep := range sl.Endpoints {
				addrs = append(addrs, ep.Addresses...)
			}
			slices.Sort(addrs)
			src[c] = addrs
		}
		last, lastErr = src, ""
		return cond(src), nil
	})
	if err != nil {
		t.Fatalf("%s: MCS EndpointSlices of %s/%s: want %s; have %v %s", cluster, ns, name, what, last, lastErr)
	}
}

// trafficOf renders the session affinity, its timeout, the internal
// traffic policy and the traffic distribution, with the API's defaults.
func trafficOf(aff corev1.ServiceAffinity, cfg *corev1.SessionAffinityConfig, itp *corev1.ServiceInternalTrafficPolicy, td *string) string {
	timeout := "none"
	if cfg != nil && cfg.ClientIP != nil && cfg.ClientIP.TimeoutSeconds != nil {
		timeout = strconv.Itoa(int(*cfg.ClientIP.TimeoutSeconds))
	}
	if aff == "" {
		aff = corev1.ServiceAffinityNone
	}
	return fmt.Sprintf("affinity=%s timeout=%s internalTrafficPolicy=%s trafficDistribution=%s",
		aff, timeout, ptr.Deref(itp, corev1.ServiceInternalTrafficPolicyCluster), ptr.Deref(td, ""))
}

// renderServicePorts and renderImportPorts render ports as
// "name PROTO/port[ appProtocol]", sorted, joined by "; ".
func renderServicePorts(ports []corev1.ServicePort) string {
	var out []mcsv1beta1.ServicePort
	for _, p := range ports {
		out = append(out, mcsv1beta1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
	}
	return renderImportPorts(out)
}

func renderImportPorts(ports []mcsv1beta1.ServicePort) string {
	var out []string
	for _, p := range ports {
		s := fmt.Sprintf("%s %s/%d", p.Name, p.Protocol, p.Port)
		if p.AppProtocol != nil {
			s += " " + *p.AppProtocol
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

func renderSlicePorts(ports []discoveryv1.EndpointPort) string {
	var out []string
	for _, p := range ports {
		out = append(out, fmt.Sprintf("%s %s/%d", ptr.Deref(p.Name, ""), ptr.Deref(p.Protocol, ""), ptr.Deref(p.Port, 0)))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// httpAnswer is the part of the test workload's GET / answer the tests
// read: which pod answered.
type httpAnswer struct {
	Pod string `json:"pod"`
}

// curlScript fetches http://ip:port/ n times with curl, each on a new
// connection, printing each answer on its own line, or FAIL.
func curlScript(ip string, port, n int) string {
	return fmt.Sprintf("for i in $(seq %d); do curl -s --max-time 5 http://%s:%d/ || echo FAIL; done", n, ip, port)
}

// httpPods fetches http://ip:port/ n times from pod and returns who
// answered each request ("FAIL" for a failed one, the raw line for one
// that is not the workload's answer).
func httpPods(t *testing.T, cluster, ns, pod, ip string, port, n int) []string {
	t.Helper()
	out, err := httpAnswers(t, cluster, ns, pod, ip, port, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// httpAnswers is httpPods returning an error when kubectl exec fails.
func httpAnswers(t *testing.T, cluster, ns, pod, ip string, port, n int) ([]string, error) {
	t.Helper()
	r := kubectl(t, cluster, "exec", "-n", ns, pod, "--", "sh", "-c", curlScript(ip, port, n))
	if r.code != 0 {
		return nil, fmt.Errorf("%s: kubectl exec %s/%s: exit %d: %s%s", cluster, ns, pod, r.code, r.stdout, r.stderr)
	}
	var out []string
	for line := range strings.Lines(r.stdout) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var a httpAnswer
		if err := json.Unmarshal([]byte(line), &a); err != nil || a.Pod == "" {
			out = append(out, line)
			continue
		}
		out = append(out, a.Pod)
	}
	return out, nil
}

// waitHTTP waits until one GET http://ip:port/ from pod is answered by the
// workload and returns the pod that answered.
func waitHTTP(t *testing.T, cluster, ns, pod, ip string, port int) string {
	t.Helper()
	var last []string
	var who string
	if err := poll(mcsWait, func(context.Context) (bool, error) {
		var err error
		if last, err = httpAnswers(t, cluster, ns, pod, ip, port, 1); err != nil {
			last = []string{err.Error()}
			return false, nil
		}
		if len(last) == 1 && last[0] != "FAIL" && !strings.HasPrefix(last[0], "{") {
			who = last[0]
			return true, nil
		}
		return false, nil
	}); err != nil {
		t.Fatalf("%s: %s/%s never reached http://%s:%d/: %v", cluster, ns, pod, ip, port, last)
	}
	return who
}

// onlyFrom reports whether every answer came from pod (and there are some).
func onlyFrom(answers []string, pod string) bool {
	return len(answers) > 0 && !slices.ContainsFunc(answers, func(a string) bool { return a != pod })
}

// waitEcho waits until a token sent from pod to ip:port with nc (UDP when
// udp) comes back.
func waitEcho(t *testing.T, cluster, ns, pod, ip string, port int, udp bool) {
	t.Helper()
	token := fmt.Sprintf("mcs-%s-%d-%d", cluster, port, time.Now().UnixNano())
	// -N ends the TCP connection after stdin, so the echo ends it too; -W 1
	// ends the UDP exchange after one datagram back; -w bounds both.
	nc := fmt.Sprintf("printf %%s %s | nc -N -w 5 %s %d", token, ip, port)
	if udp {
		nc = fmt.Sprintf("printf %%s %s | nc -u -W 1 -w 5 %s %d", token, ip, port)
	}
	var last kubectlResult
	if err := poll(mcsWait, func(context.Context) (bool, error) {
		last = kubectl(t, cluster, "exec", "-n", ns, pod, "--", "sh", "-c", nc)
		return strings.TrimSpace(last.stdout) == token, nil
	}); err != nil {
		t.Fatalf("%s: %s/%s: %q never came back: exit %d, stdout %q, stderr %q", cluster, ns, pod, nc, last.code, last.stdout, last.stderr)
	}
}
