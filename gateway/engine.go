package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/health"
	"strait.dev/strait/gateway/natdiscovery"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/pkg/syncer"
)

// Leader election timing. The Lease is the authority on which gateway is
// active; heartbeats between the gateways make a takeover fast (see
// elector). leaseDuration is how long a Lease whose holder neither renews
// nor answers heartbeats stands; renewDeadline bounds one renewal; the
// active gateway renews, and standbys look, every retryPeriod.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
	// LeaseName is the Lease the gateways of a cluster compete for.
	LeaseName = v1.GatewayLeaseName
	// DefaultHeartbeatInterval and DefaultHeartbeatFailures: standbys take
	// over 4 × 100 ms after the active gateway's last answer. Shorter would
	// risk a takeover on a busy 2-core node's scheduling hiccup; a takeover
	// costs a fraction of a second of traffic, so a rare false one is cheap.
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultHeartbeatFailures = 4
	// statusInterval bounds how stale the Gateway status can get.
	statusInterval = 30 * time.Second
)

// Config is a gateway engine's configuration.
type Config struct {
	ClusterID    string
	Namespace    string // strait-system
	NodeName     string
	PodCIDRs     []netip.Prefix
	ServiceCIDRs []netip.Prefix
	CableDriver  v1.CableDriver
	// WireGuardPort and VXLAN settings are published in the Endpoint.
	WireGuardPort    int32
	VXLANPort        int32
	VXLANVNI         int32
	NATDiscoveryPort int32
	// HealthCheckPort is the UDP port of the health probes between gateways.
	HealthCheckPort int
	// HealthCheckInterval is the time between probes of one connection.
	HealthCheckInterval time.Duration
	// HealthCheckFailures is how many unanswered probes make an error.
	HealthCheckFailures int
	// HeartbeatInterval and HeartbeatFailures: how often standbys probe the
	// active gateway, and how many unanswered probes make them take over.
	HeartbeatInterval time.Duration
	HeartbeatFailures int
	// PublicIP overrides the node's strait.dev/public-ip annotation.
	PublicIP netip.Addr
	// BrokerSecret names the Secret holding the member's broker credential.
	BrokerSecret string
	// Dataplane receives the desired set of remote endpoints.
	Dataplane Dataplane
	// Metrics, when set, are kept up to date.
	Metrics *Metrics
	Log     *slog.Logger
}

// PublicIPAnnotation on a Node gives the address other clusters reach it at.
const PublicIPAnnotation = v1.PublicIPAnnotation

// Engine is one gateway node's engine.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	rest *rest.Config
	kube kubernetes.Interface
	c    client.Client
	// wgKey is this node's WireGuard private key, once read.
	wgKey wgtypes.Key
}

// New makes an engine that talks to the local cluster through rc.
func New(rc *rest.Config, cfg Config) (*Engine, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Dataplane == nil {
		return nil, errors.New("no data plane")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.HeartbeatFailures <= 0 {
		cfg.HeartbeatFailures = DefaultHeartbeatFailures
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	c, err := client.New(rc, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName, "cluster", cfg.ClusterID), rest: rc, kube: kube, c: c}, nil
}

// Run runs the engine until ctx ends or this gateway loses the active role
// (then it returns an error, and its restart comes back as a standby).
func (e *Engine) Run(ctx context.Context) error {
	if err := e.writeStatus(ctx, v1.HAStatusPassive, ""); err != nil {
		return fmt.Errorf("gateway status: %w", err)
	}
	el := &elector{
		kube: e.kube, namespace: e.cfg.Namespace, identity: e.cfg.NodeName,
		heartbeatPort: e.cfg.HealthCheckPort, heartbeatInterval: e.cfg.HeartbeatInterval,
		heartbeatFailures: e.cfg.HeartbeatFailures, log: e.log,
		standby: func() {
			if err := e.cfg.Dataplane.Close(); err != nil {
				e.log.Warn("removing a predecessor's data plane", "err", err)
			}
		},
	}
	epoch, err := el.acquire(ctx)
	if err != nil {
		return e.stopped()
	}
	e.log.Info("active", "epoch", epoch)
	actx, cancel := context.WithCancel(ctx)
	held := make(chan error, 1)
	go func() { held <- el.hold(actx) }()
	activeErr := make(chan error, 1)
	go func() { activeErr <- e.runActive(actx, epoch) }()
	var lost error
	select {
	case lost = <-held:
		cancel()
		<-activeErr
	case err := <-activeErr:
		cancel()
		<-held // releases the Lease
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("active gateway stopped")
			}
			return err
		}
	}
	if ctx.Err() != nil {
		return e.stopped()
	}
	return lost
}

// stopped records, on a clean stop (SIGTERM), that this gateway is not
// active, so that the status does not claim an active gateway that is gone.
// Best effort: the apiserver may be away.
func (e *Engine) stopped() error {
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := e.writeStatus(sctx, v1.HAStatusPassive, ""); err != nil {
		e.log.Warn("final status", "err", err)
	}
	return nil
}

// runActive is the active gateway's work: publish, sync, and drive the data plane.
func (e *Engine) runActive(ctx context.Context, epoch int32) error {
	// Answer heartbeats and health probes first: the standbys watch for it.
	prober, err := e.startProber(ctx)
	if err != nil {
		return err
	}
	local, err := e.localEndpoint(ctx)
	if err != nil {
		return err
	}
	local.Annotations = map[string]string{v1.GatewayEpochAnnotation: strconv.Itoa(int(epoch))}
	if err := e.writeStatus(ctx, v1.HAStatusActive, local.Name); err != nil {
		return err
	}
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.SetActive(true)
		defer e.cfg.Metrics.SetActive(false)
	}
	if err := e.publish(ctx, local); err != nil {
		return err
	}
	syncer, err := e.newSyncer(ctx)
	if err != nil {
		return err
	}
	go func() {
		if err := syncer.Run(ctx); err != nil {
			e.log.Error("syncer", "err", err)
		}
	}()
	// Drive the data plane from the imported Endpoints; take it down when
	// this gateway stops being active.
	defer func() {
		if err := e.cfg.Dataplane.Close(); err != nil {
			e.log.Warn("data plane cleanup", "err", err)
		}
	}()
	discovery, err := e.startDiscovery(ctx)
	if err != nil {
		return err
	}
	// React to imported Endpoints at once (a remote failover), and look
	// again every second for health and status.
	kick, err := e.watchEndpoints(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last []string
	var lastStatus []v1.Connection
	statusTick := time.Now()
	for {
		remotes, err := e.remoteEndpoints(ctx)
		if err == nil {
			discovery.SetTargets(discoveryTargets(remotes))
			l := e.local(local)
			l.Reach = map[string]netip.Addr{}
			names := make([]string, len(remotes))
			for i, r := range remotes {
				if a, _ := discovery.Choice(r.Name); a.IsValid() {
					l.Reach[r.Name] = a
				}
				names[i] = r.Name + "@" + r.ResourceVersion + "@" + l.Reach[r.Name].String()
			}
			if fmt.Sprint(names) != fmt.Sprint(last) {
				if err := e.cfg.Dataplane.Set(ctx, l, remotes); err != nil {
					e.log.Warn("data plane", "err", err)
				} else {
					last = names
				}
			}
			prober.SetTargets(healthTargets(remotes, e.cfg.HealthCheckPort))
			// Write the status when a connection changes state, and refresh
			// the round-trip times now and then: at most once a tick.
			conns := connections(local.Spec, remotes, prober.Results(), l.Reach)
			if e.cfg.Metrics != nil {
				var traffic map[string]cable.Traffic
				if tc, ok := e.cfg.Dataplane.(interface {
					Traffic() map[string]cable.Traffic
				}); ok {
					traffic = tc.Traffic()
				}
				e.cfg.Metrics.SetConnections(conns, traffic)
			}
			if !sameStates(conns, lastStatus) || time.Since(statusTick) > statusInterval {
				if err := e.writeStatus(ctx, v1.HAStatusActive, local.Name, conns...); err == nil {
					statusTick, lastStatus = time.Now(), conns
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-kick:
		}
	}
}

// watchEndpoints signals on every change to the namespace's Endpoints.
func (e *Engine) watchEndpoints(ctx context.Context) (<-chan struct{}, error) {
	dyn, err := dynamic.NewForConfig(e.rest)
	if err != nil {
		return nil, err
	}
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, statusInterval, e.cfg.Namespace, nil)
	inf := f.ForResource(v1.SchemeGroupVersion.WithResource("endpoints")).Informer()
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) { poke() }, DeleteFunc: func(any) { poke() },
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	return kick, nil
}

// local is the local gateway as the data plane needs it.
func (e *Engine) local(ep *v1.Endpoint) Local {
	l := Local{Spec: ep.Spec, PrivateKey: e.privateKey()}
	for _, ip := range ep.Spec.HealthCheckIPs {
		if a, err := netip.ParseAddr(string(ip)); err == nil {
			l.HealthCheckIPs = append(l.HealthCheckIPs, a)
		}
	}
	return l
}

// startProber answers and sends health probes on the health-check port.
func (e *Engine) startProber(ctx context.Context) (*health.Prober, error) {
	conn, err := listenUDP(ctx, e.cfg.HealthCheckPort)
	if err != nil {
		return nil, fmt.Errorf("health-check port %d: %w", e.cfg.HealthCheckPort, err)
	}
	p := health.NewProber(conn, health.Options{
		Interval: e.cfg.HealthCheckInterval, Failures: e.cfg.HealthCheckFailures, Log: e.log,
		OnChange: func(target string, r health.Result) {
			e.log.Info("connection", "endpoint", target, "status", r.Status, "message", r.Message)
		},
	})
	go func() { _ = p.Run(ctx) }()
	return p, nil
}

// startDiscovery answers and sends NAT discovery requests on the NAT
// discovery port.
func (e *Engine) startDiscovery(ctx context.Context) (*natdiscovery.Discoverer, error) {
	conn, err := listenUDP(ctx, int(e.cfg.NATDiscoveryPort))
	if err != nil {
		return nil, fmt.Errorf("NAT discovery port %d: %w", e.cfg.NATDiscoveryPort, err)
	}
	d := natdiscovery.New(conn)
	go func() { _ = d.Run(ctx) }()
	return d, nil
}

// listenUDP binds a UDP port on every address, retrying for a few seconds:
// a predecessor on the same host may still be letting go of it.
func listenUDP(ctx context.Context, port int) (*net.UDPConn, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// discoveryTargets are the remote endpoints' private and public addresses
// at their NAT discovery ports.
func discoveryTargets(remotes []v1.Endpoint) map[string]natdiscovery.Target {
	out := map[string]natdiscovery.Target{}
	for _, r := range remotes {
		if r.Spec.NATDiscoveryPort == 0 {
			continue
		}
		port := uint16(r.Spec.NATDiscoveryPort)
		var t natdiscovery.Target
		if len(r.Spec.PrivateIPs) > 0 {
			if a, err := netip.ParseAddr(string(r.Spec.PrivateIPs[0])); err == nil {
				t.Private = netip.AddrPortFrom(a, port)
			}
		}
		if len(r.Spec.PublicIPs) > 0 {
			if a, err := netip.ParseAddr(string(r.Spec.PublicIPs[0])); err == nil {
				t.Public = netip.AddrPortFrom(a, port)
			}
		}
		out[r.Name] = t
	}
	return out
}

func healthTargets(remotes []v1.Endpoint, port int) map[string]netip.AddrPort {
	out := map[string]netip.AddrPort{}
	for _, r := range remotes {
		if len(r.Spec.HealthCheckIPs) == 0 {
			continue
		}
		if a, err := netip.ParseAddr(string(r.Spec.HealthCheckIPs[0])); err == nil {
			out[r.Name] = netip.AddrPortFrom(a, uint16(port))
		}
	}
	return out
}

// connections renders the Gateway status of every remote endpoint.
func connections(local v1.EndpointSpec, remotes []v1.Endpoint, results map[string]health.Result, reach map[string]netip.Addr) []v1.Connection {
	var out []v1.Connection
	for _, r := range remotes {
		c := v1.Connection{ClusterID: r.Spec.ClusterID, Endpoint: r.Name, Status: v1.Connecting,
			StatusMessage: "no health-check address published", UsingNAT: behindNAT(local) || behindNAT(r.Spec)}
		if a, ok := reach[r.Name]; ok {
			c.UsingIP = v1.IP(a.String())
		} else if a, err := reachAddress(r.Spec); err == nil {
			c.UsingIP = v1.IP(a.String())
		}
		if res, ok := results[r.Name]; ok {
			c.Status, c.StatusMessage = v1.ConnectionStatus(res.Status), res.Message
			if res.Last > 0 {
				c.LatencyRTT = &v1.LatencyRTT{
					Last: metav1.Duration{Duration: res.Last}, Min: metav1.Duration{Duration: res.Min},
					Average: metav1.Duration{Duration: res.Average}, Max: metav1.Duration{Duration: res.Max},
				}
			}
		}
		if r.Spec.CableDriver != local.CableDriver {
			c.Status = v1.ConnectionError
			c.StatusMessage = fmt.Sprintf("the remote gateway uses %s, this one %s", r.Spec.CableDriver, local.CableDriver)
		}
		out = append(out, c)
	}
	return out
}

// sameStates compares connections ignoring round-trip times.
func sameStates(a, b []v1.Connection) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Endpoint != b[i].Endpoint || a[i].Status != b[i].Status || a[i].StatusMessage != b[i].StatusMessage || a[i].UsingIP != b[i].UsingIP {
			return false
		}
	}
	return true
}

func (e *Engine) privateKey() string {
	if e.wgKey == (wgtypes.Key{}) {
		return ""
	}
	return e.wgKey.String()
}

// localEndpoint describes this node as its cluster's gateway.
func (e *Engine) localEndpoint(ctx context.Context) (*v1.Endpoint, error) {
	node, err := e.kube.CoreV1().Nodes().Get(ctx, e.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read node %s: %w", e.cfg.NodeName, err)
	}
	var private v1.DualStackIPs
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				private = append(private, v1.IP(ip.String()))
			}
		}
	}
	if len(private) == 0 {
		return nil, fmt.Errorf("node %s has no InternalIP", e.cfg.NodeName)
	}
	public := private
	natted := false
	if e.cfg.PublicIP.IsValid() {
		public = v1.DualStackIPs{v1.IP(e.cfg.PublicIP.String())}
	} else if a := node.Annotations[PublicIPAnnotation]; a != "" {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("node %s: annotation %s=%q: %w", node.Name, PublicIPAnnotation, a, err)
		}
		public = v1.DualStackIPs{v1.IP(ip.String())}
	}
	// Behind NAT when the public address is not one of this host's own (the
	// engine runs in the node's network namespace).
	if len(public) > 0 {
		if ip, err := netip.ParseAddr(string(public[0])); err == nil {
			natted = !localAddress(ip)
		}
	}
	// The health-check address is the first address of the node's pod CIDR:
	// inside the cluster's subnets, so it is reached through the cable, and
	// unique to the node. The data plane puts it on the cable device.
	var healthIPs v1.DualStackIPs
	podCIDRs := node.Spec.PodCIDRs
	if len(podCIDRs) == 0 && node.Spec.PodCIDR != "" {
		podCIDRs = []string{node.Spec.PodCIDR}
	}
	for _, s := range podCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil && len(healthIPs) < 2 {
			healthIPs = append(healthIPs, v1.IP(p.Masked().Addr().Next().String()))
		}
	}
	var subnets []v1.CIDR
	for _, p := range append(append([]netip.Prefix(nil), e.cfg.PodCIDRs...), e.cfg.ServiceCIDRs...) {
		subnets = append(subnets, v1.CIDR(p.Masked().String()))
	}
	ep := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{
			Name:      EndpointName(e.cfg.ClusterID, e.cfg.NodeName),
			Namespace: e.cfg.Namespace,
			Labels:    map[string]string{v1.ClusterIDLabel: e.cfg.ClusterID},
		},
		Spec: v1.EndpointSpec{
			ClusterID:        v1.ClusterID(e.cfg.ClusterID),
			Hostname:         e.cfg.NodeName,
			PrivateIPs:       private,
			PublicIPs:        public,
			NATTraversal:     natted,
			NATDiscoveryPort: e.cfg.NATDiscoveryPort,
			Subnets:          subnets,
			CableDriver:      e.cfg.CableDriver,
			HealthCheckIPs:   healthIPs,
		},
	}
	switch e.cfg.CableDriver {
	case v1.CableDriverWireGuard:
		key, err := ensureWireGuardKey(ctx, e.kube, e.cfg.Namespace, e.cfg.NodeName)
		if err != nil {
			return nil, err
		}
		e.wgKey = key
		ep.Spec.WireGuard = &v1.WireGuardConfig{PublicKey: key.PublicKey().String(), Port: e.cfg.WireGuardPort}
	case v1.CableDriverVXLAN:
		ep.Spec.VXLAN = &v1.VXLANConfig{VNI: e.cfg.VXLANVNI, Port: e.cfg.VXLANPort}
	default:
		return nil, fmt.Errorf("unknown cable driver %q", e.cfg.CableDriver)
	}
	return ep, nil
}

// EndpointName is the name of a gateway node's Endpoint.
func EndpointName(clusterID, node string) string { return clusterID + "-" + node }

// publish writes the local Cluster and Endpoint into the local namespace,
// where the syncer exports them, and removes Endpoints that earlier active
// gateways of this cluster left.
func (e *Engine) publish(ctx context.Context, local *v1.Endpoint) error {
	var podCIDRs, svcCIDRs []v1.CIDR
	for _, p := range e.cfg.PodCIDRs {
		podCIDRs = append(podCIDRs, v1.CIDR(p.Masked().String()))
	}
	for _, p := range e.cfg.ServiceCIDRs {
		svcCIDRs = append(svcCIDRs, v1.CIDR(p.Masked().String()))
	}
	cluster := &v1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: e.cfg.ClusterID, Namespace: e.cfg.Namespace, Labels: map[string]string{v1.ClusterIDLabel: e.cfg.ClusterID}},
		Spec:       v1.ClusterSpec{ClusterID: v1.ClusterID(e.cfg.ClusterID), PodCIDRs: podCIDRs, ServiceCIDRs: svcCIDRs},
	}
	if node, err := e.kube.CoreV1().Nodes().Get(ctx, e.cfg.NodeName, metav1.GetOptions{}); err == nil {
		cluster.Spec.Topology.Region = node.Labels[corev1.LabelTopologyRegion]
	}
	for _, obj := range []client.Object{cluster, local} {
		if err := e.apply(ctx, obj); err != nil {
			return err
		}
	}
	var eps v1.EndpointList
	if err := e.c.List(ctx, &eps, client.InNamespace(e.cfg.Namespace), client.MatchingLabels{v1.ClusterIDLabel: e.cfg.ClusterID}); err != nil {
		return err
	}
	for _, ep := range eps.Items {
		if ep.Name != local.Name {
			e.log.Info("removing the Endpoint of a former active gateway", "endpoint", ep.Name)
			if err := e.c.Delete(ctx, &ep); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// apply creates obj or updates the stored object's spec and labels to it.
func (e *Engine) apply(ctx context.Context, obj client.Object) error {
	err := e.c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		cur := obj.DeepCopyObject().(client.Object)
		if err = e.c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err == nil {
			obj.SetResourceVersion(cur.GetResourceVersion())
			err = e.c.Update(ctx, obj)
		}
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", obj.GetName(), err)
	}
	return nil
}

// remoteEndpoints are the other clusters' Endpoints the syncer imported.
func (e *Engine) remoteEndpoints(ctx context.Context) ([]v1.Endpoint, error) {
	var eps v1.EndpointList
	if err := e.c.List(ctx, &eps, client.InNamespace(e.cfg.Namespace), client.HasLabels{v1.ClusterIDLabel}); err != nil {
		return nil, err
	}
	return activeEndpoints(eps.Items, e.cfg.ClusterID), nil
}

// activeEndpoints keeps one Endpoint per other cluster: while a cluster
// fails over, its old and new gateways' Endpoints may both be here for a
// moment, and the one with the higher epoch is the active one.
func activeEndpoints(eps []v1.Endpoint, self string) []v1.Endpoint {
	best := map[string]v1.Endpoint{}
	for _, ep := range eps {
		c := ep.Labels[v1.ClusterIDLabel]
		if c == self {
			continue
		}
		if cur, ok := best[c]; !ok || newerGateway(ep, cur) {
			best[c] = ep
		}
	}
	out := make([]v1.Endpoint, 0, len(best))
	for _, ep := range best {
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func newerGateway(a, b v1.Endpoint) bool {
	ea, _ := strconv.Atoi(a.Annotations[v1.GatewayEpochAnnotation])
	eb, _ := strconv.Atoi(b.Annotations[v1.GatewayEpochAnnotation])
	if ea != eb {
		return ea > eb
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

func (e *Engine) newSyncer(ctx context.Context) (*syncer.Syncer, error) {
	creds, err := broker.ReadCredentials(ctx, e.kube, e.cfg.Namespace, e.cfg.BrokerSecret)
	if err != nil {
		return nil, err
	}
	local, err := dynamic.NewForConfig(e.rest)
	if err != nil {
		return nil, err
	}
	remote, err := dynamic.NewForConfig(creds.Info.RESTConfig(creds.Token))
	if err != nil {
		return nil, err
	}
	return syncer.New(syncer.Config{
		ClusterID: e.cfg.ClusterID, Local: local, LocalNamespace: e.cfg.Namespace,
		Broker: remote, BrokerNamespace: creds.Info.Namespace,
		Resources: []schema.GroupVersionResource{
			v1.SchemeGroupVersion.WithResource("clusters"),
			v1.SchemeGroupVersion.WithResource("endpoints"),
		},
		Log: e.cfg.Log,
	}), nil
}

// writeStatus records this gateway's role in its Gateway object.
func (e *Engine) writeStatus(ctx context.Context, role v1.HAStatus, localEndpoint string, conns ...v1.Connection) error {
	gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: e.cfg.NodeName, Namespace: e.cfg.Namespace,
		Labels: map[string]string{v1.ClusterIDLabel: e.cfg.ClusterID}}}
	if err := e.c.Create(ctx, gw); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(gw), gw); err != nil {
		return err
	}
	gw.Status.HAStatus = role
	gw.Status.LocalEndpoint = localEndpoint
	gw.Status.Connections = conns
	meta.SetStatusCondition(&gw.Status.Conditions, metav1.Condition{
		Type: "Ready", Status: metav1.ConditionTrue, Reason: "Running",
		Message: fmt.Sprintf("gateway engine running as %s", role), ObservedGeneration: gw.Generation,
	})
	if err := e.c.Status().Update(ctx, gw); err != nil {
		return fmt.Errorf("update Gateway status: %w", err)
	}
	return nil
}

// localAddress reports whether ip is assigned to an interface of this host.
func localAddress(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip.Unmap() {
				return true
			}
		}
	}
	return false
}
