package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// digResult is what dig printed: the status and the answer and authority
// sections, each record as its whitespace-separated fields.
type digResult struct {
	status    string
	answer    [][]string
	authority [][]string
	raw       string
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z]+)`)
)

// dig asks the cluster's DNS (the pod's resolv.conf: kube-dns) from
// cluster's tools pod, one try of two seconds.
func dig(t *testing.T, cluster, ns string, args ...string) digResult {
	t.Helper()
	r := kubectl(t, cluster, append([]string{"exec", "-n", ns, "tools", "--", "dig", "+tries=1", "+timeout=2"}, args...)...)
	res := digResult{raw: r.stdout + r.stderr}
	if m := digStatus.FindStringSubmatch(r.stdout); m != nil {
		res.status = m[1]
	}
	var sec *[][]string
	for line := range strings.Lines(r.stdout) {
		line = strings.TrimSpace(line)
		switch {
		case line == ";; ANSWER SECTION:":
			sec = &res.answer
		case line == ";; AUTHORITY SECTION:":
			sec = &res.authority
		case line == "" || strings.HasPrefix(line, ";"):
			sec = nil
		case sec != nil:
			*sec = append(*sec, strings.Fields(line))
		}
	}
	return res
}

// dnsPath shows what a clusterset.local query goes through in cluster, for a
// failure message: whether kube-dns answers a cluster.local name, and the
// DNS pods' readiness and Service endpoints (kube-dns and strait-dns).
func dnsPath(t *testing.T, cluster, ns string) string {
	t.Helper()
	local := dig(t, cluster, ns, "kubernetes.default.svc.cluster.local.", "A")
	pods := kubectl(t, cluster, "get", "pods", "-A", "-o", "wide")
	eps := kubectl(t, cluster, "get", "endpointslices", "-A", "-o", "wide")
	return fmt.Sprintf("kubernetes.default through kube-dns: %s %q\n%s\n%s%s", local.status, local.rdata(), pods.stdout, eps.stdout, eps.stderr)
}

// rdata lists the records' data (the fields after the type), sorted.
func (d digResult) rdata() []string {
	var out []string
	for _, f := range d.answer {
		if len(f) > 4 {
			out = append(out, strings.Join(f[4:], " "))
		}
	}
	slices.Sort(out)
	return out
}

// TestClusterSetDNS resolves clusterset.local names from a pod as an
// application does: through the cluster's own CoreDNS (kube-dns), which
// straitctl join made forward the zone to strait-dns. Every kind of answer
// the MCS DNS specification defines is checked, then a pod connects by
// name, a cluster whose gateways go leaves the headless answers, and a
// flood of garbage leaves strait-dns answering.
func TestClusterSetDNS(t *testing.T) {
	need(t)
	joinClusterSet(t)
	const ns = "dns-e2e"
	mcsNamespace(t, ns, mcsClusters...)

	// c2 serves web (ClusterSetIP; TCP and UDP port 42 besides http);
	// c2 and c3 serve the headless db, c2's pod with a hostname, c3's
	// without.
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
			{Name: "tcp42", Port: 42, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
			{Name: "udp42", Port: 42, TargetPort: intstr.FromInt32(9001), Protocol: corev1.ProtocolUDP},
		}},
	}
	db := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		}},
	}
	server := func(name, app, hostname string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64(1)),
				Containers: []corev1.Container{testpodContainer("c", "serve")}},
		}
		if hostname != "" {
			p.Spec.Hostname, p.Spec.Subdomain = hostname, "db"
		}
		return p
	}
	createService(t, "c2", ns, web)
	createService(t, "c2", ns, db)
	createService(t, "c3", ns, db.DeepCopy())
	createRunning(t, "c2", kubeClient(t, "c2"), ns, server("srv-c2", "web", ""), server("db-c2", "db", "db-0"))
	createRunning(t, "c3", kubeClient(t, "c3"), ns, server("db-c3", "db", ""))
	createRunning(t, "c1", kubeClient(t, "c1"), ns, toolPod("tools"))
	podIP := func(cluster, name string) string {
		p, err := kubeClient(t, cluster).CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Status.PodIP
	}
	dbC2, dbC3 := podIP("c2", "db-c2"), podIP("c3", "db-c3")
	exportService(t, "c2", ns, "web", nil)
	exportService(t, "c2", ns, "db", nil)
	exportService(t, "c3", ns, "db", nil)
	webIP := waitImport(t, "c1", ns, "web", "with an IP", func(si *mcsv1beta1.ServiceImport) bool { return len(si.Spec.IPs) == 1 }).Spec.IPs[0]
	waitImport(t, "c1", ns, "db", "headless from c2 and c3", func(si *mcsv1beta1.ServiceImport) bool {
		return si.Spec.Type == mcsv1beta1.Headless && slices.Equal(importClusters(si), []string{"c2", "c3"})
	})

	zone := "svc.clusterset.local."
	webName, dbName := "web."+ns+"."+zone, "db."+ns+"."+zone
	// The cluster's CoreDNS reloads the Corefile join changed within
	// seconds of the node agent updating its ConfigMap volume.
	start := time.Now()
	var last digResult
	if err := poll(2*time.Minute, func(context.Context) (bool, error) {
		last = dig(t, "c1", ns, webName, "A")
		return slices.Equal(last.rdata(), []string{webIP}), nil
	}); err != nil {
		t.Fatalf("%s never answered %s through the cluster's DNS:\n%s\n%s", webName, webIP, last.raw, dnsPath(t, "c1", ns))
	}
	t.Logf("%s answered through kube-dns %v after both imports existed", webName, time.Since(start).Round(time.Millisecond))
	waitFor(t, time.Minute, "both of db's endpoints in the answer", func(context.Context) (bool, error) {
		return slices.Equal(dig(t, "c1", ns, dbName, "A").rdata(), sortedOf(dbC2, dbC3)), nil
	})

	dashed := strings.ReplaceAll(dbC3, ".", "-")
	for _, tc := range []struct {
		args   []string
		status string
		rdata  []string
		soa    bool // an SOA in the authority section
	}{
		{args: []string{webName, "A"}, status: "NOERROR", rdata: []string{webIP}},
		// The sandbox is IPv4: AAAA is NODATA, never NXDOMAIN.
		{args: []string{webName, "AAAA"}, status: "NOERROR", soa: true},
		{args: []string{"_http._tcp." + webName, "SRV"}, status: "NOERROR", rdata: []string{"0 100 80 " + webName}},
		// The bare name: one SRV per distinct port and target.
		{args: []string{webName, "SRV"}, status: "NOERROR", rdata: []string{"0 33 42 " + webName, "0 33 80 " + webName}},
		{args: []string{"_nope._tcp." + webName, "SRV"}, status: "NXDOMAIN", soa: true},
		{args: []string{dbName, "A"}, status: "NOERROR", rdata: sortedOf(dbC2, dbC3)},
		{args: []string{"db-0.c2." + dbName, "A"}, status: "NOERROR", rdata: []string{dbC2}},
		{args: []string{dashed + ".c3." + dbName, "A"}, status: "NOERROR", rdata: []string{dbC3}},
		{args: []string{"_http._tcp." + dbName, "SRV"}, status: "NOERROR", rdata: []string{
			"0 50 8080 " + dashed + ".c3." + dbName, "0 50 8080 db-0.c2." + dbName}},
		// <clusterid>.<svc>.<ns>.svc is reserved: no such name.
		{args: []string{"c2." + dbName, "A"}, status: "NXDOMAIN", soa: true},
		{args: []string{"dns-version.clusterset.local.", "TXT"}, status: "NOERROR", rdata: []string{`"1.0.0"`}},
		{args: []string{"nope." + ns + "." + zone, "A"}, status: "NXDOMAIN", soa: true},
		{args: []string{"web.nope." + zone, "A"}, status: "NXDOMAIN", soa: true},
		{args: []string{strings.ToUpper(webName), "A"}, status: "NOERROR", rdata: []string{webIP}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			d := dig(t, "c1", ns, tc.args...)
			if d.status != tc.status || !slices.Equal(d.rdata(), tc.rdata) {
				t.Errorf("status %s, answers %q; want %s, %q\n%s", d.status, d.rdata(), tc.status, tc.rdata, d.raw)
			}
			if hasSOA := len(d.authority) == 1 && len(d.authority[0]) > 3 && d.authority[0][3] == "SOA"; hasSOA != tc.soa {
				t.Errorf("SOA in the authority section: %v, want %v\n%s", hasSOA, tc.soa, d.raw)
			}
			for _, rr := range d.answer {
				if rr[1] != "5" && rr[1] != "4" && rr[1] != "3" {
					t.Errorf("TTL %s, want 5 (or less, from a cache): %v", rr[1], rr)
				}
			}
		})
	}

	t.Run("a pod connects by name", func(t *testing.T) {
		// Through the search list too (ndots:5): nslookup tries the
		// cluster.local suffixes first, each a fast NXDOMAIN.
		r := kubectl(t, "c1", "exec", "-n", ns, "tools", "--", "nslookup", "-timeout=2", "-retry=0", "web."+ns+".svc.clusterset.local")
		if r.code != 0 || !strings.Contains(r.stdout, webIP) {
			t.Errorf("nslookup through the search list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		got, err := httpAnswers(t, "c1", ns, "tools", "web."+ns+".svc.clusterset.local", 80, 1)
		if err != nil || !slices.Equal(got, []string{"srv-c2"}) {
			t.Errorf("curl http://web.%s.svc.clusterset.local/: %v %v", ns, got, err)
		}
	})

	t.Run("c3's gateways gone: its endpoint leaves the headless answers", func(t *testing.T) {
		c1 := ctrlClient(t, "c1")
		for _, n := range []string{"c3-n1", "c3-n2"} {
			setGatewayLabel(t, "c3", n, false)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				for _, n := range []string{"c3-n1", "c3-n2"} {
					setGatewayLabel(t, "c3", n, true)
				}
			}
		}
		t.Cleanup(restore)
		start := time.Now()
		var lost, gone time.Duration
		waitFor(t, 90*time.Second, "c3's endpoint gone from "+dbName, func(ctx context.Context) (bool, error) {
			if lost == 0 && !strings.Contains(connectionsOf(ctx, c1), "c3=connected") {
				lost = time.Since(start)
			}
			if slices.Equal(dig(t, "c1", ns, dbName, "A").rdata(), []string{dbC2}) {
				gone = time.Since(start)
				return true, nil
			}
			return false, nil
		})
		// One poll is a Gateway read and a dig (about a second): when the
		// status changed during the dig, both happened within that poll.
		seen := fmt.Sprintf("after %v", lost.Round(time.Millisecond))
		if lost == 0 {
			seen = "during the same poll"
		}
		t.Logf("c3's gateways stopped; c1's gateway status lost c3 %s, the answer lost c3's endpoint after %v",
			seen, gone.Round(time.Millisecond))
		restore()
		waitFor(t, 2*time.Minute, "c3's endpoint back in "+dbName, func(context.Context) (bool, error) {
			return slices.Equal(dig(t, "c1", ns, dbName, "A").rdata(), sortedOf(dbC2, dbC3)), nil
		})
	})

	t.Run("a flood of garbage leaves strait-dns answering", func(t *testing.T) {
		cs := kubeClient(t, "c1")
		svc, err := cs.CoreV1().Services(v1.ComponentNamespace).Get(context.Background(), "strait-dns", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		createRunning(t, "c1", cs, ns, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "flooder"},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64(1)),
				Containers: []corev1.Container{testpodContainer("c", "sleep")}},
		})
		const count = 20000
		r := kubectl(t, "c1", "exec", "-n", ns, "flooder", "--", testpodProgram, "dns-flood",
			"--server", svc.Spec.ClusterIP+":53", "--count", fmt.Sprint(count))
		t.Logf("dns-flood: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("dns-flood failed")
		}
		var rep map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &rep); err != nil {
			t.Fatalf("dns-flood report: %v", err)
		}
		if d := dig(t, "c1", ns, webName, "A"); !slices.Equal(d.rdata(), []string{webIP}) {
			t.Errorf("after the flood: %q\n%s", d.rdata(), d.raw)
		}
		pods, err := cs.CoreV1().Pods(v1.ComponentNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=dns"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			for _, st := range p.Status.ContainerStatuses {
				if st.RestartCount != 0 {
					t.Errorf("%s restarted %d times", p.Name, st.RestartCount)
				}
			}
		}
	})
}

func sortedOf(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
