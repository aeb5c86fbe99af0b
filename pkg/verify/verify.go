// Package verify checks a Strait clusterset end to end, as its users rely
// on it, with short-lived test pods: pod to pod in both directions between
// every two clusters, from and to gateway and non-gateway nodes, over TCP
// and UDP; a pod to another cluster's Service through the MCS API (a
// ServiceExport and the ServiceImport's clusterset IP); the Service's
// clusterset.local name; and, when asked, a gateway failover with the gap in
// traffic measured. It is the library of "straitctl verify".
package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/probe"
)

// Check names, as the table prints them.
const (
	CheckGateway    = "active-gateway"
	CheckPodTCP     = "pod-to-pod/tcp"
	CheckPodUDP     = "pod-to-pod/udp"
	CheckImport     = "service-import"
	CheckService    = "service"
	CheckDNS        = "clusterset-dns"
	CheckFailover   = "gateway-failover"
	namespacePrefix = "strait-verify"
	appLabel        = "app.kubernetes.io/name"
	appName         = "strait-verify"
)

// Defaults of Options.
const (
	// DefaultProbeTimeout bounds each probe: a cross-cluster round trip
	// takes milliseconds; seconds only pass when something is broken.
	DefaultProbeTimeout = 3 * time.Second
	// DefaultImportTimeout bounds the wait for a ServiceImport in every
	// other cluster: Lighthouse takes seconds through the broker.
	DefaultImportTimeout = 90 * time.Second
	// DefaultMaxGap is the longest failover gap that passes: Strait's
	// failover takes about a second (docs/gateway-failover.md); ten is
	// broken.
	DefaultMaxGap = 10 * time.Second
	// DefaultParallel probes run at once: the probes are light, the
	// apiserver's exec streams are not free.
	DefaultParallel = 8
	// failoverPing is the UDP probe's interval during the failover: fine
	// enough to measure a sub-second gap.
	failoverPing = 10 * time.Millisecond
	// failoverLead is how long traffic flows before the gateway is
	// deleted, and failoverTail how long after the new one is active.
	failoverLead = 2 * time.Second
	failoverTail = 3 * time.Second
	// failoverReport is how often the probe reports while it runs.
	failoverReport = 100 * time.Millisecond
	// failoverBound bounds the wait for another gateway to become active.
	failoverBound = 60 * time.Second
)

// Options say how to verify.
type Options struct {
	// Image is the test workload's image (probe.DefaultImage).
	Image string
	// Disruptive adds the failover of each cluster's active gateway.
	Disruptive bool
	// ProbeTimeout, ImportTimeout and MaxGap override the defaults when
	// positive.
	ProbeTimeout, ImportTimeout, MaxGap time.Duration
	// Parallel is how many probes run at once; 0 is DefaultParallel.
	Parallel int
	// Log receives progress lines, printf-style; nil drops them.
	Log func(format string, args ...any)
}

// Result is one check between two places.
type Result struct {
	Check string `json:"check"`
	// From and To are "<cluster>/<placement>" (or a cluster alone).
	From   string `json:"from"`
	To     string `json:"to"`
	Result string `json:"result"` // ResultPass, ResultFail or ResultSkip
	Detail string `json:"detail"`
}

// Results of a check.
const (
	ResultPass = "pass"
	ResultFail = "FAIL"
	ResultSkip = "skip"
)

// Report is a whole run.
type Report struct {
	Namespace string   `json:"namespace"`
	Results   []Result `json:"results"`
}

// Failed returns the failed checks.
func (r *Report) Failed() []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Result == ResultFail {
			out = append(out, x)
		}
	}
	return out
}

// Err is nil when no check failed, else an error naming the failed checks.
func (r *Report) Err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = f.Check + " " + f.From
		if f.To != "" && f.To != "-" {
			names[i] += " -> " + f.To
		}
	}
	return fmt.Errorf("%d of %d checks failed: %s", len(failed), len(r.Results), strings.Join(names, ", "))
}

// PrintTable writes the results as a table (CHECK FROM TO RESULT DETAIL).
func (r *Report) PrintTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tFROM\tTO\tRESULT\tDETAIL")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Check, x.From, dash(x.To), x.Result, dash(x.Detail))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// place is one test pod: a cluster and a placement.
type place struct {
	cluster   *probe.Cluster
	placement probe.Placement
	pod       *probe.Pod
}

func (p place) String() string { return p.cluster.ID + "/" + string(p.placement) }

// run holds one verification's state.
type run struct {
	o       Options
	s       *probe.Session
	places  map[string][]*place // cluster ID -> its places
	nodes   map[string]probe.Nodes
	mu      sync.Mutex
	results []Result
}

func (r *run) add(x Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, x)
}

func (r *run) logf(format string, args ...any) {
	if r.o.Log != nil {
		r.o.Log(format, args...)
	}
}

// Run verifies the clusters (at least two) and returns every check's
// result; a failed check is in the report, not an error. Errors are what
// kept the checks from running: a cluster not reachable, test pods that
// never became ready (a wrong image, say). The test namespace is deleted
// before Run returns, also on an error.
func Run(ctx context.Context, clusters []*probe.Cluster, o Options) (*Report, error) {
	if len(clusters) < 2 {
		return nil, fmt.Errorf("verify needs at least two clusters, got %d: give several --kubeconfig or --context", len(clusters))
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	if o.ImportTimeout <= 0 {
		o.ImportTimeout = DefaultImportTimeout
	}
	if o.MaxGap <= 0 {
		o.MaxGap = DefaultMaxGap
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	r := &run{o: o, places: map[string][]*place{}, nodes: map[string]probe.Nodes{}}
	specs := map[*probe.Cluster][]probe.PodSpec{}
	for _, c := range clusters {
		n, err := probe.FindNodes(ctx, c)
		if err != nil {
			return nil, err
		}
		r.nodes[c.ID] = n
		if n.ActiveGateway == "" {
			r.add(Result{Check: CheckGateway, From: c.ID, Result: ResultFail,
				Detail: fmt.Sprintf("no active gateway (gateway nodes: %s): see straitctl show gateways", orNone(n.Gateways))})
		} else {
			r.add(Result{Check: CheckGateway, From: c.ID, Result: ResultPass, Detail: "on " + n.ActiveGateway})
		}
		for _, pl := range []probe.Placement{probe.OnGateway, probe.OffGateway} {
			node := n.Node(pl)
			if node == "" {
				continue
			}
			r.places[c.ID] = append(r.places[c.ID], &place{cluster: c, placement: pl})
			specs[c] = append(specs[c], probe.PodSpec{
				Name: "verify-" + string(pl), Node: node, Args: []string{"serve"},
				Labels: map[string]string{appLabel: appName}, Ready: probe.HTTPPort,
			})
		}
	}
	s, err := probe.NewSession(ctx, clusters, namespacePrefix, o.Image)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.Log = o.Log
	r.s = s
	r.logf("test namespace %s; starting %d test pods (image %s)", s.Namespace, countSpecs(specs), o.Image)
	pods, err := s.StartPods(ctx, specs)
	if err != nil {
		return nil, err
	}
	for _, c := range clusters {
		for _, p := range r.places[c.ID] {
			p.pod = pods[c.ID+"/verify-"+string(p.placement)]
		}
	}
	if err := r.exportServices(ctx, clusters); err != nil {
		return nil, err
	}
	r.logf("probing pod to pod")
	r.podToPod(ctx, clusters)
	r.logf("waiting for the ServiceImports, then probing Services and clusterset.local")
	r.services(ctx, clusters)
	if o.Disruptive {
		r.failovers(ctx, clusters)
	}
	return &Report{Namespace: s.Namespace, Results: r.sorted()}, ctx.Err()
}

func countSpecs(m map[*probe.Cluster][]probe.PodSpec) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// sorted orders results by check, then places, as the run made them
// concurrently.
func (r *run) sorted() []Result {
	order := []string{CheckGateway, CheckPodTCP, CheckPodUDP, CheckImport, CheckService, CheckDNS, CheckFailover}
	out := slices.Clone(r.results)
	slices.SortStableFunc(out, func(a, b Result) int {
		if d := slices.Index(order, a.Check) - slices.Index(order, b.Check); d != 0 {
			return d
		}
		if d := strings.Compare(a.From, b.From); d != 0 {
			return d
		}
		return strings.Compare(a.To, b.To)
	})
	return out
}

// serviceName is the Service each cluster exports: one per cluster, so
// that a pod reaching it elsewhere is known to have crossed to that
// cluster.
func serviceName(clusterID string) string { return "verify-" + clusterID }

// exportServices creates in each cluster a Service over its test pods and
// exports it.
func (r *run) exportServices(ctx context.Context, clusters []*probe.Cluster) error {
	for _, c := range clusters {
		name := serviceName(c.ID)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.s.Namespace},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{appLabel: appName},
				Ports: []corev1.ServicePort{
					{Name: "http", Port: probe.HTTPPort, TargetPort: intstr.FromInt32(probe.HTTPPort), Protocol: corev1.ProtocolTCP},
				},
			},
		}
		if err := c.Client.Create(ctx, svc); err != nil {
			return fmt.Errorf("%s: create Service %s/%s: %w", c.ID, r.s.Namespace, name, err)
		}
		exp := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.s.Namespace}}
		if err := c.Client.Create(ctx, exp); err != nil {
			return fmt.Errorf("%s: create ServiceExport %s/%s (is the MCS API installed? run straitctl join): %w", c.ID, r.s.Namespace, name, err)
		}
	}
	return nil
}

// parallel runs fns, at most Options.Parallel at once.
func (r *run) parallel(fns []func()) {
	sem := make(chan struct{}, r.o.Parallel)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fn()
		})
	}
	wg.Wait()
}

// podToPod probes, between every two clusters in both directions, from
// each placement to the same placement over TCP and UDP.
func (r *run) podToPod(ctx context.Context, clusters []*probe.Cluster) {
	var fns []func()
	timeout := r.o.ProbeTimeout.String()
	for _, a := range clusters {
		for _, b := range clusters {
			if a == b {
				continue
			}
			for _, from := range r.places[a.ID] {
				for _, to := range r.places[b.ID] {
					if from.placement != to.placement {
						continue
					}
					tcp := net.JoinHostPort(to.pod.IP, strconv.Itoa(probe.TCPEchoPort))
					udp := net.JoinHostPort(to.pod.IP, strconv.Itoa(probe.UDPEchoPort))
					fns = append(fns,
						func() { r.connect(ctx, CheckPodTCP, from, to.String(), "--tcp", tcp, "--timeout", timeout) },
						func() { r.connect(ctx, CheckPodUDP, from, to.String(), "--udp", udp, "--timeout", timeout) })
				}
			}
		}
	}
	r.parallel(fns)
}

// connect runs one connect probe and records it.
func (r *run) connect(ctx context.Context, check string, from *place, to string, args ...string) ConnectOutcome {
	var rep probe.ConnectReport
	err := r.s.Testpod(ctx, from.pod, &rep, append([]string{"connect"}, args...)...)
	res := Result{Check: check, From: from.String(), To: to}
	switch {
	case err != nil:
		res.Result, res.Detail = ResultFail, err.Error()
	case !rep.OK:
		res.Result, res.Detail = ResultFail, rep.Error
	default:
		res.Result, res.Detail = ResultPass, "rtt "+rep.RTT
	}
	o := ConnectOutcome{Report: rep, Err: err}
	if check != CheckService {
		r.add(res)
	}
	o.Result = res
	return o
}

// ConnectOutcome is a connect probe's report and its result.
type ConnectOutcome struct {
	Report probe.ConnectReport
	Err    error
	Result Result
}

// services waits for each cluster's ServiceImport in every other cluster,
// then fetches the Service through the import's IP and resolves its
// clusterset.local name, from each placement.
func (r *run) services(ctx context.Context, clusters []*probe.Cluster) {
	var fns []func()
	for _, a := range clusters {
		for _, b := range clusters {
			if a == b {
				continue
			}
			fns = append(fns, func() {
				ip, err := r.waitImport(ctx, a, serviceName(b.ID))
				if err != nil {
					r.add(Result{Check: CheckImport, From: a.ID, To: b.ID, Result: ResultFail, Detail: err.Error()})
					return
				}
				r.add(Result{Check: CheckImport, From: a.ID, To: b.ID, Result: ResultPass, Detail: "clusterset IP " + ip})
				for _, from := range r.places[a.ID] {
					r.service(ctx, from, b, ip)
					r.dns(ctx, from, b, ip)
				}
			})
		}
	}
	r.parallel(fns)
}

// waitImport waits until cluster a has ServiceImport name with an IP.
func (r *run) waitImport(ctx context.Context, a *probe.Cluster, name string) (string, error) {
	var si mcsv1beta1.ServiceImport
	last := "no ServiceImport"
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, r.o.ImportTimeout, true, func(ctx context.Context) (bool, error) {
		if err := a.Client.Get(ctx, client.ObjectKey{Namespace: r.s.Namespace, Name: name}, &si); err != nil {
			last = err.Error()
			return false, nil
		}
		if len(si.Spec.IPs) == 0 {
			last = "the ServiceImport has no IP yet"
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("no ServiceImport %s/%s with an IP within %s (%s): is Lighthouse running? see straitctl show exports", r.s.Namespace, name, r.o.ImportTimeout, last)
	}
	return si.Spec.IPs[0], nil
}

// service fetches "GET /" through the clusterset IP and checks that a pod
// of the exporting cluster answered. A refused or timed-out connection is
// tried again every 500 ms for up to dnsSettle (settling): the Service
// behind the ServiceImport's IP is moments old, and kube-proxy on the
// probing pod's node programs it up to a sync period later. Before it has
// the Service at all, a SYN to the IP leaves un-translated: in iptables
// mode it is masqueraded out of the node's default route and its
// conntrack entry holds every retransmission of that connection to the
// same dead end (a 3 s timeout: the conntrack events of the e2e's verify
// on 2026-12-02 show the first SYN's entry with the node's address as its
// reply destination, 11 ms before the Service's REJECT rule appeared);
// nftables mode drops it before conntrack keeps it, so only the first SYN
// is lost (1 s). Then it rejects connections until the imported
// EndpointSlices reach it. A new connection after that answers. The
// first placement probed (the gateway one) meets this; the others come
// later. The detail says how long it was refused or timed out.
func (r *run) service(ctx context.Context, from *place, b *probe.Cluster, ip string) {
	url := "http://" + net.JoinHostPort(ip, strconv.Itoa(probe.HTTPPort)) + "/"
	refused := func(o ConnectOutcome) bool { return strings.Contains(o.Report.Error, "connection refused") }
	o, waited, _ := retrySettling(ctx, dnsSettle, 500*time.Millisecond, func(ctx context.Context) (ConnectOutcome, error) {
		return r.connect(ctx, CheckService, from, b.ID+" "+serviceName(b.ID), "--http", url, "--timeout", r.o.ProbeTimeout.String()), nil
	}, func(o ConnectOutcome) bool { return o.Result.Result != ResultPass && settling(o.Report.Error) })
	res := o.Result
	if res.Result == ResultPass && waited > 0 {
		res.Detail += fmt.Sprintf(" (refused or timed out for the first %s)", waited.Round(100*time.Millisecond))
	} else if res.Result != ResultPass && refused(o) {
		res.Detail += fmt.Sprintf(" (for %s after the ServiceImport existed: does the Service have ready endpoints in %s? see straitctl show exports)", waited.Round(100*time.Millisecond), b.ID)
	} else if res.Result != ResultPass && settling(o.Report.Error) {
		res.Detail += fmt.Sprintf(" (for %s after the ServiceImport existed; pod to pod passed: see straitctl diagnose)", waited.Round(100*time.Millisecond))
	}
	if res.Result == ResultPass {
		var id probe.Identity
		_ = json.Unmarshal(o.Report.Body, &id)
		if !slices.ContainsFunc(r.places[b.ID], func(p *place) bool { return p.pod.Node == id.Node && p.pod.IP == id.PodIP }) {
			res.Result, res.Detail = ResultFail, fmt.Sprintf("answered by pod %s on node %s (%s), not by %s's test pods", id.Pod, id.Node, id.PodIP, b.ID)
		} else {
			res.Detail += ", answered on " + id.Node
		}
	}
	r.add(res)
}

// dnsSettle bounds how long a clusterset.local name may still be NXDOMAIN
// once its ServiceImport exists: each strait-dns replica learns the import
// from its own informer, so a lookup can reach one that has not yet (seen
// in the e2e under load). Answers are not cached on the way (the Corefile
// block forwards without a cache), so a replica that has the import answers
// at once.
const dnsSettle = 15 * time.Second

// dns resolves the exported Service's clusterset.local name and checks
// that it gives the import's IP. An NXDOMAIN is asked again every 500 ms
// for up to dnsSettle; the detail says how long the name took.
func (r *run) dns(ctx context.Context, from *place, b *probe.Cluster, ip string) {
	name := fmt.Sprintf("%s.%s.svc.clusterset.local", serviceName(b.ID), r.s.Namespace)
	rep, waited, err := settledLookup(ctx, dnsSettle, 500*time.Millisecond, func(ctx context.Context) (probe.DNSReport, error) {
		var rep probe.DNSReport
		err := r.s.Testpod(ctx, from.pod, &rep, "dns", name, "--timeout", r.o.ProbeTimeout.String())
		return rep, err
	})
	res := Result{Check: CheckDNS, From: from.String(), To: name}
	switch {
	case err != nil:
		res.Result, res.Detail = ResultFail, err.Error()
	case !rep.OK && rep.NotFound:
		res.Result, res.Detail = ResultFail, fmt.Sprintf("%s for %s after the ServiceImport existed: is strait-dns running and synced? see straitctl diagnose", rep.Error, waited.Round(100*time.Millisecond))
	case !rep.OK:
		res.Result, res.Detail = ResultFail, rep.Error+": is the clusterset.local forward in kube-system/coredns? see straitctl diagnose"
	case !slices.Contains(rep.Addresses, ip):
		res.Result, res.Detail = ResultFail, fmt.Sprintf("answers %s, the ServiceImport's IP is %s", strings.Join(rep.Addresses, ","), ip)
	case waited > 0:
		res.Result, res.Detail = ResultPass, fmt.Sprintf("%s (NXDOMAIN or no answer for the first %s)", ip, waited.Round(100*time.Millisecond))
	default:
		res.Result, res.Detail = ResultPass, ip
	}
	r.add(res)
}

// settling reports whether a connection's error may be a Service that is
// not programmed on the probing node yet: refused (kube-proxy's reject of
// a Service without endpoints) or timed out (as the HTTP client words it:
// its deadline, an I/O timeout).
func settling(err string) bool {
	for _, s := range []string{"connection refused", "context deadline exceeded", "i/o timeout", "Client.Timeout exceeded"} {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}

// settledLookup calls lookup until it answers anything but NXDOMAIN
// (report NotFound) or a timeout, every interval for at most settle: a
// resolver tries a lost query again (glibc twice by default), and under
// load a query through the cluster's CoreDNS to strait-dns is lost now and
// then (seen in the e2e at load averages of 15 to 45). It returns the last
// report, how long the NXDOMAIN answers or timeouts went on (0 when the
// first answer was neither), and lookup's error, which ends the wait at
// once.
func settledLookup(ctx context.Context, settle, interval time.Duration, lookup func(context.Context) (probe.DNSReport, error)) (probe.DNSReport, time.Duration, error) {
	return retrySettling(ctx, settle, interval, lookup, func(rep probe.DNSReport) bool {
		return !rep.OK && (rep.NotFound || strings.Contains(rep.Error, "timeout"))
	})
}

// retrySettling calls try until it fails (its error ends the wait at once)
// or again says its result is not yet settled, every interval for at most
// settle, and at least once. It returns the last result, how long the
// unsettled results went on (0 when the first one settled), and try's
// error.
func retrySettling[T any](ctx context.Context, settle, interval time.Duration, try func(context.Context) (T, error), again func(T) bool) (T, time.Duration, error) {
	start := time.Now()
	for first := true; ; first = false {
		v, err := try(ctx)
		waited := time.Since(start)
		if first {
			waited = 0
		}
		if err != nil || !again(v) || time.Since(start)+interval > settle {
			return v, waited, err
		}
		select {
		case <-ctx.Done():
			return v, waited, nil
		case <-time.After(interval):
		}
	}
}

// failovers, one cluster at a time, delete the active gateway's pod while a
// pod of another cluster sends a UDP probe every 10 ms to a pod of this
// one, and measure the longest gap in the replies.
func (r *run) failovers(ctx context.Context, clusters []*probe.Cluster) {
	for i, b := range clusters {
		a := clusters[(i+1)%len(clusters)]
		from, to := r.pick(a.ID), r.pick(b.ID)
		n := r.nodes[b.ID]
		res := Result{Check: CheckFailover, From: b.ID, To: "-"}
		switch {
		case n.ActiveGateway == "" || from == nil || to == nil:
			res.Result, res.Detail = ResultSkip, "no active gateway or no test pods"
		case len(n.Gateways) < 2:
			res.Result, res.Detail = ResultSkip, "one gateway node: nothing to fail over to"
		default:
			r.logf("%s: failing over the gateway on %s (traffic from %s to %s)", b.ID, n.ActiveGateway, from, to)
			res.From, res.To = from.String(), to.String()
			res.Result, res.Detail = r.failover(ctx, b, n.ActiveGateway, from, to)
		}
		r.add(res)
	}
}

// pick prefers the non-gateway pod, whose traffic crosses the route agents
// too, as ordinary workloads' does.
func (r *run) pick(id string) *place {
	var out *place
	for _, p := range r.places[id] {
		if out == nil || p.placement == probe.OffGateway {
			out = p
		}
	}
	return out
}

func (r *run) failover(ctx context.Context, b *probe.Cluster, active string, from, to *place) (string, string) {
	target := net.JoinHostPort(to.pod.IP, strconv.Itoa(probe.UDPEchoPort))
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reports := &pingReports{}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		// Until the exec stream ends (which ends the probe), with a report
		// every failoverReport: the last one read is the measurement.
		_, err := r.s.ExecStream(pctx, from.pod, reports, io.Discard, probe.TestpodBinary, "ping", "--udp", target,
			"--interval", failoverPing.String(), "--report-every", failoverReport.String())
		done <- err
	}()
	running := func(d time.Duration) error {
		return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, d+failoverBound, true, func(context.Context) (bool, error) {
			select {
			case err := <-done:
				if err == nil {
					err = errors.New("the probe ended")
				}
				return false, err
			default:
			}
			rep := reports.latest()
			return rep.Received > 0 && time.Duration(rep.DurationMs*float64(time.Millisecond)) >= d, nil
		})
	}
	if err := running(failoverLead); err != nil {
		return ResultFail, fmt.Sprintf("no traffic from %s to %s before the failover: %v (last report %+v)", from, to, err, reports.latest())
	}
	pods, err := b.Kube.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=gateway"})
	if err != nil {
		return ResultFail, "list gateway pods: " + err.Error()
	}
	var victim string
	for _, p := range pods.Items {
		if p.Spec.NodeName == active {
			victim = p.Name
		}
	}
	if victim == "" {
		return ResultFail, "no gateway pod on the active gateway node " + active
	}
	deleted := time.Since(start)
	if err := b.Kube.CoreV1().Pods(v1.ComponentNamespace).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
		return ResultFail, "delete the active gateway's pod: " + err.Error()
	}
	var now string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, failoverBound, true, func(ctx context.Context) (bool, error) {
		n, err := probe.FindNodes(ctx, b)
		now = n.ActiveGateway
		return err == nil && now != "" && now != active, nil
	})
	if err != nil {
		return ResultFail, fmt.Sprintf("no other gateway became active within %s after %s's pod was deleted", failoverBound, active)
	}
	took := time.Since(start) - deleted
	// Wait for replies on the new path (up to the longest gap that
	// passes), then let them flow a little longer. The probe's clock
	// started later than ours (exec takes a while): compare its times with
	// its own report of when the new gateway was seen active.
	activeAt := reports.latest().DurationMs
	back := func() bool {
		rep := reports.latest()
		return rep.LastReplyMs != nil && *rep.LastReplyMs > activeAt
	}
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, r.o.MaxGap, true, func(context.Context) (bool, error) { return back(), nil })
	if !back() {
		rep := reports.latest()
		return ResultFail, fmt.Sprintf("traffic did not come back within %s after %s took over (%d of %d replies)", r.o.MaxGap, now, rep.Received, rep.Sent)
	}
	if err := running(time.Since(start) + failoverTail); err != nil {
		return ResultFail, fmt.Sprintf("the probe stopped: %v", err)
	}
	rep := reports.latest()
	gap := time.Duration(rep.MaxGapMs * float64(time.Millisecond))
	detail := fmt.Sprintf("%s -> %s: new gateway active after %s, traffic gap %s (%d of %d probes lost)",
		active, now, took.Round(time.Millisecond), gap.Round(time.Millisecond), rep.Lost, rep.Sent)
	if gap > r.o.MaxGap {
		return ResultFail, detail + fmt.Sprintf(", longer than %s", r.o.MaxGap)
	}
	return ResultPass, detail
}

// pingReports keeps the latest of the reports a running ping prints, one
// JSON line each.
type pingReports struct {
	mu   sync.Mutex
	buf  []byte
	last probe.PingReport
}

func (p *pingReports) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		var rep probe.PingReport
		if json.Unmarshal(p.buf[:i], &rep) == nil {
			p.last = rep
		}
		p.buf = p.buf[i+1:]
	}
}

func (p *pingReports) latest() probe.PingReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}
