package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/test/proc"
)

// Agent is one node's agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	client  kubernetes.Interface
	podCIDR netip.Prefix
	gateway netip.Addr // first address of podCIDR: the pods' next hop
	// podCIDRs and gateways are those of every family, primary first (the
	// primary ones are podCIDR and gateway); empty means podCIDR alone.
	podCIDRs []netip.Prefix
	gateways []netip.Addr

	// oci runs Strait's images under crun (Config.Runtime oci); nil runs
	// them as host processes.
	oci *ociRuntime

	mu      sync.Mutex
	workers map[string]*podWorker // by pod UID
	ips     map[netip.Addr]bool   // allocated pod IPs
	wg      sync.WaitGroup
}

// Run runs the agent until ctx ends, then stops every pod.
func Run(ctx context.Context, cfg Config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.NodeName)
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 50, 100
	a := &Agent{cfg: cfg, log: log, workers: map[string]*podWorker{}, ips: map[netip.Addr]bool{}}
	if a.client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if err := a.prepareHost(); err != nil {
		return fmt.Errorf("prepare node host: %w", err)
	}
	if a.oci, err = newOCIRuntime(cfg); err != nil {
		return err
	}
	if err := a.register(ctx); err != nil {
		return fmt.Errorf("register node: %w", err)
	}
	stopKubeletAPI, err := a.startKubeletServer(ctx)
	if err != nil {
		return err
	}
	defer stopKubeletAPI()
	if err := a.setupPodNetwork(ctx); err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	proxy, err := a.startKubeProxy()
	if err != nil {
		return err
	}
	if err := a.setReady(ctx); err != nil {
		return err
	}
	go a.heartbeat(ctx)
	go a.watchNodes(ctx)
	a.runPods(ctx)

	<-ctx.Done()
	log.Info("stopping pods")
	a.mu.Lock()
	for _, w := range a.workers {
		w.shutdown()
	}
	a.mu.Unlock()
	a.wg.Wait()
	proc.Stop(proxy, 5*time.Second)
	return nil
}

// prepareHost gives the node its own /run (so per-node runtime files such as
// /run/xtables.lock and /run/wireguard do not collide between nodes) and its
// own /etc/resolv.conf, and turns on forwarding. "ip netns exec" already put the agent in a mount
// namespace of its own whose mounts do not propagate back to the machine.
func (a *Agent) prepareHost() error {
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755,size=64m"); err != nil {
		return fmt.Errorf("mount /run: %w", err)
	}
	for _, d := range []string{"/run/wireguard", "/run/netns", "/run/lock"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	sysctls := map[string]string{
		"net/ipv4/ip_forward":             "1",
		"net/ipv4/conf/all/rp_filter":     "0",
		"net/ipv4/conf/default/rp_filter": "0",
	}
	if a.cfg.hasIPv6() {
		sysctls["net/ipv6/conf/all/forwarding"] = "1"
	}
	for key, value := range sysctls {
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", key, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(a.cfg.Dir, "pods"), 0o755); err != nil {
		return err
	}
	// The node's own resolv.conf, which hostNetwork and dnsPolicy Default
	// pods get: the machine's would point at a resolver the node cannot reach.
	return installNodeResolvConf(a.cfg.Dir)
}

func (a *Agent) register(ctx context.Context) error {
	labels := map[string]string{
		"kubernetes.io/hostname": a.cfg.NodeName,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
	}
	for k, v := range a.cfg.Labels {
		labels[k] = v
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: labels, Annotations: a.cfg.Annotations}}
	_, err := a.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// kube-controller-manager allocates the node's pod CIDRs, one per
	// family of the cluster.
	families := len(a.cfg.clusterPodCIDRs())
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil || n.Spec.PodCIDR == "" || len(n.Spec.PodCIDRs) < families {
			return false, nil
		}
		a.podCIDRs, a.gateways = nil, nil
		for _, s := range n.Spec.PodCIDRs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return false, err
			}
			a.podCIDRs = append(a.podCIDRs, p)
			a.gateways = append(a.gateways, p.Addr().Next())
		}
		a.podCIDR, a.gateway = a.podCIDRs[0], a.gateways[0]
		a.log.Info("registered", "podCIDRs", a.podCIDRs)
		return true, nil
	})
}

// podNets are the node's pod CIDRs and the pods' next hop in each, primary
// family first.
func (a *Agent) podNets() ([]netip.Prefix, []netip.Addr) {
	if len(a.podCIDRs) == 0 {
		return []netip.Prefix{a.podCIDR}, []netip.Addr{a.gateway}
	}
	return a.podCIDRs, a.gateways
}

func (a *Agent) nodeStatus(ready bool) corev1.NodeStatus {
	now := metav1.Now()
	status := corev1.ConditionFalse
	reason, msg := "SandboxNodeStarting", "the sandbox node agent is starting"
	if ready {
		status, reason, msg = corev1.ConditionTrue, "SandboxNodeReady", "the sandbox node agent is running"
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: status, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: KubeletPort}},
		Addresses:       a.nodeAddresses(),
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "strait-sandbox",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			ContainerRuntimeVersion: "strait-sandbox://processes",
		},
	}
}

// nodeAddresses are the Node's status.addresses: an InternalIP per family,
// primary first (as the kubelet lists its --node-ip), then the host name.
func (a *Agent) nodeAddresses() []corev1.NodeAddress {
	var addrs []corev1.NodeAddress
	for _, ip := range a.cfg.nodeIPs() {
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
	}
	return append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: a.cfg.NodeName})
}

// setReady writes the node's status with a patch of the status subresource,
// as the kubelet does: an update of the whole object would carry the taints
// it read, and NodeRestriction refuses a node that changes its own taints.
func (a *Agent) setReady(ctx context.Context) error {
	patch, err := json.Marshal(map[string]any{"status": a.nodeStatus(true)})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// readyAtAPIServer reports whether the apiserver's Node says Ready. The
// node lifecycle controller sets it Unknown when the Lease lapses (an
// apiserver frozen past the grace period is enough), and, as with the
// kubelet, only the node sets it back. An error counts as ready: the
// periodic refresh covers it.
func (a *Agent) readyAtAPIServer(ctx context.Context) bool {
	n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return true
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// heartbeat renews the node Lease and the Ready condition: at once when the
// apiserver's Node is not Ready, else every statusRefresh.
func (a *Agent) heartbeat(ctx context.Context) {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	lastStatus := time.Now()
	for {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To(a.cfg.NodeName),
					LeaseDurationSeconds: ptr.To(int32(leaseDuration.Seconds())),
					RenewTime:            &now,
				},
			}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
		case err == nil:
			l.Spec.RenewTime = &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("renew lease", "err", err)
		}
		if time.Since(lastStatus) > statusRefresh || !a.readyAtAPIServer(ctx) {
			if err := a.setReady(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("refresh node status", "err", err)
			} else {
				lastStatus = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(leaseRenew):
		}
	}
}

// startKubeProxy runs kube-proxy in the node's namespaces, in the mode
// Config.ProxyMode names ("iptables" when empty). Both modes take the same
// flags: in nftables mode kube-proxy 1.37 runs the nft binary (1.0.1 or
// later, on kernel 5.13 or later) and, like iptables mode, writes only the
// node's own network namespace (the conntrack flags below keep it off the
// conntrack sysctls, which are machine-wide).
func (a *Agent) startKubeProxy() (*exec.Cmd, error) {
	mode := a.cfg.ProxyMode
	if mode == "" {
		mode = "iptables"
	}
	logFile, err := os.Create(filepath.Join(a.cfg.Dir, "kube-proxy.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(a.cfg.KubeBin, "kube-proxy"),
		"--kubeconfig="+a.cfg.ProxyKubeconfig,
		"--hostname-override="+a.cfg.NodeName,
		"--proxy-mode="+mode,
		"--cluster-cidr="+cidr.Join(a.cfg.clusterPodCIDRs()),
		"--bind-address="+a.cfg.NodeIP.String(),
		"--metrics-bind-address=127.0.0.1:10249",
		"--healthz-bind-address=127.0.0.1:10256",
		// conntrack limits are machine-wide sysctls, not per namespace: a
		// sandbox node must not change them for the whole machine.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--profiling=false",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), a.cfg.MarkerEnv)
	if err := proc.Start(cmd); err != nil {
		return nil, fmt.Errorf("start kube-proxy: %w", err)
	}
	return cmd, nil
}

// watchNodes keeps a route to every other node's pod CIDR via that node
// (host-gw), as flannel's host-gw backend does. Like a CNI daemon it reads
// all Nodes with an identity of its own, kube-proxy's: the Node authorizer
// lets a node read only its own Node object.
func (a *Agent) watchNodes(ctx context.Context) {
	rc, err := clientcmd.BuildConfigFromFlags("", a.cfg.ProxyKubeconfig)
	if err != nil {
		a.log.Error("pod network routes", "err", err)
		return
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		a.log.Error("pod network routes", "err", err)
		return
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().Nodes().Informer()
	routes := map[string]string{} // pod CIDR -> via
	reconcile := func() {
		want := map[string]string{}
		for _, obj := range inf.GetStore().List() {
			n := obj.(*corev1.Node)
			if n.Name == a.cfg.NodeName {
				continue
			}
			maps.Copy(want, podRoutes(n))
		}
		for cidr, via := range want {
			if routes[cidr] != via {
				if err := ip("route", "replace", cidr, "via", via); err != nil {
					a.log.Warn("pod route", "cidr", cidr, "err", err)
					continue
				}
				routes[cidr] = via
			}
		}
		for cidr := range routes {
			if _, ok := want[cidr]; !ok {
				_ = ip("route", "del", cidr)
				delete(routes, cidr)
			}
		}
	}
	var mu sync.Mutex
	handler := func() { mu.Lock(); defer mu.Unlock(); reconcile() }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { handler() },
		UpdateFunc: func(any, any) { handler() },
		DeleteFunc: func(any) { handler() },
	})
	factory.Start(ctx.Done())
}

// podRoutes are the host-gw routes to node n's pod CIDRs: each via n's
// InternalIP of the same family (pod CIDR -> via).
func podRoutes(n *corev1.Node) map[string]string {
	want := map[string]string{}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			continue
		}
		for _, addr := range n.Status.Addresses {
			ip, err := netip.ParseAddr(addr.Address)
			if addr.Type == corev1.NodeInternalIP && err == nil && ip.Is4() == p.Addr().Is4() {
				want[p.String()] = ip.String()
				break
			}
		}
	}
	return want
}

// runPods watches the pods bound to this node and keeps a worker per pod.
func (a *Agent) runPods(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	inf := factory.Core().V1().Pods().Informer()
	update := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		w, ok := a.workers[string(pod.UID)]
		if !ok {
			if ctx.Err() != nil {
				return
			}
			w = newPodWorker(a, pod)
			a.workers[string(pod.UID)] = w
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				w.run(ctx)
				a.mu.Lock()
				delete(a.workers, string(pod.UID))
				a.mu.Unlock()
			}()
		}
		w.update(pod)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				a.mu.Lock()
				if w := a.workers[string(pod.UID)]; w != nil {
					w.gone()
				}
				a.mu.Unlock()
			}
		},
	})
	factory.Start(ctx.Done())
}

// allocateIP takes a free pod address from the node's pod CIDR cidr, whose
// first address gateway is the pods' next hop.
func (a *Agent) allocateIP(cidr netip.Prefix, gateway netip.Addr) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for addr := gateway.Next(); cidr.Contains(addr); addr = addr.Next() {
		if !cidr.Contains(addr.Next()) {
			break // the broadcast address of an IPv4 prefix
		}
		if !a.ips[addr] {
			a.ips[addr] = true
			return addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s is full", cidr)
}

func (a *Agent) releaseIP(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.ips, addr)
}

// ip runs an iproute2 command in the agent's network namespace.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
