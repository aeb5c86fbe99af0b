package dnsref

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"strait.dev/strait/lighthouse"
	"strait.dev/strait/test/corednstest"
	"strait.dev/strait/test/kubetest"
)

// refCase is one question and what stock CoreDNS answers (want), rendered
// by answer(). kep says how that differs from KEP-1645's DNS specification
// (specification.md of the KEP), empty where stock follows it or the KEP
// says nothing. strait is what strait-dns answers where that is not the
// same as stock; both servers are asked every question.
type refCase struct {
	name   string // relative to the zone ("" for the apex); absolute if it ends in "."
	qtype  uint16
	want   string
	kep    string
	strait string
}

// The objects of the test, in namespace ns, as Lighthouse writes them in an
// importing cluster c1 (ServiceImports through v1beta1, EndpointSlices by
// lighthouse.ImportedSlice):
//
//	web      ClusterSetIP 10.42.0.10; ports http/TCP/80, dns/UDP/53 and an
//	         unnamed TCP/8080; two ready endpoints from c2
//	dual     ClusterSetIP 10.42.0.11 and fd00:42::11; http/TCP/80
//	pending  ClusterSetIP without an IP yet
//	db       Headless; http/TCP/80; from c2 db-0 10.1.2.10 ready, an
//	         endpoint without hostname 10.1.2.11 ready, db-2 10.1.2.12 not
//	         ready; from c3 db-0 fd00:1::10 ready; from the two-label
//	         cluster ID east.prod db-1 10.1.3.10 ready
//	idle     Headless; from c2 only a not-ready endpoint
//	local    an ordinary Service (ClusterIP 10.0.0.50), not exported
const ns = "ref"

var cases = []refCase{
	{"dns-version", dns.TypeTXT, `NOERROR: TXT "1.1.0" ttl=28800`,
		"KEP 2.2: dns-version.clusterset.local is 1.0.0, the MCS DNS schema; stock answers the cluster-local schema's 1.1.0 in every zone",
		`NOERROR: TXT "1.0.0" ttl=5`},

	// ClusterSetIP.
	{"web.ref.svc", dns.TypeA, "NOERROR: A 10.42.0.10 ttl=5", "", ""},
	{"web.ref.svc", dns.TypeAAAA, "NOERROR, no answer, SOA", "", ""},
	{"dual.ref.svc", dns.TypeA, "NOERROR: A 10.42.0.11 ttl=5", "", ""},
	{"dual.ref.svc", dns.TypeAAAA, "NOERROR: AAAA fd00:42::11 ttl=5", "", ""},
	{"pending.ref.svc", dns.TypeA, "NOERROR, no answer, SOA", "", ""},
	{"_http._tcp.web.ref.svc", dns.TypeSRV, "NOERROR: SRV 0 100 80 web.ref.svc.clusterset.local. ttl=5 | extra web.ref.svc.clusterset.local. A 10.42.0.10", "", ""},
	{"_dns._udp.web.ref.svc", dns.TypeSRV, "NOERROR: SRV 0 100 53 web.ref.svc.clusterset.local. ttl=5 | extra web.ref.svc.clusterset.local. A 10.42.0.10", "", ""},
	{"_http._udp.web.ref.svc", dns.TypeSRV, "NXDOMAIN, SOA", "", ""},
	{"web.ref.svc", dns.TypeSRV, "NOERROR: SRV 0 33 53 web.ref.svc.clusterset.local. ttl=5, SRV 0 33 80 web.ref.svc.clusterset.local. ttl=5, SRV 0 33 8080 web.ref.svc.clusterset.local. ttl=5 | extra web.ref.svc.clusterset.local. A 10.42.0.10",
		"the KEP defines SRV only under _port._proto names, and none for unnamed ports; stock answers the bare name with every port, the unnamed 8080 too (strait-dns too)", ""},
	{"c2.web.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	{"10-1-1-10.c2.web.ref.svc", dns.TypeA, "NOERROR: A 10.1.1.10 ttl=5",
		"the KEP defines <hostname>.<clusterid> names only for headless services (2.4.1); stock answers them for a ClusterSetIP service's endpoints as well, bypassing the clusterset IP",
		"NXDOMAIN, SOA"},
	{"web.ref.svc", dns.TypeTXT, "NOERROR, no answer, SOA", "", ""},
	{"web.ref.svc", dns.TypeANY, "NOERROR, no answer, SOA", "", "NOERROR: A 10.42.0.10 ttl=5"},

	// Headless.
	{"db.ref.svc", dns.TypeA, "NOERROR: A 10.1.2.10 ttl=5, A 10.1.2.11 ttl=5, A 10.1.3.10 ttl=5", "", ""},
	{"db.ref.svc", dns.TypeAAAA, "NOERROR: AAAA fd00:1::10 ttl=5", "", ""},
	{"db-0.c2.db.ref.svc", dns.TypeA, "NOERROR: A 10.1.2.10 ttl=5", "", ""},
	{"db-0.c3.db.ref.svc", dns.TypeAAAA, "NOERROR: AAAA fd00:1::10 ttl=5", "", ""},
	{"10-1-2-11.c2.db.ref.svc", dns.TypeA, "NOERROR: A 10.1.2.11 ttl=5", "", ""},
	{"db-2.c2.db.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	{"db-1.east.prod.db.ref.svc", dns.TypeA, "NXDOMAIN, SOA",
		"a cluster ID of two labels (east.prod; KEP-2149 allows a DNS subdomain) gets no name: stock's parseRequest takes exactly one label between hostname and service",
		"NOERROR: A 10.1.3.10 ttl=5"},
	{"c2.db.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	{"_http._tcp.db.ref.svc", dns.TypeSRV, "NOERROR: " + strings.Join([]string{
		"SRV 0 25 80 10-1-2-11.c2.db.ref.svc.clusterset.local. ttl=5",
		"SRV 0 25 80 db-0.c2.db.ref.svc.clusterset.local. ttl=5",
		"SRV 0 25 80 db-0.c3.db.ref.svc.clusterset.local. ttl=5",
		"SRV 0 25 80 db-1.east.prod.db.ref.svc.clusterset.local. ttl=5",
	}, ", ") + " | " + strings.Join([]string{
		"extra 10-1-2-11.c2.db.ref.svc.clusterset.local. A 10.1.2.11",
		"extra db-0.c2.db.ref.svc.clusterset.local. A 10.1.2.10",
		"extra db-0.c3.db.ref.svc.clusterset.local. AAAA fd00:1::10",
		"extra db-1.east.prod.db.ref.svc.clusterset.local. A 10.1.3.10",
	}, ", "),
		"the target db-1.east.prod.db... of the two-label cluster is one stock itself answers NXDOMAIN (case above)", ""},
	{"idle.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},

	// Names that do not exist.
	{"nothere.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	{"web.nothere.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	{"local.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	{"web.ref.svc.clusterset.local.ref.svc", dns.TypeA, "NXDOMAIN, SOA", "", ""},
	// A search-path name in cluster.local: strait-dns is not asked such
	// names in a cluster, only the cluster's DNS is.
	{"web.ref.svc.clusterset.local.ref.svc.cluster.local.", dns.TypeA, "NXDOMAIN, SOA", "", "REFUSED"},
	{"ref.svc", dns.TypeA, "NOERROR, no answer, SOA", "", ""},
	{"svc", dns.TypeA, "NOERROR, no answer, SOA", "", ""},
	{"", dns.TypeSOA, "NOERROR: SOA ttl=5", "", ""},

	// Case.
	{"WEB.Ref.SVC", dns.TypeA, "NOERROR: A 10.42.0.10 ttl=5", "", ""},

	// The same server's cluster.local zone (strait-dns has none: the
	// cluster's own DNS answers cluster.local and forwards clusterset.local).
	{"local.ref.svc.cluster.local.", dns.TypeA, "NOERROR: A 10.0.0.50 ttl=5", "", "REFUSED"},
}

func TestStockMulticluster(t *testing.T) {
	stock, err := corednstest.StockBinary()
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.New(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Stock reads ServiceImports through multicluster.x-k8s.io/v1alpha1
	// (plugin/kubernetes/controller.go); our CRD must still serve it, or
	// stock never syncs.
	ext, err := apiextclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crd, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "serviceimports.multicluster.x-k8s.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, v := range crd.Spec.Versions {
		served[v.Name] = v.Served
	}
	if !served["v1alpha1"] || !served["v1beta1"] {
		t.Fatalf("ServiceImport CRD serves %v; stock CoreDNS reads v1alpha1, Lighthouse writes v1beta1", served)
	}

	load(ctx, t, env)
	dir := t.TempDir()
	stockSrv, err := corednstest.Start(ctx, corednstest.Options{
		Name: "stock-multicluster", Binary: stock, Dir: dir,
		Corefile: func(port, readyPort int) string {
			// The README's "Configure multicluster" example.
			return fmt.Sprintf(`cluster.local:%[1]d clusterset.local:%[1]d {
    bind 127.0.0.1
    ready 127.0.0.1:%[2]d
    kubernetes cluster.local clusterset.local {
        kubeconfig %[3]s
        multicluster clusterset.local
    }
}
`, port, readyPort, env.Kubeconfig)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stockSrv.Stop)
	straitSrv, err := corednstest.Start(ctx, corednstest.Options{
		Name: "strait-dns", Binary: buildStraitDNS(t), Dir: dir,
		Corefile: func(port, readyPort int) string {
			return fmt.Sprintf(`clusterset.local:%[1]d {
    bind 127.0.0.1
    ready 127.0.0.1:%[2]d
    lighthouse {
        kubeconfig %[3]s
        cluster-id c1
    }
}
`, port, readyPort, env.Kubeconfig)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(straitSrv.Stop)

	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(t *testing.T, addr, qname string, qtype uint16) string {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		return answer(r, qname)
	}
	for _, tc := range cases {
		qname := tc.name
		switch {
		case qname == "":
			qname = "clusterset.local."
		case !strings.HasSuffix(qname, "."):
			qname += ".clusterset.local."
		}
		t.Run(dns.TypeToString[tc.qtype]+" "+qname, func(t *testing.T) {
			got := ask(t, stockSrv.Addr, qname, tc.qtype)
			t.Logf("stock answers %s", got)
			if got != tc.want {
				t.Errorf("stock answers\n  %s\nwant\n  %s", got, tc.want)
			}
			if tc.kep != "" {
				t.Logf("stock differs from the KEP: %s", tc.kep)
			}
			want := tc.strait
			if want == "" {
				want = tc.want
			}
			got = ask(t, straitSrv.Addr, qname, tc.qtype)
			t.Logf("strait-dns answers %s", got)
			if got != want {
				t.Errorf("strait-dns answers\n  %s\nwant\n  %s", got, want)
			}
		})
	}
}

// buildStraitDNS builds cmd/strait-dns into the test's temporary folder:
// the test compares the server of this tree, not whatever was built last.
func buildStraitDNS(t *testing.T) string {
	t.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "strait-dns")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/strait-dns")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/strait-dns: %v\n%s", err, out)
	}
	return bin
}

// answer renders a reply: the rcode, then the answers (owner name only
// where it is not the question's; SOA without its serial, which is a
// timestamp), then the additional records, sorted.
func answer(r *dns.Msg, qname string) string {
	rdata := func(rr dns.RR) string {
		if _, ok := rr.(*dns.SOA); ok {
			return "SOA"
		}
		return dns.TypeToString[rr.Header().Rrtype] + " " + strings.TrimPrefix(rr.String(), rr.Header().String())
	}
	var ans, extra []string
	for _, rr := range r.Answer {
		s := rdata(rr) + fmt.Sprintf(" ttl=%d", rr.Header().Ttl)
		if !strings.EqualFold(rr.Header().Name, qname) {
			s = rr.Header().Name + " " + s
		}
		ans = append(ans, s)
	}
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		extra = append(extra, "extra "+rr.Header().Name+" "+rdata(rr))
	}
	slices.Sort(ans)
	slices.Sort(extra)
	out := dns.RcodeToString[r.Rcode]
	if r.Truncated {
		out += ", truncated"
	}
	if len(ans) > 0 {
		out += ": " + strings.Join(ans, ", ")
	} else if r.Rcode == dns.RcodeSuccess {
		out += ", no answer"
	}
	if len(ans) == 0 && len(r.Ns) > 0 {
		if _, ok := r.Ns[0].(*dns.SOA); ok {
			out += ", SOA"
		}
	}
	if len(extra) > 0 {
		out += " | " + strings.Join(extra, ", ")
	}
	return out
}

// endpoint is one endpoint of an exported slice.
type endpoint struct {
	ip, hostname string
	ready        bool
}

// load writes the test's objects.
func load(ctx context.Context, t *testing.T, env *kubetest.Env) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	mcs, err := mcsclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{ns, "strait-system"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	port := func(name string, proto corev1.Protocol, n int32) mcsv1beta1.ServicePort {
		return mcsv1beta1.ServicePort{Name: name, Protocol: proto, Port: n}
	}
	http := port("http", corev1.ProtocolTCP, 80)
	imports := []struct {
		name   string
		typ    mcsv1beta1.ServiceImportType
		ips    []string
		ports  []mcsv1beta1.ServicePort
		slices map[string][]endpoint // by source cluster
	}{
		{"web", mcsv1beta1.ClusterSetIP, []string{"10.42.0.10"}, []mcsv1beta1.ServicePort{http, port("dns", corev1.ProtocolUDP, 53), port("", corev1.ProtocolTCP, 8080)},
			map[string][]endpoint{"c2": {{"10.1.1.10", "", true}, {"10.1.1.11", "", true}}}},
		{"dual", mcsv1beta1.ClusterSetIP, []string{"10.42.0.11", "fd00:42::11"}, []mcsv1beta1.ServicePort{http}, nil},
		{"pending", mcsv1beta1.ClusterSetIP, nil, []mcsv1beta1.ServicePort{http}, nil},
		{"db", mcsv1beta1.Headless, nil, []mcsv1beta1.ServicePort{http}, map[string][]endpoint{
			"c2":        {{"10.1.2.10", "db-0", true}, {"10.1.2.11", "", true}, {"10.1.2.12", "db-2", false}},
			"c3":        {{"fd00:1::10", "db-0", true}},
			"east.prod": {{"10.1.3.10", "db-1", true}},
		}},
		{"idle", mcsv1beta1.Headless, nil, []mcsv1beta1.ServicePort{http}, map[string][]endpoint{"c2": {{"10.1.4.10", "", false}}}},
	}
	for _, im := range imports {
		si := &mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: im.name},
			Spec:       mcsv1beta1.ServiceImportSpec{Type: im.typ, IPs: im.ips, Ports: im.ports},
		}
		created, err := mcs.MulticlusterV1beta1().ServiceImports(ns).Create(ctx, si, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create ServiceImport %s: %v", im.name, err)
		}
		owner := metav1.OwnerReference{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport", Name: created.Name, UID: created.UID}
		for cluster, eps := range im.slices {
			local := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: im.name + "-x1"},
				AddressType: discoveryv1.AddressTypeIPv4,
			}
			for _, p := range im.ports {
				local.Ports = append(local.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.Port)})
			}
			for _, ep := range eps {
				if strings.Contains(ep.ip, ":") {
					local.AddressType = discoveryv1.AddressTypeIPv6
				}
				e := discoveryv1.Endpoint{Addresses: []string{ep.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ep.ready)}}
				if ep.hostname != "" {
					e.Hostname = ptr.To(ep.hostname)
				}
				local.Endpoints = append(local.Endpoints, e)
			}
			rec := lighthouse.SliceRecord(local, im.name, cluster, "strait-system")
			sl := lighthouse.ImportedSlice(rec, "c1", im.typ == mcsv1beta1.ClusterSetIP, owner)
			sl.TypeMeta = metav1.TypeMeta{}
			if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create EndpointSlice %s: %v", sl.Name, err)
			}
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "local"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.0.0.50", Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
