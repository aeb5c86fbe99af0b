package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/test/kubetest"
)

// TestCoreDNS runs the real CoreDNS binary that "make kube-binaries" builds,
// with the cluster's Corefile on loopback ports, against a real apiserver
// where the manifests were applied, as the coredns ServiceAccount (so the
// ClusterRole is proven enough), and asks it what pods ask.
func TestCoreDNS(t *testing.T) {
	bin, err := kubetest.BinDir()
	if err != nil {
		t.Skipf("no Kubernetes binaries: %v", err)
	}
	corednsBin := filepath.Join(bin, "coredns")
	if _, err := os.Stat(corednsBin); err != nil {
		t.Skipf("no CoreDNS binary (%v): run 'make kube-binaries'", err)
	}
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The manifests apply to a real apiserver, twice (idempotent), and the
	// Service takes the address asked for.
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dnsIP := netip.MustParseAddr("10.0.0.10") // the tenth address of kubetest's service range
	cs := kubernetes.NewForConfigOrDie(env.Config)
	var versions []string
	for range 2 {
		if err := Apply(ctx, c, Values{DNSServiceIP: dnsIP}); err != nil {
			t.Fatal(err)
		}
		d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, DeploymentName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, d.ResourceVersion)
	}
	if versions[0] != versions[1] {
		t.Errorf("applying again changed the Deployment (resourceVersion %s, then %s)", versions[0], versions[1])
	}
	// The pods the ReplicaSet controller will make pass admission (priority
	// class, service account, validation); no controller runs here, so the
	// test asks for one, as a dry run.
	d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, DeploymentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: d.Spec.Template.ObjectMeta, Spec: d.Spec.Template.Spec}
	pod.GenerateName = DeploymentName + "-"
	admitted, err := cs.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("a coredns pod is not admitted: %v", err)
	}
	if admitted.Spec.Priority == nil || *admitted.Spec.Priority < 2_000_000_000 {
		t.Errorf("coredns pod priority %v, want system-cluster-critical's (2000000000)", admitted.Spec.Priority)
	}
	kubeDNS, err := cs.CoreV1().Services(Namespace).Get(ctx, ServiceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if kubeDNS.Spec.ClusterIP != dnsIP.String() {
		t.Fatalf("kube-dns cluster IP %s, want %s", kubeDNS.Spec.ClusterIP, dnsIP)
	}

	// What the records come from: a Service with a cluster IP and a headless
	// one whose EndpointSlice names two pods (no controller manager runs, so
	// the test writes the slice as the EndpointSlice controller would).
	objs := []struct {
		create func() error
		what   string
	}{
		{func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{})
			return err
		}, "namespace"},
		{func() error {
			_, err := cs.CoreV1().Services("demo").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": "web"},
					Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
				},
			}, metav1.CreateOptions{})
			return err
		}, "service web"},
		{func() error {
			_, err := cs.CoreV1().Services("demo").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "db"},
				Spec: corev1.ServiceSpec{
					ClusterIP: corev1.ClusterIPNone,
					Selector:  map[string]string{"app": "db"},
					Ports:     []corev1.ServicePort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}},
				},
			}, metav1.CreateOptions{})
			return err
		}, "service db"},
		{func() error {
			endpoint := func(ip, host string) discoveryv1.Endpoint {
				return discoveryv1.Endpoint{
					Addresses:  []string{ip},
					Hostname:   ptr.To(host),
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				}
			}
			_, err := cs.DiscoveryV1().EndpointSlices("demo").Create(ctx, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{
					discoveryv1.LabelServiceName: "db",
					discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
				}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   []discoveryv1.Endpoint{endpoint("10.1.1.5", "db-0"), endpoint("10.1.2.6", "db-1")},
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](5432), Protocol: ptr.To(corev1.ProtocolTCP)}},
			}, metav1.CreateOptions{})
			return err
		}, "endpointslice db"},
	}
	for _, o := range objs {
		if err := o.create(); err != nil {
			t.Fatalf("create %s: %v", o.what, err)
		}
	}
	web, err := cs.CoreV1().Services("demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// CoreDNS as the coredns ServiceAccount, with the cluster's Corefile
	// but for its ports and the kubeconfig.
	dir := t.TempDir()
	saConfig, err := env.ServiceAccountConfig(ctx, Namespace, "coredns")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := kubetest.WriteKubeconfig(kubeconfig, saConfig, "coredns"); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 5)
	health := fmt.Sprintf("127.0.0.1:%d", ports[1])
	ready := fmt.Sprintf("127.0.0.1:%d", ports[2])
	metrics := fmt.Sprintf("127.0.0.1:%d", ports[3])
	corefile, err := Corefile(CorefileOptions{
		Port: ports[0], Kubeconfig: kubeconfig,
		HealthAddr: health, ReadyAddr: ready, MetricsAddr: metrics, StandInPort: ports[4],
	})
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "coredns.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(corednsBin, "-conf", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// CoreDNS must not outlive the test, even if the test binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("coredns log:\n%s", data)
		}
	})

	// /ready answers 200 once the kubernetes plugin has synced with the
	// apiserver; the records are only complete from then on.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("coredns exited: %v", err)
		default:
		}
		code, _ := httpGet(ctx, "http://"+ready+"/ready")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("coredns not ready: %v", err)
	}
	t.Logf("coredns ready %v after start", time.Since(start).Round(time.Millisecond))
	// /ready can answer a moment before the DNS listeners open: the plugins
	// start before the servers. Wait for the first answer too.
	server := fmt.Sprintf("127.0.0.1:%d", ports[0])
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		m := new(dns.Msg)
		m.SetQuestion("kube-dns.kube-system.svc.cluster.local.", dns.TypeA)
		_, _, err := (&dns.Client{Timeout: time.Second}).ExchangeContext(ctx, m, server)
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("coredns ready but not answering on %s: %v", server, err)
	}
	t.Logf("coredns answering %v after start", time.Since(start).Round(time.Millisecond))
	if code, body := httpGet(ctx, "http://"+health+"/health"); code != http.StatusOK || body != "OK" {
		t.Errorf("/health: %d %q, want 200 OK", code, body)
	}

	tests := []struct {
		name  string
		qtype uint16
		net   string // "udp" or "tcp"
		rcode int
		want  []string // the answer section, as dns.RR.String() without TTLs, sorted
	}{
		{"web.demo.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess,
			[]string{"web.demo.svc.cluster.local. IN A " + web.Spec.ClusterIP}},
		{"web.demo.svc.cluster.local.", dns.TypeA, "tcp", dns.RcodeSuccess,
			[]string{"web.demo.svc.cluster.local. IN A " + web.Spec.ClusterIP}},
		{"kube-dns.kube-system.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess,
			[]string{"kube-dns.kube-system.svc.cluster.local. IN A 10.0.0.10"}},
		{"_http._tcp.web.demo.svc.cluster.local.", dns.TypeSRV, "udp", dns.RcodeSuccess,
			[]string{"_http._tcp.web.demo.svc.cluster.local. IN SRV 0 100 80 web.demo.svc.cluster.local."}},
		// A headless Service: one A record per ready endpoint, and a name for
		// each endpoint's hostname.
		{"db.demo.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess,
			[]string{"db.demo.svc.cluster.local. IN A 10.1.1.5", "db.demo.svc.cluster.local. IN A 10.1.2.6"}},
		{"db-1.db.demo.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess,
			[]string{"db-1.db.demo.svc.cluster.local. IN A 10.1.2.6"}},
		{"_pg._tcp.db.demo.svc.cluster.local.", dns.TypeSRV, "udp", dns.RcodeSuccess, []string{
			"_pg._tcp.db.demo.svc.cluster.local. IN SRV 0 50 5432 db-0.db.demo.svc.cluster.local.",
			"_pg._tcp.db.demo.svc.cluster.local. IN SRV 0 50 5432 db-1.db.demo.svc.cluster.local.",
		}},
		// Reverse lookups of a cluster IP and of a headless endpoint.
		{reverse(t, web.Spec.ClusterIP), dns.TypePTR, "udp", dns.RcodeSuccess,
			[]string{reverse(t, web.Spec.ClusterIP) + " IN PTR web.demo.svc.cluster.local."}},
		{reverse(t, "10.1.1.5"), dns.TypePTR, "udp", dns.RcodeSuccess,
			[]string{reverse(t, "10.1.1.5") + " IN PTR db-0.db.demo.svc.cluster.local."}},
		// "pods insecure": a pod's dashed address answers without a lookup.
		{"10-1-2-3.demo.pod.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess,
			[]string{"10-1-2-3.demo.pod.cluster.local. IN A 10.1.2.3"}},
		// Negative answers: in the cluster zone from the kubernetes plugin;
		// outside it, and for addresses outside the cluster, from the
		// stand-in upstream through forward.
		{"nope.demo.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{"example.com.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{"example.com.", dns.TypeAAAA, "tcp", dns.RcodeNameError, nil},
		{"web.demo.svc.cluster.local.example.com.", dns.TypeA, "udp", dns.RcodeNameError, nil},
		{reverse(t, "192.0.2.1"), dns.TypePTR, "udp", dns.RcodeNameError, nil},
	}
	for _, tc := range tests {
		t.Run(dns.TypeToString[tc.qtype]+"/"+tc.net+"/"+tc.name, func(t *testing.T) {
			// A negative answer that waited out an upstream's timeout would
			// fail here: one second is the whole budget, with no retry.
			dc := &dns.Client{Net: tc.net, Timeout: time.Second}
			m := new(dns.Msg)
			m.SetQuestion(tc.name, tc.qtype)
			r, rtt, err := dc.ExchangeContext(ctx, m, server)
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if r.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s (rtt %v)", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode], rtt)
			}
			var got []string
			for _, rr := range r.Answer {
				rr.Header().Ttl = 0
				got = append(got, strings.Replace(rr.String(), "\t0\tIN\t", " IN ", 1))
			}
			for i := range got {
				got[i] = strings.Join(strings.Fields(got[i]), " ")
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("answer %q, want %q", got, tc.want)
			}
			// A name error carries an SOA, so that it may be cached
			// (RFC 2308).
			if tc.rcode == dns.RcodeNameError {
				if len(r.Ns) == 0 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
					t.Errorf("name error without an SOA in the authority section: %v", r.Ns)
				}
			}
		})
	}

	// The metrics endpoint counts what was asked.
	if code, body := httpGet(ctx, "http://"+metrics+"/metrics"); code != http.StatusOK || !strings.Contains(body, "coredns_dns_requests_total") {
		t.Errorf("/metrics: %d, coredns_dns_requests_total missing", code)
	}
}

// reverse is the in-addr.arpa name of an IPv4 address.
func reverse(t *testing.T, ip string) string {
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func httpGet(ctx context.Context, url string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// freePorts returns n loopback ports that are free for both TCP and UDP now.
// They are held until all are found, so that the n differ.
func freePorts(t *testing.T, n int) []int {
	var ports []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, u)
		ports = append(ports, port)
	}
	return ports
}
