package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/sandbox"
)

// What the run measures. 100 services and 5 withdrawals are the issue's
// counts; exports 300 ms apart keep one export's work from queueing behind
// the next (the benchmark measures latency, not a burst).
const (
	ns            = "dnsbench"
	services      = 100
	exportSpacing = 300 * time.Millisecond
	withdrawals   = 5
	// watchInterval is the withdrawal poller's: a change is seen within
	// 20 ms; the Gateway status is read as often.
	watchInterval = 20 * time.Millisecond
	goalP99       = time.Second
	// roundTimeout is how long a measured name is asked for before it
	// counts as unanswered.
	roundTimeout = 2 * time.Minute
	// stockCache is the line of the cluster's Corefile (kubeadm's, the
	// sandbox's too) that the baseline takes out; see stockBaseline.
	stockCache = "    cache 30\n"
	// fastProbe is how soon a Service asked for before it existed must
	// answer for the stock baseline to count as uncached.
	fastProbe = 2 * time.Second
)

var clusters = []string{"c1", "c2"}

// env is the running sandbox and what the rounds need of it.
type env struct {
	bin, state, self string
	dnsServer        string // the client pod's nameserver: c2's kube-dns
	kube             map[string]kubernetes.Interface
	ctrl             map[string]client.Client
}

func (e *env) sbx(args ...string) *exec.Cmd {
	// The flag goes first: after "exec ... --" every word is the command's.
	return exec.Command(filepath.Join(e.bin, "strait-sandbox"), append([]string{"--state-dir", e.state}, args...)...)
}

func bench(ctx context.Context) error {
	began := time.Now()
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	e := &env{
		bin: filepath.Join(root, "_output", "bin"), state: filepath.Join(root, "_output", "bench", "sandbox"), self: self,
		kube: map[string]kubernetes.Interface{}, ctrl: map[string]client.Client{},
	}
	defer func() {
		if out, err := e.sbx("down").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "sandbox down: %v\n%s", err, out)
		}
	}()
	rep := Report{Date: time.Now().UTC().Format(time.RFC3339), Sandbox: "2 clusters x 3 nodes, WireGuard, gateways n1,n2"}
	step := time.Now()
	fmt.Println("== sandbox up (2 clusters x 3 nodes)")
	if out, err := e.sbx("up", "--clusters", "2", "--nodes", "3").CombinedOutput(); err != nil {
		return fmt.Errorf("sandbox up: %v\n%s", err, out)
	}
	rep.Phases.UpSeconds = time.Since(step).Seconds()
	step = time.Now()
	fmt.Println("== join c1 and c2")
	if err := e.join(ctx); err != nil {
		return err
	}
	if err := e.workload(ctx); err != nil {
		return err
	}
	rep.Phases.JoinSeconds = time.Since(step).Seconds()

	step = time.Now()
	fmt.Println("== export -> answer, strait-dns through c2's CoreDNS")
	if rep.ExportToAnswer.Strait, err = e.exportRound(ctx); err != nil {
		return err
	}
	fmt.Println("== create -> answer, stock CoreDNS (kubernetes plugin) in c2")
	if err := e.stockBaseline(ctx, &rep.ExportToAnswer); err != nil {
		return err
	}
	rep.ExportToAnswer.finish()
	rep.Phases.ExportSeconds = time.Since(step).Seconds()

	step = time.Now()
	fmt.Println("== withdrawal: c1's gateways lose their label")
	if rep.Withdrawal, err = e.withdrawals(ctx); err != nil {
		return err
	}
	rep.Phases.WithdrawalSeconds = time.Since(step).Seconds()
	rep.Phases.TotalSeconds = time.Since(began).Seconds()

	out := filepath.Join(root, "_output", "bench", "dns-sandbox.json")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	rep.summary(os.Stdout)
	fmt.Println("\nwritten", out)
	return nil
}

// join deploys the broker on c1 and joins both clusters as the e2e tests'
// joinClusterSet does, then waits for each active gateway to report the
// other cluster Connected and for Lighthouse and strait-dns to be available.
func (e *env) join(ctx context.Context) error {
	layout := sandbox.Layout{Dir: e.state}
	info := filepath.Join(e.state, "broker-info.strait")
	admin := func(args ...string) error {
		out, err := e.sbx(append([]string{"admin", "--", filepath.Join(e.bin, "straitctl")}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("straitctl %s: %v\n%s", args[0], err, out)
		}
		return nil
	}
	if err := admin("deploy-broker", "--kubeconfig", layout.AdminKubeconfig("c1"), "--output", info); err != nil {
		return err
	}
	for i, c := range clusters {
		if err := admin("join", info, "--kubeconfig", layout.AdminKubeconfig(c), "--clusterid", c,
			"--gateway-nodes", c+"-n1,"+c+"-n2", "--pod-cidr", fmt.Sprintf("10.%d.0.0/16", i+1), "--cable-driver", "wireguard"); err != nil {
			return err
		}
	}
	for _, c := range clusters {
		cs, err := layout.Client(c)
		if err != nil {
			return err
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", layout.Kubeconfig(c))
		if err != nil {
			return err
		}
		cl, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		if err != nil {
			return err
		}
		e.kube[c], e.ctrl[c] = cs, cl
	}
	for _, c := range clusters {
		other := "c2"
		if c == "c2" {
			other = "c1"
		}
		if err := waitFor(ctx, 2*time.Minute, c+"'s active gateway connected to "+other, func(ctx context.Context) (bool, error) {
			return connection(ctx, e.ctrl[c], other) == v1.Connected, nil
		}); err != nil {
			return err
		}
		for _, d := range []string{"strait-lighthouse", "strait-dns"} {
			if err := waitFor(ctx, 2*time.Minute, "Deployment "+d+" in "+c, func(ctx context.Context) (bool, error) {
				var dep appsv1.Deployment
				if err := e.ctrl[c].Get(ctx, types.NamespacedName{Namespace: v1.ComponentNamespace, Name: d}, &dep); err != nil {
					return false, nil
				}
				return dep.Status.AvailableReplicas >= 1 && dep.Status.ObservedGeneration == dep.Generation, nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// connection is the status of the active gateway's connection to remote,
// "" when there is no active gateway or no such connection.
func connection(ctx context.Context, c client.Client, remote string) v1.ConnectionStatus {
	var gws v1.GatewayList
	if err := c.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return ""
	}
	for _, g := range gws.Items {
		if g.Status.HAStatus != v1.HAStatusActive {
			continue
		}
		for _, conn := range g.Status.Connections {
			if conn.ClusterID == v1.ClusterID(remote) {
				return conn.Status
			}
		}
	}
	return ""
}

// workload makes namespace ns in both clusters with a server pod (app=bench,
// what the measured Services select) and a headless-service pod (app=hl)
// in each, and c2's client pod, whose nameserver the poller asks. It
// returns once a clusterset.local name answers in the client pod: the
// forward join added to c2's CoreDNS is in effect.
func (e *env) workload(ctx context.Context) error {
	for _, c := range clusters {
		if _, err := e.kube[c].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := waitFor(ctx, 30*time.Second, "default service account in "+c+"/"+ns, func(ctx context.Context) (bool, error) {
			_, err := e.kube[c].CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		}); err != nil {
			return err
		}
		pods := []*corev1.Pod{testPod("srv", "bench", "serve"), testPod("hl", "hl", "serve")}
		if c == "c2" {
			pods = append(pods, testPod("client", "client", "sleep"))
		}
		for _, p := range pods {
			if _, err := e.kube[c].CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		for _, p := range pods {
			if _, err := e.runningPod(ctx, c, p.Name); err != nil {
				return err
			}
		}
	}
	// The pod's nameserver: the cluster DNS Service, kube-system/kube-dns
	// (what ClusterFirst puts in a pod's resolv.conf).
	dnsSvc, err := e.kube["c2"].CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("c2's cluster DNS Service: %w", err)
	}
	e.dnsServer = dnsSvc.Spec.ClusterIP
	// The Services the export round exports, made now so that the
	// clusters' kube-proxies have taken them in before it starts (the
	// gate below takes a while anyway).
	for i := range services {
		if err := e.createService(ctx, "c1", clusterIPService(fmt.Sprintf("s%03d", i))); err != nil {
			return err
		}
	}
	// The gate: an export of c1 answered in c2's pod (join's forward took
	// effect: the node agent updated the ConfigMap volume and CoreDNS
	// reloaded).
	if err := e.createService(ctx, "c1", clusterIPService("warm")); err != nil {
		return err
	}
	if err := e.export(ctx, "c1", "warm"); err != nil {
		return err
	}
	res, err := e.firstAnswers(ctx, []string{"--timeout", "3m"}, []string{fqdn("warm", "clusterset.local")}, nil)
	if err != nil {
		return err
	}
	if a := res[0]; a.TimedOut {
		return fmt.Errorf("warm.%s.svc.clusterset.local never answered in c2's pod: last %s", ns, a.LastAnswer)
	}
	fmt.Printf("warm.%s.svc.clusterset.local answers in c2's pod through %s\n", ns, e.dnsServer)
	return nil
}

func testPod(name, app string, args ...string) *corev1.Pod {
	env := []corev1.EnvVar{}
	for k, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_NAME": "spec.nodeName", "POD_IP": "status.podIP"} {
		env = append(env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64(1)),
			Containers: []corev1.Container{{Name: "c", Image: "strait/testpod", Args: args, Env: env}}},
	}
}

func (e *env) runningPod(ctx context.Context, c, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := waitFor(ctx, 90*time.Second, "pod "+c+"/"+ns+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		p, err := e.kube[c].CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return p.Status.PodIP != "", nil
			}
		}
		return false, nil
	})
	return pod, err
}

// clusterIPService selects the server pod.
func clusterIPService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "bench"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		}},
	}
}

func (e *env) createService(ctx context.Context, c string, svc *corev1.Service) error {
	if _, err := e.kube[c].CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Service %s/%s in %s: %w", ns, svc.Name, c, err)
	}
	return nil
}

func (e *env) export(ctx context.Context, c, name string) error {
	se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := e.ctrl[c].Create(ctx, se); err != nil {
		return fmt.Errorf("create ServiceExport %s/%s in %s: %w", ns, name, c, err)
	}
	return nil
}

// fqdn is the A name of Service name of ns in zone.
func fqdn(name, zone string) string { return name + "." + ns + ".svc." + zone + "." }

// pollProc is one run of the poller in c2's client pod.
type pollProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte   // its stdout, closed at EOF
	exited chan struct{} // closed once it has exited; err is then set
	err    error
	stderr bytes.Buffer
}

func (e *env) startPoll(args ...string) (*pollProc, error) {
	p := &pollProc{lines: make(chan []byte, 1024), exited: make(chan struct{})}
	p.cmd = e.sbx(append([]string{"exec", "c2/" + ns + "/client", "--", e.self, "poll", "--server", e.dnsServer}, args...)...)
	// Its own process group, so that an error path can end the poller and
	// the nsenter between.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- slices.Clone(sc.Bytes())
		}
		close(p.lines)
		if err := p.cmd.Wait(); err != nil {
			p.err = fmt.Errorf("poller: %v\n%s", err, p.stderr.String())
		}
		close(p.exited)
	}()
	return p, nil
}

// end closes the poller's stdin (it then finishes its names and exits) and
// waits; after grace it ends the process group.
func (p *pollProc) end(grace time.Duration) error {
	_ = p.stdin.Close()
	go func() {
		for range p.lines { // so that the poller is never blocked writing
		}
	}()
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	return p.err
}

// firstAnswers runs the poller over names, handing each over when its
// before (if any) has run, so that a name is asked for from the moment
// before returns; it returns the poller's lines in the order of names and
// the time each before returned.
func (e *env) firstAnswers(ctx context.Context, args, names []string, before func(i int) error) ([]firstAnswer, error) {
	p, err := e.startPoll(args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = p.end(5 * time.Second) }()
	byName := map[string]firstAnswer{}
	collect := func(line []byte) error {
		var a firstAnswer
		if err := json.Unmarshal(line, &a); err != nil {
			return fmt.Errorf("poller line %q: %w", line, err)
		}
		byName[a.Name] = a
		return nil
	}
	for i, name := range names {
		if before != nil {
			if err := before(i); err != nil {
				return nil, err
			}
		}
		if _, err := io.WriteString(p.stdin, name+"\n"); err != nil {
			return nil, fmt.Errorf("write to the poller: %w", err)
		}
	}
	_ = p.stdin.Close()
	for line := range p.lines {
		if err := collect(line); err != nil {
			return nil, err
		}
	}
	if <-p.exited; p.err != nil {
		return nil, p.err
	}
	out := make([]firstAnswer, len(names))
	for i, n := range names {
		a, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("the poller said nothing of %s", n)
		}
		out[i] = a
	}
	return out, ctx.Err()
}

// timedRound hands the names to the poller one every exportSpacing,
// each right after create(i) returned, and returns the latencies from
// that return to the first good answer.
func (e *env) timedRound(ctx context.Context, names []string, create func(ctx context.Context, i int) error) (Latencies, error) {
	created := make([]time.Time, len(names))
	next := time.Now()
	res, err := e.firstAnswers(ctx, []string{"--timeout", roundTimeout.String()}, names, func(i int) error {
		select {
		case <-time.After(time.Until(next)):
		case <-ctx.Done():
			return ctx.Err()
		}
		next = next.Add(exportSpacing)
		if err := create(ctx, i); err != nil {
			return err
		}
		created[i] = time.Now()
		return nil
	})
	if err != nil {
		return Latencies{}, err
	}
	var l Latencies
	for i, a := range res {
		if a.TimedOut {
			l.Unanswered++
			fmt.Printf("  %s: no answer within %v (last: %s)\n", a.Name, roundTimeout, a.LastAnswer)
			continue
		}
		l.SamplesMs = append(l.SamplesMs, ms(time.Unix(0, a.UnixNano).Sub(created[i])))
	}
	l.finish()
	return l, nil
}

// exportRound exports c1's 100 Services (workload made them) one by one
// and times each export until c2's pod gets an A answer for its
// clusterset name.
func (e *env) exportRound(ctx context.Context) (Latencies, error) {
	names := make([]string, services)
	for i := range services {
		names[i] = fqdn(fmt.Sprintf("s%03d", i), "clusterset.local")
	}
	return e.timedRound(ctx, names, func(ctx context.Context, i int) error {
		return e.export(ctx, "c1", fmt.Sprintf("s%03d", i))
	})
}

// stockBaseline times 100 Services created in c2 until c2's pod gets an A
// answer for their cluster.local names from stock CoreDNS's kubernetes
// plugin, through the same server as the clusterset.local queries.
//
// The cluster's Corefile (kubeadm's) has "cache 30" in the cluster.local
// block, and the kubernetes plugin's denial of a name carries an SOA of TTL
// 30: a name asked for before CoreDNS's informer has the Service stays
// NXDOMAIN for up to 30 s, and polling from creation would measure that
// cache. The clusterset.local block join adds has no cache (nor has
// strait-dns), so the baseline takes that one line out of c2's Corefile for
// its round, checks with a probe that a name asked for before its Service
// existed now answers at once, and puts the line back after. One probe with
// the cache still in is reported too: what an application that asks too
// early sees with the Corefile as shipped.
func (e *env) stockBaseline(ctx context.Context, r *ExportResult) error {
	cms := e.kube["c2"].CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("c2's CoreDNS ConfigMap: %w", err)
	}
	orig := cm.Data["Corefile"]
	if strings.Count(orig, stockCache) != 1 {
		return fmt.Errorf("c2's Corefile has not exactly one %q line:\n%s", strings.TrimSpace(stockCache), orig)
	}
	probes := 0
	probe := func() (time.Duration, bool, error) {
		probes++
		name := fmt.Sprintf("probe%d", probes)
		p, err := e.startPoll("--timeout", "6s")
		if err != nil {
			return 0, false, err
		}
		defer func() { _ = p.end(10 * time.Second) }()
		if _, err := io.WriteString(p.stdin, fqdn(name, "cluster.local")+"\n"); err != nil {
			return 0, false, err
		}
		// Asked for 300 ms (30 queries, spread over both CoreDNS replicas)
		// before the Service exists: both have the denial if they cache.
		time.Sleep(300 * time.Millisecond)
		if err := e.createService(ctx, "c2", clusterIPService(name)); err != nil {
			return 0, false, err
		}
		created := time.Now()
		_ = p.stdin.Close()
		var a firstAnswer
		for line := range p.lines {
			if err := json.Unmarshal(line, &a); err != nil {
				return 0, false, fmt.Errorf("poller line %q: %w", line, err)
			}
		}
		if a.TimedOut || a.UnixNano == 0 {
			return 0, false, nil
		}
		return time.Unix(0, a.UnixNano).Sub(created), true, nil
	}
	if d, ok, err := probe(); err != nil {
		return err
	} else if ok {
		r.StockCachedProbeMs = new(ms(d))
		fmt.Printf("  Corefile as shipped: a name asked for before its Service existed answered %v after creation\n", d.Round(time.Millisecond))
	} else {
		fmt.Println("  Corefile as shipped: a name asked for before its Service existed had no answer within 6 s of creation (negative cache)")
	}
	cm.Data["Corefile"] = strings.Replace(orig, stockCache, "", 1)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("c2's Corefile without the cache: %w", err)
	}
	defer func() {
		cm, err := cms.Get(context.Background(), "coredns", metav1.GetOptions{})
		if err == nil {
			cm.Data["Corefile"] = orig
			_, err = cms.Update(context.Background(), cm, metav1.UpdateOptions{})
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "restore c2's Corefile: %v\n", err)
		}
	}()
	start := time.Now()
	for {
		d, ok, err := probe()
		if err != nil {
			return err
		}
		if ok && d < fastProbe {
			fmt.Printf("  cache out of c2's Corefile: in effect after %v (probe answered %v after creation)\n",
				time.Since(start).Round(time.Second), d.Round(time.Millisecond))
			break
		}
		if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("c2's CoreDNS still caches denials 2 minutes after the Corefile changed")
		}
	}
	names := make([]string, services)
	for i := range services {
		names[i] = fqdn(fmt.Sprintf("b%03d", i), "cluster.local")
	}
	r.Stock, err = e.timedRound(ctx, names, func(ctx context.Context, i int) error {
		return e.createService(ctx, "c2", clusterIPService(fmt.Sprintf("b%03d", i)))
	})
	return err
}

// withdrawals exports the headless Service hl from c1 and c2, watches its
// A answer from c2's pod, and five times takes the gateway label off c1's
// gateway nodes (as the e2e tests do), timing c2's Gateway status and the
// answer, then puts the labels back and waits for c1 to return.
func (e *env) withdrawals(ctx context.Context) (WithdrawalResult, error) {
	res := WithdrawalResult{PollIntervalMs: ms(watchInterval)}
	ips := map[string]string{}
	for _, c := range clusters {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "hl"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "hl"}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
			}},
		}
		if err := e.createService(ctx, c, svc); err != nil {
			return res, err
		}
		if err := e.export(ctx, c, "hl"); err != nil {
			return res, err
		}
		p, err := e.runningPod(ctx, c, "hl")
		if err != nil {
			return res, err
		}
		ips[c] = p.Status.PodIP
	}
	both := []string{ips["c1"], ips["c2"]}
	slices.Sort(both)
	w, err := e.startPoll("--watch", fqdn("hl", "clusterset.local"), "--interval", watchInterval.String())
	if err != nil {
		return res, err
	}
	defer func() { _ = w.end(5 * time.Second) }()
	var last answerChange
	// next waits for the watcher's next change, or for tick.
	next := func(timeout <-chan time.Time, tick <-chan time.Time) (changed bool, err error) {
		select {
		case line, ok := <-w.lines:
			if !ok {
				<-w.exited
				return false, fmt.Errorf("the watcher ended: %v", w.err)
			}
			if err := json.Unmarshal(line, &last); err != nil {
				return false, fmt.Errorf("watcher line %q: %w", line, err)
			}
			return true, nil
		case <-tick:
			return false, nil
		case <-timeout:
			return false, fmt.Errorf("timed out; the last answer was %s %v", last.Rcode, last.Addrs)
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	settled := func(what string) error {
		timeout := time.After(3 * time.Minute)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if slices.Equal(last.Addrs, both) && connection(ctx, e.ctrl["c2"], "c1") == v1.Connected && connection(ctx, e.ctrl["c1"], "c2") == v1.Connected {
				return nil
			}
			if _, err := next(timeout, tick.C); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	if err := settled("both clusters' endpoints in the answer for hl"); err != nil {
		return res, err
	}
	for i := range withdrawals {
		t0 := time.Now()
		for _, n := range []string{"c1-n1", "c1-n2"} {
			if err := e.gatewayLabel(ctx, n, false); err != nil {
				return res, err
			}
		}
		var t1, t2 time.Time
		var listTook time.Duration
		timeout := time.After(90 * time.Second)
		tick := time.NewTicker(watchInterval)
		for t1.IsZero() || t2.IsZero() {
			changed, err := next(timeout, tick.C)
			if err != nil {
				tick.Stop()
				return res, fmt.Errorf("withdrawal %d: %w (gateway status lost c1: %v)", i+1, err, !t1.IsZero())
			}
			if changed && t2.IsZero() && last.Rcode == "NOERROR" && !slices.Contains(last.Addrs, ips["c1"]) {
				t2 = time.Unix(0, last.UnixNano)
			}
			if !changed && t1.IsZero() {
				// t1 is when the read that showed it began: the status
				// changed before the apiserver served it, and a read can
				// take a while on a busy machine (listMs says how long).
				at := time.Now()
				if connection(ctx, e.ctrl["c2"], "c1") != v1.Connected {
					t1, listTook = at, time.Since(at)
				}
			}
		}
		tick.Stop()
		round := WithdrawalRound{GatewayStatusMs: ms(t1.Sub(t0)), DNSMs: ms(t2.Sub(t0)), DNSAfterStatusMs: ms(t2.Sub(t1)), ListMs: ms(listTook)}
		back := time.Now()
		for _, n := range []string{"c1-n1", "c1-n2"} {
			if err := e.gatewayLabel(ctx, n, true); err != nil {
				return res, err
			}
		}
		if err := settled(fmt.Sprintf("withdrawal %d: c1 back in the answer", i+1)); err != nil {
			return res, err
		}
		round.RestoredMs = ms(time.Since(back))
		fmt.Printf("  round %d: gateway status lost c1 after %.0f ms, the answer lost c1's endpoint after %.0f ms (%.0f ms after the status); c1 back after %.1f s\n",
			i+1, round.GatewayStatusMs, round.DNSMs, round.DNSAfterStatusMs, round.RestoredMs/1000)
		res.Rounds = append(res.Rounds, round)
	}
	res.finish()
	return res, nil
}

// gatewayLabel puts the gateway label on node of c1 or takes it off, as the
// e2e tests' setGatewayLabel does.
func (e *env) gatewayLabel(ctx context.Context, node string, on bool) error {
	patch := []byte(`{"metadata":{"labels":{"` + member.GatewayLabel + `":null}}}`)
	if on {
		patch = []byte(`{"metadata":{"labels":{"` + member.GatewayLabel + `":"true"}}}`)
	}
	if _, err := e.kube["c1"].CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label %s as a gateway (%v): %w", node, on, err)
	}
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, cond); err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
