package coredns

import (
	"testing"

	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// counts reads the series one question moves: the request by kind and
// type, the responses by rcode and the answers from the imports. The
// counters are the process's (CoreDNS's habit), so the test compares
// differences.
type counts struct {
	requests                             float64
	noerror, nxdomain, servfail, import_ float64
}

func readCounts(kind, qtype string) counts {
	const server, zone = "", DefaultZone
	return counts{
		requests: testutil.ToFloat64(requestCount.WithLabelValues(server, zone, kind, qtype)),
		noerror:  testutil.ToFloat64(responseCount.WithLabelValues(server, zone, "NOERROR")),
		nxdomain: testutil.ToFloat64(responseCount.WithLabelValues(server, zone, "NXDOMAIN")),
		servfail: testutil.ToFloat64(responseCount.WithLabelValues(server, zone, "SERVFAIL")),
		import_:  testutil.ToFloat64(importAnswerCount.WithLabelValues(server, zone)),
	}
}

func (c counts) minus(d counts) counts {
	return counts{c.requests - d.requests, c.noerror - d.noerror, c.nxdomain - d.nxdomain, c.servfail - d.servfail, c.import_ - d.import_}
}

// Each question under the zone is counted by kind and type, each response
// the plugin makes by rcode, and those with records from the imports; a
// name passed on to the next plugin has no response of the plugin's.
func TestMetrics(t *testing.T) {
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: fixture(t), Next: test.NextHandler(dns.RcodeBadCookie, nil)}
	unsynced := fixture(t)
	unsynced.SetSynced(false)
	for _, tc := range []struct {
		what        string
		l           *Lighthouse
		q           answerCase
		kind, qtype string
		want        counts
	}{
		{"an answer", l, answerCase{name: "web.default.svc.clusterset.local.", qtype: dns.TypeA, answer: []string{"web.default.svc.clusterset.local.\t5\tIN\tA\t10.96.0.10"}},
			"service", "A", counts{requests: 1, noerror: 1, import_: 1}},
		{"no such name", l, answerCase{name: "nope.default.svc.clusterset.local.", qtype: dns.TypeAAAA, rcode: dns.RcodeNameError, ns: []string{soa}},
			"service", "AAAA", counts{requests: 1, nxdomain: 1}},
		{"no data, a type not counted by name", l, answerCase{name: "web.default.svc.clusterset.local.", qtype: dns.TypeMX, ns: []string{soa}},
			"service", "other", counts{requests: 1, noerror: 1}},
		{"not synced", &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: unsynced}, answerCase{name: "web.default.svc.clusterset.local.", qtype: dns.TypeSRV, rcode: dns.RcodeServerFailure, ns: []string{soa}},
			"service", "SRV", counts{requests: 1, servfail: 1}},
		{"passed on", &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: fixture(t), Fall: fall.Root, Next: test.NextHandler(dns.RcodeBadCookie, nil)},
			answerCase{name: "nope.default.svc.clusterset.local.", qtype: dns.TypeTXT, rcode: dns.RcodeBadCookie},
			"service", "TXT", counts{requests: 1}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			before := readCounts(tc.kind, tc.qtype)
			check(t, tc.l, tc.q)
			if got := readCounts(tc.kind, tc.qtype).minus(before); got != tc.want {
				t.Errorf("series moved by %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The failure counter's label is the resource of the request's URL path.
func TestResourceOf(t *testing.T) {
	for path, want := range map[string]string{
		"/apis/multicluster.x-k8s.io/v1beta1/serviceimports":               "serviceimports",
		"/apis/discovery.k8s.io/v1/endpointslices":                         "endpointslices",
		"/apis/strait.dev/v1alpha1/namespaces/strait-system/gateways":      "gateways",
		"/apis/strait.dev/v1alpha1/namespaces/strait-system/gateways/gw-1": "gateways",
		"/api/v1/namespaces/default/services":                              "other",
	} {
		if got := resourceOf(path); got != want {
			t.Errorf("resourceOf(%q) = %q, want %q", path, got, want)
		}
	}
}
