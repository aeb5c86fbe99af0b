package coredns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/metrics"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// hangBound only turns a hang into a failure; how fast things happen is
// measured by make bench-dns, not here.
const hangBound = 30 * time.Second

// freePort returns a loopback port free for TCP and UDP now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs CoreDNS's real server with the plugin on a loopback
// port, its client configuration from kubeconfig, and returns the address;
// with metrics set, prometheus serves there too.
func startServer(t *testing.T, kubeconfig, metrics string) string {
	t.Helper()
	port := freePort(t)
	dnsserver.Directives = Directives
	prom := ""
	if metrics != "" {
		prom = "prometheus " + metrics + "\n"
	}
	corefile := fmt.Sprintf("clusterset.local:%d {\n bind 127.0.0.1\n %s lighthouse {\n  kubeconfig %s\n  cluster-id c1\n }\n}\n", port, prom, kubeconfig)
	inst, err := caddy.Start(caddy.CaddyfileInput{Contents: []byte(corefile), Filepath: "Corefile", ServerTypeName: "dns"})
	if err != nil {
		t.Fatalf("start CoreDNS: %v", err)
	}
	t.Cleanup(func() { _ = inst.Stop() })
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// ask sends one question over network ("udp" or "tcp"), with an EDNS0
// buffer size when bufsize > 0.
func ask(t *testing.T, addr, network, name string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

// addrs are the A and AAAA answers of r.
func addrs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch a := rr.(type) {
		case *dns.A:
			out = append(out, a.A.String())
		case *dns.AAAA:
			out = append(out, a.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// waitFor asks until ok holds for the answer, and returns how long it took.
func waitFor(t *testing.T, addr, name string, qtype uint16, what string, ok func(*dns.Msg) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := ask(t, addr, "udp", name, qtype, 0)
		if ok(r) {
			return time.Since(start)
		}
		if time.Since(start) > hangBound {
			t.Fatalf("%s: still %s after %v:\n%v", name, what, hangBound, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServer runs the plugin in CoreDNS's server against a real apiserver:
// answers over UDP and TCP from objects as Lighthouse writes them,
// truncation and EDNS0, health, deletes, and SERVFAIL while the apiserver
// is away before the first sync.
func TestServer(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{})
	ctx := t.Context()
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	create := func(obj client.Object) {
		t.Helper()
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}
	create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}})
	create(serviceImport("web", mcsv1beta1.ClusterSetIP, []string{"10.96.0.10"}, mcsPort("http", corev1.ProtocolTCP, 80)))
	create(serviceImport("db", mcsv1beta1.Headless, nil, mcsPort("pg", corev1.ProtocolTCP, 5432)))
	pg := slicePort("pg", corev1.ProtocolTCP, 5432)
	create(importedSlice("db", "c1", "db-c1", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{pg}, ep("db-0", true, "10.1.0.5")))
	create(importedSlice("db", "c2", "db-c2", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{pg}, ep("db-0", true, "10.2.0.5")))
	// A headless service with 200 endpoints: more than 512 bytes.
	create(serviceImport("big", mcsv1beta1.Headless, nil, mcsPort("http", corev1.ProtocolTCP, 80)))
	var many []discoveryv1.Endpoint
	for i := range 200 {
		many = append(many, ep(fmt.Sprintf("big-%d", i), true, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)))
	}
	create(importedSlice("big", "c1", "big-c1", discoveryv1.AddressTypeIPv4, nil, many...))
	gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "gw-1"}}
	create(gw)
	setConnection := func(status v1.ConnectionStatus) {
		t.Helper()
		gw.Status = v1.GatewayStatus{HAStatus: v1.HAStatusActive, Connections: []v1.Connection{{ClusterID: "c2", Endpoint: "c2-gw", Status: status}}}
		if err := c.Status().Update(ctx, gw); err != nil {
			t.Fatalf("gateway status: %v", err)
		}
	}
	setConnection(v1.Connected)

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := kubetest.WriteKubeconfig(kubeconfig, env.Config, "test"); err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	addr := startServer(t, kubeconfig, metrics)
	waitFor(t, addr, "web.default.svc.clusterset.local.", dns.TypeA, "not answered", func(r *dns.Msg) bool { return r.Rcode == dns.RcodeSuccess })

	t.Run("clusterset IP over UDP and TCP", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			r := ask(t, addr, network, "web.default.svc.clusterset.local.", dns.TypeA, 0)
			if got := addrs(r); !slices.Equal(got, []string{"10.96.0.10"}) || !r.Authoritative {
				t.Errorf("%s: %v (authoritative %v), want 10.96.0.10", network, got, r.Authoritative)
			}
		}
	})

	t.Run("large answer: TC over UDP, complete over TCP and with EDNS0", func(t *testing.T) {
		r := ask(t, addr, "udp", "big.default.svc.clusterset.local.", dns.TypeA, 0)
		if !r.Truncated || len(r.Answer) >= 200 {
			t.Errorf("UDP without EDNS0: TC %v with %d answers, want TC and fewer than 200", r.Truncated, len(r.Answer))
		}
		r = ask(t, addr, "tcp", "big.default.svc.clusterset.local.", dns.TypeA, 0)
		if r.Truncated || len(r.Answer) != 200 {
			t.Errorf("TCP: TC %v with %d answers, want 200", r.Truncated, len(r.Answer))
		}
		r = ask(t, addr, "udp", "big.default.svc.clusterset.local.", dns.TypeA, 4096)
		if r.Truncated || len(r.Answer) != 200 || r.IsEdns0() == nil {
			t.Errorf("UDP with a 4096-byte EDNS0 buffer: TC %v with %d answers, OPT %v; want 200 and an OPT", r.Truncated, len(r.Answer), r.IsEdns0() != nil)
		}
		r = ask(t, addr, "udp", "big.default.svc.clusterset.local.", dns.TypeA, 1232)
		if !r.Truncated {
			t.Errorf("UDP with a 1232-byte EDNS0 buffer: %d answers without TC", len(r.Answer))
		}
	})

	t.Run("a cluster whose connection fails leaves headless answers", func(t *testing.T) {
		name := "db.default.svc.clusterset.local."
		if got := addrs(ask(t, addr, "udp", name, dns.TypeA, 0)); !slices.Equal(got, []string{"10.1.0.5", "10.2.0.5"}) {
			t.Fatalf("before: %v", got)
		}
		setConnection(v1.ConnectionError)
		gone := waitFor(t, addr, name, dns.TypeA, "answering c2's endpoint", func(r *dns.Msg) bool {
			return slices.Equal(addrs(r), []string{"10.1.0.5"})
		})
		setConnection(v1.Connected)
		back := waitFor(t, addr, name, dns.TypeA, "without c2's endpoint", func(r *dns.Msg) bool {
			return slices.Equal(addrs(r), []string{"10.1.0.5", "10.2.0.5"})
		})
		t.Logf("c2's endpoint left the answers %v after its connection's error was written, and came back %v after the recovery", gone, back)
	})

	t.Run("an import deleted is NXDOMAIN", func(t *testing.T) {
		if err := c.Delete(ctx, &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, addr, "web.default.svc.clusterset.local.", dns.TypeA, "answered", func(r *dns.Msg) bool {
			return r.Rcode == dns.RcodeNameError && len(r.Ns) == 1
		})
	})

	t.Run("metrics", func(t *testing.T) {
		ask(t, addr, "udp", "nope.clusterset.local.", dns.TypeA, 0)
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`coredns_lighthouse_requests_total{kind="service",server="dns://` + addr + `",type="A",zone="clusterset.local."}`,
			`coredns_lighthouse_requests_total{kind="none",server="dns://` + addr + `",type="A",zone="clusterset.local."} 1`,
			`coredns_lighthouse_responses_total{rcode="NXDOMAIN",server="dns://` + addr + `",zone="clusterset.local."}`,
			`coredns_lighthouse_import_answers_total{server="dns://` + addr + `",zone="clusterset.local."}`,
			"coredns_lighthouse_synced 1",
			"coredns_lighthouse_imports ",
			`coredns_dns_requests_total{`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("no %s in /metrics:\n%s", want, grepLines(string(body), "coredns_lighthouse"))
			}
		}
	})

	t.Run("lost sync: the watches fail, the answers stay, the counter counts", func(t *testing.T) {
		before := watchErrorsServed(t, metrics)
		if before != 0 {
			t.Errorf("coredns_lighthouse_watch_errors_total is %v with the apiserver up all along, want 0", before)
		}
		env.StopAPIServer()
		restarted := false
		defer func() {
			if !restarted {
				_ = env.StartAPIServer(context.Background())
			}
		}()
		// The reflectors see their watches end and their relists refused;
		// each failure counts (StraitDNSSyncLost alerts on its rate).
		deadline := time.Now().Add(hangBound)
		for watchErrorsServed(t, metrics) <= before {
			if time.Now().After(deadline) {
				t.Fatalf("coredns_lighthouse_watch_errors_total stayed at %v with the apiserver away", before)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Meanwhile the answers come from the last view.
		if got := addrs(ask(t, addr, "udp", "db.default.svc.clusterset.local.", dns.TypeA, 0)); !slices.Equal(got, []string{"10.1.0.5", "10.2.0.5"}) {
			t.Errorf("with the apiserver away: %v, want the last view's 10.1.0.5 and 10.2.0.5", got)
		}
		if err := env.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		restarted = true
	})

	t.Run("SERVFAIL until the first sync", func(t *testing.T) {
		env.StopAPIServer()
		restarted := false
		defer func() {
			if !restarted {
				_ = env.StartAPIServer(context.Background())
			}
		}()
		second := startServer(t, kubeconfig, "")
		for _, name := range []string{"db.default.svc.clusterset.local.", "nope.default.svc.clusterset.local."} {
			if r := ask(t, second, "udp", name, dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
				t.Errorf("%s with the apiserver away: %s, want SERVFAIL", name, dns.RcodeToString[r.Rcode])
			}
		}
		if err := env.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		restarted = true
		waitFor(t, second, "db.default.svc.clusterset.local.", dns.TypeA, "not answered", func(r *dns.Msg) bool {
			return slices.Equal(addrs(r), []string{"10.1.0.5", "10.2.0.5"})
		})
	})
}

// watchErrorsServed is the sum over types of
// coredns_lighthouse_watch_errors_total, as the prometheus plugin at
// metrics (host:port) serves it; 0 before the first error makes a series.
func watchErrorsServed(t *testing.T, metrics string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, "coredns_lighthouse_watch_errors_total{") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}
