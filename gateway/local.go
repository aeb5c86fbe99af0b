package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// PublicIPAnnotation on a Node gives the address other clusters reach it at.
const PublicIPAnnotation = v1.PublicIPAnnotation

// EndpointName is the name of the Endpoint of gateway node node in cluster
// clusterID: "<cluster ID>.<node>". A cluster ID is an RFC 1123 label (no
// dots), so the name's first label is always its cluster's: no two clusters
// can write the same name (cluster east with node 1-gw is east.1-gw, cluster
// east-1 with node gw is east-1.gw), and the broker's isolation policy
// refuses a member's Endpoint whose name does not begin with its own cluster
// ID and a dot. When that is longer than a DNS subdomain allows
// (endpointNameMax: a 63-character cluster ID and a node name of more than
// 189), the node part is cut and ends in "-" and 16 hex digits of the
// SHA-256 of the whole node name, keeping the name unique within the
// cluster and at most endpointNameMax long.
func EndpointName(clusterID, node string) string {
	name := clusterID + "." + node
	if len(name) <= endpointNameMax {
		return name
	}
	sum := sha256.Sum256([]byte(node))
	suffix := "-" + hex.EncodeToString(sum[:8])
	head := strings.TrimRight(node[:endpointNameMax-len(clusterID)-1-len(suffix)], ".-")
	return clusterID + "." + head + suffix
}

// endpointNameMax is the longest name an Endpoint may have: a DNS
// subdomain's 253 characters, as for every custom resource.
const endpointNameMax = 253

// localEndpoint describes this node as its cluster's gateway, with the cable
// settings its driver is opened with (the private key of a keyed driver
// read from, or first stored in, its Secret), and returns the Node too.
func (e *Engine) localEndpoint(ctx context.Context) (*v1.Endpoint, cabledriver.Settings, *corev1.Node, error) {
	node, err := e.kube.CoreV1().Nodes().Get(ctx, e.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, cabledriver.Settings{}, nil, fmt.Errorf("read node %s: %w", e.cfg.NodeName, err)
	}
	settings := e.cfg.Cable
	publicKey := ""
	if e.driver.Key != nil {
		if settings.PrivateKey, publicKey, err = ensureKey(ctx, e.kube, e.cfg.Namespace, e.cfg.NodeName, e.driver.Key); err != nil {
			return nil, cabledriver.Settings{}, nil, err
		}
	}
	ep, err := localEndpointFor(e.cfg, e.driver, node, settings, publicKey, localAddress)
	if err != nil {
		return nil, cabledriver.Settings{}, nil, err
	}
	return ep, settings, node, nil
}

// localEndpointFor is the local Endpoint from the Node and the settings;
// isLocal tells whether an address is one of this host's own (a public
// address that is not means the gateway is behind NAT).
func localEndpointFor(cfg Config, desc cabledriver.Descriptor, node *corev1.Node, s cabledriver.Settings, publicKey string, isLocal func(netip.Addr) bool) (*v1.Endpoint, error) {
	var private v1.DualStackIPs
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				private = append(private, v1.IP(ip.String()))
			}
		}
	}
	if len(private) == 0 {
		return nil, fmt.Errorf("node %s has no InternalIP", node.Name)
	}
	public := private
	if cfg.PublicIP.IsValid() {
		public = v1.DualStackIPs{v1.IP(cfg.PublicIP.String())}
	} else if a := node.Annotations[PublicIPAnnotation]; a != "" {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("node %s: annotation %s=%q: %w", node.Name, PublicIPAnnotation, a, err)
		}
		public = v1.DualStackIPs{v1.IP(ip.String())}
	}
	// Behind NAT when the public address is not one of this host's own (the
	// engine runs in the node's network namespace).
	natted := false
	if ip, err := netip.ParseAddr(string(public[0])); err == nil {
		natted = !isLocal(ip)
	}
	// The health-check address is the first address of the node's pod CIDR
	// of each family: inside the cluster's subnets, so it is reached through
	// the cable, and unique to the node (with Globalnet, the global CIDR's
	// second address, below). The data plane puts it on the cable device.
	var healthIPs v1.DualStackIPs
	podCIDRs := node.Spec.PodCIDRs
	if len(podCIDRs) == 0 && node.Spec.PodCIDR != "" {
		podCIDRs = []string{node.Spec.PodCIDR}
	}
	for _, c := range podCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil && len(healthIPs) < 2 {
			healthIPs = append(healthIPs, v1.IP(p.Masked().Addr().Next().String()))
		}
	}
	var subnets []v1.CIDR
	for _, p := range append(append([]netip.Prefix(nil), cfg.PodCIDRs...), cfg.ServiceCIDRs...) {
		subnets = append(subnets, v1.CIDR(p.Masked().String()))
	}
	if g := cfg.GlobalCIDR.Masked(); g.IsValid() {
		// Globalnet: other clusters reach this one only at its global
		// addresses, and the health checks run between them. The global
		// CIDR's second address is reserved for it (docs/globalnet.md);
		// only the active gateway has an Endpoint, so it is unique.
		subnets = []v1.CIDR{v1.CIDR(g.String())}
		healthIPs = v1.DualStackIPs{v1.IP(g.Addr().Next().String())}
	}
	ep := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{
			Name:      EndpointName(cfg.ClusterID, cfg.NodeName),
			Namespace: cfg.Namespace,
			Labels:    map[string]string{v1.ClusterIDLabel: cfg.ClusterID},
		},
		Spec: v1.EndpointSpec{
			ClusterID:        v1.ClusterID(cfg.ClusterID),
			Hostname:         cfg.NodeName,
			PrivateIPs:       private,
			PublicIPs:        public,
			NATTraversal:     natted,
			NATDiscoveryPort: cfg.NATDiscoveryPort,
			Subnets:          subnets,
			CableDriver:      desc.Name,
			HealthCheckIPs:   healthIPs,
		},
	}
	desc.Fill(&ep.Spec, s, publicKey)
	return ep, nil
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

// maxCandidates is the most standby gateways an Endpoint lists (the CRD's
// bound on EndpointSpec.Candidates).
const maxCandidates = 16

// candidates describes the cluster's standby gateways for the active
// Endpoint's Candidates: every Node labelled GatewayNodeLabel=true other
// than this one, as its own Endpoint would describe it, sorted by name, at
// most maxCandidates. A keyed driver's key is read from the node's Secret,
// or stored there first (ensureKey), so the standby takes over with the key
// its candidate entry announced. The --public-ip flag, which names this
// node's address, is not applied to other nodes: their public address is
// their strait.dev/public-ip annotation, else their InternalIP, and they
// count as behind NAT when it is not one of their Node's addresses. A node
// whose key cannot be read or that has no InternalIP is left out and
// logged; when the Nodes cannot be listed, the error is returned.
func (e *Engine) candidates(ctx context.Context) ([]v1.GatewayCandidate, error) {
	nodes, err := e.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: v1.GatewayNodeLabel + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list the gateway nodes: %w", err)
	}
	slices.SortFunc(nodes.Items, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	var out []v1.GatewayCandidate
	for i := range nodes.Items {
		node := &nodes.Items[i]
		name := node.Name
		if name == e.cfg.NodeName {
			continue
		}
		if len(out) == maxCandidates {
			e.log.Warn("more standby gateways than an Endpoint lists; leaving the rest out", "max", maxCandidates)
			break
		}
		publicKey := ""
		if e.driver.Key != nil {
			if _, publicKey, err = ensureKey(ctx, e.kube, e.cfg.Namespace, name, e.driver.Key); err != nil {
				e.log.Warn("standby gateway left out of the Endpoint's candidates", "node", name, "err", err)
				continue
			}
		}
		cfg := e.cfg
		cfg.NodeName, cfg.PublicIP = name, netip.Addr{}
		ep, err := localEndpointFor(cfg, e.driver, node, e.cfg.Cable, publicKey, nodeAddress(node))
		if err != nil {
			e.log.Warn("standby gateway left out of the Endpoint's candidates", "node", name, "err", err)
			continue
		}
		out = append(out, v1.GatewayCandidate{
			Hostname: ep.Spec.Hostname, PrivateIPs: ep.Spec.PrivateIPs, PublicIPs: ep.Spec.PublicIPs,
			NATTraversal: ep.Spec.NATTraversal, WireGuard: ep.Spec.WireGuard, VXLAN: ep.Spec.VXLAN,
			HealthCheckIPs: ep.Spec.HealthCheckIPs,
		})
	}
	return out, nil
}

// nodeAddress reports whether ip is one of node's addresses in its status.
func nodeAddress(node *corev1.Node) func(netip.Addr) bool {
	return func(ip netip.Addr) bool {
		for _, a := range node.Status.Addresses {
			if x, err := netip.ParseAddr(a.Address); err == nil && x.Unmap() == ip.Unmap() {
				return true
			}
		}
		return false
	}
}
