package lighthouse_test

// Globalnet (docs/globalnet.md, lighthouse/globalnet.go): an exporting
// cluster with a global CIDR publishes global IPs, which the importing
// cluster's EndpointSlices and the DNS plugin's answers then carry. The
// test writes the GlobalIngressIPs (and their status) as the Globalnet
// controller would; the harness runs real apiservers and agents.

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/lighthouse"
	"strait.dev/strait/lighthouse/coredns"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// podSlice is what the EndpointSlice controller writes for Service
// ns/name: one ready endpoint per pod (name=IP), on target port port.
func podSlice(ns, name, slice string, port corev1.ServicePort, pods ...[2]string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: slice, Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(port.Name), Protocol: ptr.To(port.Protocol), Port: ptr.To(port.TargetPort.IntVal)}},
	}
	for _, p := range pods {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p[1]}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			Hostname: ptr.To(p[0]), NodeName: ptr.To("node-1"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: p[0]},
		})
	}
	return s
}

// setGlobalIP writes GlobalIngressIP ns/name's status as the controller
// does: the address and Allocated=True.
func setGlobalIP(t *testing.T, c client.Client, ns, name, ip string) {
	t.Helper()
	var g v1.GlobalIngressIP
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &g); err != nil {
		t.Fatal(err)
	}
	g.Status.AllocatedIP = v1.IP(ip)
	meta.SetStatusCondition(&g.Status.Conditions, metav1.Condition{Type: v1.ConditionAllocated, Status: metav1.ConditionTrue, Reason: v1.ReasonSuccess, Message: "allocated"})
	if err := c.Status().Update(context.Background(), &g); err != nil {
		t.Fatal(err)
	}
}

func ingressIP(ns, name string, target v1.GlobalIngressTarget, svc, pod string) *v1.GlobalIngressIP {
	g := &v1.GlobalIngressIP{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.GlobalIngressIPSpec{Target: target, ServiceRef: v1.ObjectRef{Name: svc}}}
	if pod != "" {
		g.Spec.PodRef = &v1.ObjectRef{Name: pod}
	}
	return g
}

// readyMessage is ServiceExport ns/name's Ready condition as
// "Status/Reason: message".
func readyMessage(c client.Client, ns, name string) string {
	var se mcsv1beta1.ServiceExport
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &se); err != nil {
		return err.Error()
	}
	r := meta.FindStatusCondition(se.Status.Conditions, string(mcsv1beta1.ServiceExportConditionReady))
	if r == nil {
		return "no Ready"
	}
	return string(r.Status) + "/" + r.Reason + ": " + r.Message
}

func TestGlobalnet(t *testing.T) {
	f := lighthouse.NewTestFabric(t, "c1", "c2")
	c1, c2 := f.Client("c1"), f.Client("c2")
	ctx := context.Background()
	for _, c := range []client.Client{c1, c2} {
		lighthouse.MustCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	}
	// c2 uses Globalnet: its gateway published its global CIDR in its own
	// Cluster record. Its pod CIDR is c1's too.
	lighthouse.MustCreate(t, c2, &v1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "c2", Labels: map[string]string{v1.ClusterIDLabel: "c2"}},
		Spec: v1.ClusterSpec{ClusterID: "c2", PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"},
			GlobalCIDRs: []v1.CIDR{"242.2.0.0/16"}},
	})
	http := corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}
	pg := corev1.ServicePort{Name: "pg", Protocol: corev1.ProtocolTCP, Port: 5432, TargetPort: intstr.FromInt32(5432)}

	t.Run("a ClusterIP Service is published at its global IP once it has one", func(t *testing.T) {
		lighthouse.MustCreate(t, c2,
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{http}}},
			podSlice("app", "web", "web-abc", http, [2]string{"web-1", "10.1.0.5"}),
			&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"}})
		// Without a global IP: imported, but no endpoint (never the pod IP,
		// which may be one of c1's own), and the export is pending.
		lighthouse.Eventually(t, "pending without a global IP", func() string {
			if got := readyMessage(c2, "app", "web"); !strings.HasPrefix(got, "Unknown/Pending: waiting for the Service's global IP") {
				return got
			}
			if got := lighthouse.ImportState(c1, "app", "web"); got != "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c2 slices=" {
				return got
			}
			return ""
		})
		// The controller cannot allot one: the export says why.
		lighthouse.MustCreate(t, c2, ingressIP("app", "web-gip", v1.ClusterIPService, "web", ""))
		var g v1.GlobalIngressIP
		if err := c2.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web-gip"}, &g); err != nil {
			t.Fatal(err)
		}
		meta.SetStatusCondition(&g.Status.Conditions, metav1.Condition{Type: v1.ConditionAllocated, Status: metav1.ConditionFalse, Reason: v1.ReasonIPPoolExhausted, Message: "no free address in 242.2.0.0/16"})
		if err := c2.Status().Update(ctx, &g); err != nil {
			t.Fatal(err)
		}
		lighthouse.Eventually(t, "pending with the controller's reason", func() string {
			if got := readyMessage(c2, "app", "web"); !strings.HasSuffix(got, "(GlobalIngressIP ClusterIPService): IPPoolExhausted: no free address in 242.2.0.0/16") {
				return got
			}
			return ""
		})
		setGlobalIP(t, c2, "app", "web-gip", "242.2.0.10")
		lighthouse.Eventually(t, "c1's slice at the global IP", func() string {
			if got := lighthouse.ImportState(c1, "app", "web"); got != "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c2 slices=c2:true:242.2.0.10" {
				return got
			}
			if got := lighthouse.Conditions(c2, "app", "web"); got != "Conflict=False/NoConflicts Ready=True/Exported Valid=True/Valid" {
				return got
			}
			return ""
		})
		// The Service's port, not the pods' target port: the global IP
		// is an externalIP of a Service with the same ports.
		var sl discoveryv1.EndpointSliceList
		if err := c1.List(ctx, &sl, client.InNamespace("app"), client.MatchingLabels{mcsv1beta1.LabelServiceName: "web"}); err != nil || len(sl.Items) != 1 {
			t.Fatalf("c1's slices of web: %v, %d", err, len(sl.Items))
		}
		if p := sl.Items[0].Ports; len(p) != 1 || ptr.Deref(p[0].Name, "") != "http" || ptr.Deref(p[0].Port, 0) != 80 || ptr.Deref(p[0].Protocol, "") != corev1.ProtocolTCP {
			t.Errorf("ports %+v, want http TCP 80", p)
		}
		if ep := sl.Items[0].Endpoints; len(ep) != 1 || !ptr.Deref(ep[0].Conditions.Ready, false) {
			t.Errorf("endpoints %+v, want one ready", ep)
		}
	})

	t.Run("a new global IP replaces the old one", func(t *testing.T) {
		setGlobalIP(t, c2, "app", "web-gip", "242.2.0.11")
		lighthouse.Eventually(t, "c1's slice at the new global IP", func() string {
			if got := lighthouse.ImportState(c1, "app", "web"); got != "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c2 slices=c2:true:242.2.0.11" {
				return got
			}
			return ""
		})
	})

	t.Run("a headless Service is published at its pods' global IPs", func(t *testing.T) {
		lighthouse.MustCreate(t, c2,
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{pg}}},
			podSlice("app", "db", "db-abc", pg, [2]string{"db-0", "10.1.0.7"}, [2]string{"db-1", "10.1.0.8"}),
			ingressIP("app", "db-0-gip", v1.HeadlessServicePod, "db", "db-0"),
			&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}})
		setGlobalIP(t, c2, "app", "db-0-gip", "242.2.0.20")
		lighthouse.Eventually(t, "db-0 at its global IP, db-1 pending", func() string {
			if got := lighthouse.ImportState(c1, "app", "db"); got != "Headless ports=pg:TCP/5432 ips=0 clusters=c2 slices=c2:false:242.2.0.20" {
				return got
			}
			if got := readyMessage(c2, "app", "db"); !strings.HasPrefix(got, "Unknown/Pending: waiting for the global IPs of ready pods db-1") {
				return got
			}
			return ""
		})
		lighthouse.MustCreate(t, c2, ingressIP("app", "db-1-gip", v1.HeadlessServicePod, "db", "db-1"))
		setGlobalIP(t, c2, "app", "db-1-gip", "242.2.0.21")
		lighthouse.Eventually(t, "both pods at their global IPs", func() string {
			if got := lighthouse.ImportState(c1, "app", "db"); got != "Headless ports=pg:TCP/5432 ips=0 clusters=c2 slices=c2:false:242.2.0.20,242.2.0.21" {
				return got
			}
			if got := lighthouse.Conditions(c2, "app", "db"); got != "Conflict=False/NoConflicts Ready=True/Exported Valid=True/Valid" {
				return got
			}
			return ""
		})
	})

	t.Run("a cluster without Globalnet publishes pod IPs", func(t *testing.T) {
		lighthouse.MustCreate(t, c1,
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "plain"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{http}}},
			podSlice("app", "plain", "plain-abc", http, [2]string{"plain-1", "10.1.0.9"}),
			&mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "plain"}})
		lighthouse.Eventually(t, "c2 imports c1's pod IP", func() string {
			if got := lighthouse.ImportState(c2, "app", "plain"); got != "ClusterSetIP ports=http:TCP/80 ips=1 clusters=c1 slices=c1:true:10.1.0.9" {
				return got
			}
			return ""
		})
	})

	t.Run("DNS answers the global IPs", func(t *testing.T) {
		store := coredns.NewStore("c1", v1.ComponentNamespace)
		if err := coredns.Watch(t.Context(), f.Config("c1"), v1.ComponentNamespace, store); err != nil {
			t.Fatal(err)
		}
		l := &coredns.Lighthouse{Zones: []string{"clusterset.local."}, TTL: coredns.DefaultTTL, Store: store}
		answer := func(name string) []string {
			r := new(dns.Msg)
			r.SetQuestion(name, dns.TypeA)
			w := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := l.ServeDNS(ctx, w, r); err != nil || w.Msg == nil {
				return []string{"error: " + dns.RcodeToString[w.Rcode]}
			}
			var out []string
			for _, rr := range w.Msg.Answer {
				if a, ok := rr.(*dns.A); ok {
					out = append(out, a.A.String())
				}
			}
			slices.Sort(out)
			return out
		}
		lighthouse.Eventually(t, "headless answers", func() string {
			// (A message is never empty: "" would end the wait.)
			if got := answer("db.app.svc.clusterset.local."); !slices.Equal(got, []string{"242.2.0.20", "242.2.0.21"}) {
				return "db answers " + strings.Join(got, ",")
			}
			if got := answer("db-1.c2.db.app.svc.clusterset.local."); !slices.Equal(got, []string{"242.2.0.21"}) {
				return "db-1.c2.db answers " + strings.Join(got, ",")
			}
			return ""
		})
		// The clusterset IP is c1's own (the derived Service's), as
		// without Globalnet: kube-proxy sends it to the global IP.
		var si mcsv1beta1.ServiceImport
		if err := c1.Get(ctx, types.NamespacedName{Namespace: "app", Name: "web"}, &si); err != nil {
			t.Fatal(err)
		}
		if got := answer("web.app.svc.clusterset.local."); !slices.Equal(got, si.Spec.IPs) {
			t.Errorf("web: %v, want the clusterset IP %v", got, si.Spec.IPs)
		}
	})
}
