package coredns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/lighthouse"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// fixture is the cluster c1 of a clusterset, as its store sees it:
//
//   - web: ClusterSetIP, dual-stack, ports http/TCP 80, tcp42/TCP 42 and
//     udp42/UDP 42;
//   - v4only: ClusterSetIP, IPv4 only, no ports;
//   - db: headless, exported by c1 (db-0 ready, db-1 not ready), by the
//     two-label cluster c2.east (an endpoint without a hostname, dual
//     addresses in two slices) and by c3, whose connection is in error;
//   - empty: headless without a ready endpoint;
//   - a record in strait-system, which must never answer.
func fixture(t testing.TB) *Store {
	t.Helper()
	s := NewStore("c1", v1.ComponentNamespace)
	s.SetImport(serviceImport("web", mcsv1beta1.ClusterSetIP, []string{"10.96.0.10", "fd00::10"},
		mcsPort("http", corev1.ProtocolTCP, 80), mcsPort("tcp42", corev1.ProtocolTCP, 42), mcsPort("udp42", corev1.ProtocolUDP, 42)))
	s.SetImport(serviceImport("v4only", mcsv1beta1.ClusterSetIP, []string{"10.96.0.11"}))
	s.SetImport(serviceImport("db", mcsv1beta1.Headless, nil, mcsPort("pg", corev1.ProtocolTCP, 5432)))
	s.SetImport(serviceImport("empty", mcsv1beta1.Headless, nil))
	pg := slicePort("pg", corev1.ProtocolTCP, 5432)
	s.SetSlice(importedSlice("db", "c1", "db-c1", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{pg},
		ep("db-0", true, "10.1.0.5"), ep("db-1", false, "10.1.0.6")))
	s.SetSlice(importedSlice("db", "c2.east", "db-c2-4", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{pg},
		ep("", true, "10.2.0.7")))
	s.SetSlice(importedSlice("db", "c2.east", "db-c2-6", discoveryv1.AddressTypeIPv6, []discoveryv1.EndpointPort{pg},
		ep("", true, "fd02::7")))
	s.SetSlice(importedSlice("db", "c3", "db-c3", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{pg},
		ep("db-0", true, "10.3.0.8")))
	s.SetSlice(importedSlice("empty", "c1", "empty-c1", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{pg},
		ep("e-0", false, "10.1.0.9")))
	rec := serviceImport("web.default.c2", mcsv1beta1.ClusterSetIP, []string{"10.96.0.99"})
	rec.Namespace = v1.ComponentNamespace
	rec.Labels = map[string]string{v1.ClusterIDLabel: "c2"}
	s.SetImport(rec)
	s.SetGateway(&v1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "gw-1"},
		Status: v1.GatewayStatus{HAStatus: v1.HAStatusActive, Connections: []v1.Connection{
			{ClusterID: "c2.east", Status: v1.Connected},
			{ClusterID: "c3", Status: v1.ConnectionError},
		}},
	})
	s.SetSynced(true)
	return s
}

func serviceImport(name string, typ mcsv1beta1.ServiceImportType, ips []string, ports ...mcsv1beta1.ServicePort) *mcsv1beta1.ServiceImport {
	return &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       mcsv1beta1.ServiceImportSpec{Type: typ, IPs: ips, Ports: ports},
	}
}

func mcsPort(name string, proto corev1.Protocol, port int32) mcsv1beta1.ServicePort {
	return mcsv1beta1.ServicePort{Name: name, Protocol: proto, Port: port}
}

func slicePort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(port)}
}

func ep(hostname string, ready bool, addrs ...string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: addrs, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	if hostname != "" {
		e.Hostname = ptr.To(hostname)
	}
	return e
}

// importedSlice is an EndpointSlice as Lighthouse imports it
// (lighthouse.ImportedSlice).
func importedSlice(service, cluster, name string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{
			mcsv1beta1.LabelServiceName:   service,
			mcsv1beta1.LabelSourceCluster: cluster,
			discoveryv1.LabelManagedBy:    lighthouse.ManagedBy,
			lighthouse.ManagedLabel:       "true",
		}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

const soa = "clusterset.local.\t5\tIN\tSOA\tns.dns.clusterset.local. hostmaster.clusterset.local."

// answerCase is one question and the whole answer expected: the rcode and
// each section as lines of "name ttl class type rdata" (sorted; the SOA's
// serial and timers cut off, as they change with the store).
type answerCase struct {
	name   string
	qtype  uint16
	rcode  int
	answer []string
	ns     []string
	extra  []string
}

func TestAnswers(t *testing.T) {
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: fixture(t), Next: test.NextHandler(dns.RcodeBadCookie, nil)}
	for _, tc := range []answerCase{
		// ClusterSetIP: the import's IP of each family; the other family
		// is NODATA, never NXDOMAIN.
		{name: "web.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{
			"web.default.svc.clusterset.local.\t5\tIN\tA\t10.96.0.10"}},
		{name: "web.default.svc.clusterset.local.", qtype: dns.TypeAAAA, answer: []string{
			"web.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd00::10"}},
		{name: "v4only.default.svc.clusterset.local.", qtype: dns.TypeAAAA, ns: []string{soa}},
		// SRV of a named port targets the service name, with its addresses.
		// (plugin.SRV weighs every address of the target, so a dual-stack
		// service gets 50: weights only matter relative to each other.)
		{name: "_http._tcp.web.default.svc.clusterset.local.", qtype: dns.TypeSRV, answer: []string{
			"_http._tcp.web.default.svc.clusterset.local.\t5\tIN\tSRV\t0 50 80 web.default.svc.clusterset.local."},
			extra: []string{
				"web.default.svc.clusterset.local.\t5\tIN\tA\t10.96.0.10",
				"web.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd00::10"}},
		{name: "_udp42._udp.web.default.svc.clusterset.local.", qtype: dns.TypeSRV, answer: []string{
			"_udp42._udp.web.default.svc.clusterset.local.\t5\tIN\tSRV\t0 50 42 web.default.svc.clusterset.local."},
			extra: []string{
				"web.default.svc.clusterset.local.\t5\tIN\tA\t10.96.0.10",
				"web.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd00::10"}},
		// The port exists, with another protocol: no such name.
		{name: "_http._udp.web.default.svc.clusterset.local.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: []string{soa}},
		// A port name is not an address name.
		{name: "_http._tcp.web.default.svc.clusterset.local.", qtype: dns.TypeA, ns: []string{soa}},
		// The bare name: one SRV per distinct (port, target): TCP and UDP
		// 42 give one.
		{name: "web.default.svc.clusterset.local.", qtype: dns.TypeSRV, answer: []string{
			"web.default.svc.clusterset.local.\t5\tIN\tSRV\t0 16 42 web.default.svc.clusterset.local.",
			"web.default.svc.clusterset.local.\t5\tIN\tSRV\t0 16 80 web.default.svc.clusterset.local."},
			extra: []string{
				"web.default.svc.clusterset.local.\t5\tIN\tA\t10.96.0.10",
				"web.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd00::10"}},
		// Headless: the ready endpoints of reachable clusters: c1's db-0,
		// c2.east's endpoint; not c1's db-1 (not ready), not c3's (its
		// connection is in error).
		{name: "db.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{
			"db.default.svc.clusterset.local.\t5\tIN\tA\t10.1.0.5",
			"db.default.svc.clusterset.local.\t5\tIN\tA\t10.2.0.7"}},
		{name: "db.default.svc.clusterset.local.", qtype: dns.TypeAAAA, answer: []string{
			"db.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd02::7"}},
		{name: "db-0.c1.db.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{
			"db-0.c1.db.default.svc.clusterset.local.\t5\tIN\tA\t10.1.0.5"}},
		// Without a hostname, a name derived from the address; a cluster
		// ID of two labels.
		{name: "10-2-0-7.c2.east.db.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{
			"10-2-0-7.c2.east.db.default.svc.clusterset.local.\t5\tIN\tA\t10.2.0.7"}},
		{name: "fd02--7.c2.east.db.default.svc.clusterset.local.", qtype: dns.TypeAAAA, answer: []string{
			"fd02--7.c2.east.db.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd02::7"}},
		{name: "_pg._tcp.db.default.svc.clusterset.local.", qtype: dns.TypeSRV, answer: []string{
			"_pg._tcp.db.default.svc.clusterset.local.\t5\tIN\tSRV\t0 33 5432 10-2-0-7.c2.east.db.default.svc.clusterset.local.",
			"_pg._tcp.db.default.svc.clusterset.local.\t5\tIN\tSRV\t0 33 5432 db-0.c1.db.default.svc.clusterset.local.",
			"_pg._tcp.db.default.svc.clusterset.local.\t5\tIN\tSRV\t0 33 5432 fd02--7.c2.east.db.default.svc.clusterset.local."},
			extra: []string{
				"10-2-0-7.c2.east.db.default.svc.clusterset.local.\t5\tIN\tA\t10.2.0.7",
				"db-0.c1.db.default.svc.clusterset.local.\t5\tIN\tA\t10.1.0.5",
				"fd02--7.c2.east.db.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd02::7"}},
		// An endpoint of an unreachable cluster, a not-ready one, one of a
		// ClusterSetIP service: no such name.
		{name: "db-0.c3.db.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "db-1.c1.db.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "x.c1.web.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		// <clusterid>.<svc>.<ns>.svc is reserved by the KEP: no such name.
		{name: "c1.db.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "c1.web.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		// A headless service without a ready endpoint: no such name.
		{name: "empty.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		// The specification's version.
		{name: "dns-version.clusterset.local.", qtype: dns.TypeTXT, answer: []string{
			"dns-version.clusterset.local.\t5\tIN\tTXT\t\"1.0.0\""}},
		{name: "dns-version.clusterset.local.", qtype: dns.TypeA, ns: []string{soa}},
		// Unknown service, namespace, name.
		{name: "nope.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "web.nope.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "web.default.pod.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "nope.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		// Names that exist without records of their own: NODATA.
		{name: "default.svc.clusterset.local.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "svc.clusterset.local.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "clusterset.local.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "clusterset.local.", qtype: dns.TypeSOA, answer: []string{soa}},
		// Another type on a name that exists: NODATA.
		{name: "web.default.svc.clusterset.local.", qtype: dns.TypeMX, ns: []string{soa}},
		{name: "web.default.svc.clusterset.local.", qtype: dns.TypeTXT, ns: []string{soa}},
		// ANY: the addresses (RFC 8482 allows a subset).
		{name: "web.default.svc.clusterset.local.", qtype: dns.TypeANY, answer: []string{
			"web.default.svc.clusterset.local.\t5\tIN\tA\t10.96.0.10",
			"web.default.svc.clusterset.local.\t5\tIN\tAAAA\tfd00::10"}},
		// Case-insensitive; the answer keeps the question's case (0x20).
		{name: "WEB.Default.SVC.ClusterSet.Local.", qtype: dns.TypeA, answer: []string{
			"WEB.Default.SVC.ClusterSet.Local.\t5\tIN\tA\t10.96.0.10"}},
		// The export record in strait-system is not an import.
		{name: "web.default.c2.strait-system.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		// Zone transfers are refused.
		{name: "clusterset.local.", qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
		// Outside the zone: the next plugin's (test.NextHandler's rcode).
		{name: "web.default.svc.cluster.local.", qtype: dns.TypeA, rcode: dns.RcodeBadCookie},
	} {
		t.Run(fmt.Sprintf("%s %s", dns.TypeToString[tc.qtype], tc.name), func(t *testing.T) {
			check(t, l, tc)
		})
	}
}

// check asks l tc's question and compares the whole answer.
func check(t *testing.T, l *Lighthouse, tc answerCase) {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(tc.name, tc.qtype)
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	code, err := l.ServeDNS(context.Background(), w, r)
	if err != nil {
		t.Fatalf("ServeDNS: %v", err)
	}
	resp := w.Msg
	if resp == nil {
		// The handler left the reply to the server: only for codes the
		// server writes itself (plugin.ClientWrite).
		if code != tc.rcode {
			t.Fatalf("rcode %s, want %s", dns.RcodeToString[code], dns.RcodeToString[tc.rcode])
		}
		return
	}
	if resp.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
	}
	if tc.rcode != dns.RcodeBadCookie && !resp.Authoritative {
		t.Errorf("answer not authoritative")
	}
	for _, sec := range []struct {
		name      string
		got, want []string
	}{{"answer", lines(resp.Answer), tc.answer}, {"authority", lines(resp.Ns), tc.ns}, {"additional", lines(resp.Extra), tc.extra}} {
		want := slices.Clone(sec.want)
		slices.Sort(want)
		if !slices.Equal(sec.got, want) {
			t.Errorf("%s section:\n got %q\nwant %q", sec.name, sec.got, want)
		}
	}
}

// lines renders rrs sorted, the SOA without its serial and timers.
func lines(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		s := rr.String()
		if soa, ok := rr.(*dns.SOA); ok {
			s = strings.TrimSuffix(soa.Hdr.String(), "\t") + "\t" + soa.Ns + " " + soa.Mbox
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestTTLAndFallthrough(t *testing.T) {
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: 30, Store: fixture(t), Next: test.NextHandler(dns.RcodeBadCookie, nil)}
	check(t, l, answerCase{name: "web.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{
		"web.default.svc.clusterset.local.\t30\tIN\tA\t10.96.0.10"}})
	check(t, l, answerCase{name: "nope.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{
		strings.Replace(soa, "\t5\t", "\t30\t", 1)}})
	l.Fall = fall.Root
	check(t, l, answerCase{name: "nope.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeBadCookie})
	// An existing name is still answered.
	check(t, l, answerCase{name: "web.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{
		"web.default.svc.clusterset.local.\t30\tIN\tA\t10.96.0.10"}})
}

func TestNotSyncedIsServerFailure(t *testing.T) {
	s := fixture(t)
	s.SetSynced(false)
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: s}
	for _, name := range []string{"web.default.svc.clusterset.local.", "nope.default.svc.clusterset.local."} {
		check(t, l, answerCase{name: name, qtype: dns.TypeA, rcode: dns.RcodeServerFailure, ns: []string{soa}})
	}
	// The version does not depend on the store.
	check(t, l, answerCase{name: "dns-version.clusterset.local.", qtype: dns.TypeTXT, answer: []string{
		"dns-version.clusterset.local.\t5\tIN\tTXT\t\"1.0.0\""}})
}

// TestHealth: a cluster whose connection goes into error leaves headless
// answers, and comes back when it is connected again; without an active
// gateway every cluster counts.
func TestHealth(t *testing.T) {
	s := fixture(t)
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: s}
	a := func(ips ...string) answerCase {
		c := answerCase{name: "db.default.svc.clusterset.local.", qtype: dns.TypeA}
		for _, ip := range ips {
			c.answer = append(c.answer, "db.default.svc.clusterset.local.\t5\tIN\tA\t"+ip)
		}
		return c
	}
	setConnections := func(active bool, conns ...v1.Connection) {
		gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw-1"}, Status: v1.GatewayStatus{HAStatus: v1.HAStatusPassive, Connections: conns}}
		if active {
			gw.Status.HAStatus = v1.HAStatusActive
		}
		s.SetGateway(gw)
	}
	check(t, l, a("10.1.0.5", "10.2.0.7"))
	setConnections(true, v1.Connection{ClusterID: "c2.east", Status: v1.ConnectionError}, v1.Connection{ClusterID: "c3", Status: v1.Connected})
	check(t, l, a("10.1.0.5", "10.3.0.8"))
	// An active gateway without a connection to a cluster: gone.
	setConnections(true)
	check(t, l, a("10.1.0.5"))
	// No active gateway: nothing is known, every cluster counts.
	setConnections(false)
	check(t, l, a("10.1.0.5", "10.2.0.7", "10.3.0.8"))
	s.DeleteGateway("gw-1")
	check(t, l, a("10.1.0.5", "10.2.0.7", "10.3.0.8"))
	// The local cluster's endpoints stay while every remote one is gone.
	setConnections(true)
	s.DeleteSlice("default", "db", "db-c1")
	check(t, l, answerCase{name: "db.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}})
}

// TestStoreUpdates: imports and slices come and go in any order.
func TestStoreUpdates(t *testing.T) {
	s := NewStore("c1", v1.ComponentNamespace)
	s.SetSynced(true)
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: s}
	nx := answerCase{name: "db.default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}}
	one := answerCase{name: "db.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{"db.default.svc.clusterset.local.\t5\tIN\tA\t10.1.0.5"}}
	// A slice before its import: nothing to answer yet.
	s.SetSlice(importedSlice("db", "c1", "db-c1", discoveryv1.AddressTypeIPv4, nil, ep("db-0", true, "10.1.0.5")))
	check(t, l, nx)
	s.SetImport(serviceImport("db", mcsv1beta1.Headless, nil))
	check(t, l, one)
	if n := s.Imports(); n != 1 {
		t.Errorf("Imports() = %d, want 1", n)
	}
	// The import goes, the slice stays: no answer.
	s.DeleteImport("default", "db")
	check(t, l, nx)
	check(t, l, answerCase{name: "default.svc.clusterset.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}})
	s.SetImport(serviceImport("db", mcsv1beta1.Headless, nil))
	check(t, l, one)
	// The endpoint turns not ready, then the slice goes.
	s.SetSlice(importedSlice("db", "c1", "db-c1", discoveryv1.AddressTypeIPv4, nil, ep("db-0", false, "10.1.0.5")))
	check(t, l, nx)
	s.DeleteSlice("default", "db", "db-c1")
	s.DeleteImport("default", "db")
	if n := s.Imports(); n != 0 || len(s.services) != 0 || len(s.namespaces) != 0 {
		t.Errorf("after every delete: %d imports, %d services, %d namespaces", n, len(s.services), len(s.namespaces))
	}
	// A slice that is not Lighthouse's is ignored.
	other := importedSlice("db", "c1", "db-x", discoveryv1.AddressTypeIPv4, nil, ep("db-0", true, "10.1.0.5"))
	other.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	s.SetSlice(other)
	if len(s.services) != 0 {
		t.Errorf("a slice not managed by Lighthouse was stored")
	}
}

func TestAddrHostname(t *testing.T) {
	for addr, want := range map[string]string{
		"10.1.2.3": "10-1-2-3", "fd00::1": "fd00--1", "fd00::": "fd00--0", "::1": "0--1", "fd00:1:2:3:4:5:6:7": "fd00-1-2-3-4-5-6-7",
	} {
		if got := addrHostname(netip.MustParseAddr(addr)); got != want {
			t.Errorf("addrHostname(%s) = %q, want %q", addr, got, want)
		}
	}
}
