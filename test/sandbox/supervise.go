package sandbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/proc"
	"strait.dev/strait/test/sandbox/clusterdns"
	"strait.dev/strait/test/sandbox/node"
)

// stopGrace is how long a sandbox process gets between SIGTERM and SIGKILL;
// node agents use it to stop their pods.
const stopGrace = 10 * time.Second

// child is a process the supervisor started and watches.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

type supervisor struct {
	l        Layout
	log      *slog.Logger
	self     string
	kubeBin  string
	binDir   string
	mu       sync.Mutex
	children []*child
	stopping bool
}

// Supervise builds the sandbox described by the options file in the state
// directory, runs it until SIGTERM, then takes it down. It is the body of the
// background process that Up starts.
func Supervise(l Layout) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	data, err := os.ReadFile(l.optionsPath())
	if err != nil {
		return err
	}
	var opts Options
	if err := json.Unmarshal(data, &opts); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	kubeBin, err := kubetest.BinDir()
	if err != nil {
		return err
	}
	s := &supervisor{l: l, log: log, self: self, kubeBin: kubeBin, binDir: filepath.Dir(self)}
	state := &State{
		Options:       opts,
		Clusters:      Plan(opts),
		SupervisorPID: os.Getpid(),
		APIServers:    map[string]string{},
		StartedAt:     time.Now(),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	err = s.build(ctx, state)
	if err == nil {
		state.Ready = true
		if err = l.writeState(state); err == nil {
			log.Info("sandbox ready", "took", time.Since(state.StartedAt).Round(time.Millisecond))
			<-ctx.Done()
			log.Info("stopping")
		}
	} else {
		state.Error = err.Error()
		_ = l.writeState(state)
		log.Error("sandbox failed", "err", err)
	}
	s.stopAll()
	if derr := deleteNamespaces(); derr != nil {
		log.Warn("delete namespaces", "err", derr)
	}
	return err
}

func (s *supervisor) build(ctx context.Context, state *State) error {
	if err := buildNetwork(state.Clusters, AdminIPs(state.Options)); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	// Control planes first, all clusters at once: they take the longest.
	for _, c := range state.Clusters {
		f := s.l.cluster(c.Name)
		fw, err := newForwarder("/run/netns/"+controlNS(c.Name), netip.AddrPortFrom(c.ControlIP, APIServerPort).String(), s.log)
		if err != nil {
			return err
		}
		go fw.serve(ctx)
		state.APIServers[c.Name] = fmt.Sprintf("https://127.0.0.1:%d", fw.port())
		if err := clusterPKI(c, f, s.l.Kubeconfig(c.Name), s.l.AdminKubeconfig(c.Name), fw.port()); err != nil {
			return fmt.Errorf("%s: certificates: %w", c.Name, err)
		}
		if err := os.MkdirAll(f.path("logs"), 0o755); err != nil {
			return err
		}
		for _, argv := range controlPlaneCommands(c, f, s.kubeBin) {
			if err := s.start(filepath.Base(argv[0])+"-"+c.Name, controlNS(c.Name), f.path("logs", filepath.Base(argv[0])+".log"), argv...); err != nil {
				return err
			}
		}
	}
	for _, c := range state.Clusters {
		if err := s.waitAPIServer(ctx, c); err != nil {
			return err
		}
	}
	for _, c := range state.Clusters {
		f := s.l.cluster(c.Name)
		for _, n := range c.Nodes {
			cfgPath, err := s.writeNodeConfig(state.Options, c, n, f)
			if err != nil {
				return err
			}
			dir := s.l.NodeDir(n.Name)
			if err := s.start("node-agent-"+n.Name, NodeNS(n.Name), filepath.Join(dir, "agent.log"),
				s.self, "node-agent", "--config", cfgPath); err != nil {
				return err
			}
		}
	}
	for _, c := range state.Clusters {
		if err := s.waitNodesReady(ctx, c); err != nil {
			return err
		}
	}
	// Cluster DNS, all clusters at once, once there are nodes to run it.
	errs := make([]error, len(state.Clusters))
	var wg sync.WaitGroup
	for i, c := range state.Clusters {
		wg.Go(func() { errs[i] = s.deployClusterDNS(ctx, c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// clusterDNSTimeout bounds the wait for a cluster's CoreDNS: it is usually
// ready within seconds of being applied (its kubernetes plugin waits for
// kube-proxy to program the kubernetes Service, retrying with client-go's
// growing backoff). One CI run of the dual-stack sandbox (at b01a79e) timed
// out at a minute without saying why; the error now carries the pods'
// state and the e2e prints the logs, and the bound is two minutes, so a
// slow start is not taken for a broken one.
const clusterDNSTimeout = 2 * time.Minute

// deployClusterDNS applies CoreDNS to cluster c and waits until its
// Deployment is available (every replica ready).
func (s *supervisor) deployClusterDNS(ctx context.Context, c ClusterPlan) error {
	start := time.Now()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.l.Kubeconfig(c.Name))
	if err != nil {
		return fmt.Errorf("%s: cluster DNS: %w", c.Name, err)
	}
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		return fmt.Errorf("%s: cluster DNS: %w", c.Name, err)
	}
	v := clusterdns.Values{DNSServiceIP: c.DNSServiceIP}
	if len(c.DNSServiceIPs) > 1 {
		v.SecondaryDNSServiceIP = c.DNSServiceIPs[1]
	}
	if err := clusterdns.Apply(ctx, cl, v); err != nil {
		return fmt.Errorf("%s: cluster DNS: %w", c.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterDNSTimeout)
	defer cancel()
	if err := clusterdns.WaitAvailable(ctx, cl); err != nil {
		return fmt.Errorf("%s: cluster DNS: %w", c.Name, err)
	}
	// A ready Deployment is not yet a served Service: every node's
	// kube-proxy must have programmed the DNS service IP, or a pod's first
	// lookups time out. Ask it from each node, as a pod there would.
	// In a dual-stack cluster, at each of the Service's addresses.
	for _, n := range c.Nodes {
		for _, server := range c.DNSServiceIPs {
			if err := waitDNSAnswers(ctx, "/run/netns/"+NodeNS(n.Name), server, c.KubernetesServiceIP.Is6()); err != nil {
				return fmt.Errorf("%s: cluster DNS %s from node %s: %w", c.Name, server, n.Name, err)
			}
		}
	}
	s.log.Info("cluster DNS available", "cluster", c.Name, "service", c.DNSServiceIP, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// waitDNSAnswers polls the cluster DNS service at server:53 over UDP from the
// network namespace at netnsPath until it answers the query for the
// kubernetes Service (A, or AAAA with aaaa: the kubernetes Service has the
// cluster's primary family only) with NOERROR and an address. It returns the
// last failure when ctx ends.
func waitDNSAnswers(ctx context.Context, netnsPath string, server netip.Addr, aaaa bool) error {
	name := "kubernetes.default.svc." + clusterdns.ClusterDomain + "."
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		conn, err := dialInNetns(netnsPath, "udp", netip.AddrPortFrom(server, 53).String())
		if err != nil {
			last = err
			return false, nil
		}
		defer conn.Close()
		q := new(dns.Msg)
		qtype := dns.TypeA
		if aaaa {
			qtype = dns.TypeAAAA
		}
		q.SetQuestion(name, qtype)
		c := &dns.Client{Timeout: time.Second}
		r, _, err := c.ExchangeWithConn(q, &dns.Conn{Conn: conn})
		switch {
		case err != nil:
			last = err
		case r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0:
			last = fmt.Errorf("%s: rcode %s, %d answers", name, dns.RcodeToString[r.Rcode], len(r.Answer))
		default:
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return nil
}

func (s *supervisor) writeNodeConfig(opts Options, c ClusterPlan, n NodePlan, f clusterFiles) (string, error) {
	dir := s.l.NodeDir(n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	labels := map[string]string{
		"topology.kubernetes.io/region": c.Region,
		"topology.kubernetes.io/zone":   n.Zone,
	}
	annotations := map[string]string{}
	if n.Gateway {
		labels[node.GatewayCapableLabel] = "true"
		// One address, the primary family's: Strait's annotation holds one.
		annotations[node.PublicIPAnnotation] = n.PublicIP.String()
	}
	cfg := node.Config{
		NodeName:            n.Name,
		Cluster:             c.Name,
		Kubeconfig:          f.path("kubeconfig", "node-"+n.Name),
		ProxyKubeconfig:     f.path("kubeconfig", "kube-proxy"),
		NodeIP:              n.IP,
		NodeIPs:             n.IPs,
		ClusterPodCIDR:      c.PodCIDR,
		ClusterPodCIDRs:     c.PodCIDRs,
		ServiceCIDR:         c.ServiceCIDR,
		KubernetesServiceIP: c.KubernetesServiceIP,
		ClusterDNS:          c.DNSServiceIP,
		ClusterDomain:       clusterdns.ClusterDomain,
		ProxyMode:           c.ProxyMode,
		KubeletCertFile:     f.path("pki", "kubelet-"+n.Name+".crt"),
		KubeletKeyFile:      f.path("pki", "kubelet-"+n.Name+".key"),
		ClientCAFile:        f.path("pki", "ca.crt"),
		Labels:              labels,
		Annotations:         annotations,
		Dir:                 dir,
		KubeBin:             s.kubeBin,
		ImageBin:            s.binDir,
		ImageDir:            "/run/strait-sandbox/images",
		CreatedPathsFile:    s.l.createdPathsFile(),
		StopGrace:           stopGrace,
		MarkerEnv:           MarkerEnv + "=" + s.l.Dir,
		SandboxExecutable:   s.self,
	}
	if opts.Runtime == node.RuntimeOCI {
		cfg.Runtime = node.RuntimeOCI
		cfg.ImageArchives = cmp.Or(opts.Images, filepath.Join(filepath.Dir(s.binDir), "images"))
		// Unpacked once per image digest for every node, and gone with
		// the sandbox.
		cfg.ImageCache = filepath.Join(s.l.Dir, "images")
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "agent.json")
	return path, os.WriteFile(path, data, 0o644)
}

// start starts argv inside network namespace ns, logging to logPath, and
// restarts it with back-off whenever it exits until the sandbox stops: a
// controller manager that starts before the apiserver's RBAC bootstrap is
// complete exits, as it would under a real kubelet, and comes back.
func (s *supervisor) start(name, ns, logPath string, argv ...string) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	c := &child{name: name}
	launch := func() error {
		// "ip netns exec" enters the namespace (and a mount namespace of its
		// own with /sys for it) and execs argv, so the parent-death signal holds.
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.Env = append(os.Environ(), MarkerEnv+"="+s.l.Dir)
		if err := proc.Start(cmd); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		c.cmd, c.exited = cmd, make(chan struct{})
		return nil
	}
	if err := launch(); err != nil {
		logFile.Close()
		return err
	}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	go func() {
		defer logFile.Close()
		backoff := time.Second
		for {
			s.mu.Lock()
			cmd, exited := c.cmd, c.exited
			s.mu.Unlock()
			err := cmd.Wait()
			close(exited)
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping {
				return
			}
			s.log.Warn("process exited; restarting", "name", name, "err", err, "in", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, 10*time.Second)
			s.mu.Lock()
			if s.stopping {
				s.mu.Unlock()
				return
			}
			err = launch()
			s.mu.Unlock()
			if err != nil {
				s.log.Error("restart", "name", name, "err", err)
				return
			}
		}
	}()
	return nil
}

// stopAll stops every process: node agents first, with time to stop their
// pods, then the control planes. A sandbox's etcd and apiservers are thrown
// away, so they get a moment to exit and are then killed: a graceful
// apiserver shutdown drains watches for many seconds and protects nothing here.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	s.stopping = true
	children := append([]*child(nil), s.children...)
	s.mu.Unlock()
	var agents, others []*child
	for _, c := range children {
		if strings.HasPrefix(c.name, "node-agent-") {
			agents = append(agents, c)
		} else {
			others = append(others, c)
		}
	}
	s.stopGroup(agents, stopGrace+5*time.Second)
	s.stopGroup(others, controlPlaneGrace)
}

// controlPlaneGrace is how long etcd and the Kubernetes control-plane
// processes get between SIGTERM and SIGKILL when the sandbox goes down.
const controlPlaneGrace = time.Second

func (s *supervisor) stopGroup(children []*child, grace time.Duration) {
	var wg sync.WaitGroup
	for _, c := range children {
		s.mu.Lock()
		cmd, exited := c.cmd, c.exited
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			proc.StopWaiting(cmd, grace, exited)
			s.log.Info("stopped", "name", c.name, "took", time.Since(start).Round(time.Millisecond))
		}()
	}
	wg.Wait()
}

func (s *supervisor) clientFor(c ClusterPlan) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.l.Kubeconfig(c.Name))
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (s *supervisor) waitAPIServer(ctx context.Context, c ClusterPlan) error {
	cs, err := s.clientFor(c)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		// The default ServiceAccount appears once the controller manager runs;
		// pods cannot be admitted before.
		_, last = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s: control plane not ready: %w (last: %v)", c.Name, err, last)
	}
	return nil
}

func (s *supervisor) waitNodesReady(ctx context.Context, c ClusterPlan) error {
	cs, err := s.clientFor(c)
	if err != nil {
		return err
	}
	var notReady []string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		notReady = notReady[:0]
		for _, n := range c.Nodes {
			obj, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || !nodeReady(obj) {
				notReady = append(notReady, n.Name)
			}
		}
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%s: nodes %v not ready: %w", c.Name, notReady, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	if n.Spec.PodCIDR == "" {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// errNotUp is returned by the commands that need a running sandbox.
var errNotUp = errors.New("no sandbox is up (run 'strait-sandbox up' or 'make sandbox')")
