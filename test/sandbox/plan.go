package sandbox

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Prefix starts the name of every network namespace the sandbox creates; only
// namespaces with this prefix are ever deleted.
const Prefix = "strait-"

// APIServerPort is the kube-apiserver's port inside its control-plane host,
// the usual one.
const APIServerPort = 6443

// InternetCIDR is the shared "internet" between gateway-capable nodes:
// 198.18.0.0/15 is reserved for benchmarking (RFC 2544), so it can never be a
// real address on this machine's network.
var InternetCIDR = netip.MustParsePrefix("198.18.0.0/16")

// ProxyModes are the kube-proxy modes a sandbox cluster can run (its
// --proxy-mode): "iptables", kube-proxy's default, and "nftables" (GA since
// Kubernetes 1.33; it runs the nft binary, and needs kernel 5.13 or later).
var ProxyModes = []string{"iptables", "nftables"}

// DefaultProxyMode is the clusters' kube-proxy mode unless told otherwise:
// kube-proxy's own default.
const DefaultProxyMode = "iptables"

// Options describe the sandbox to build.
type Options struct {
	Clusters int `json:"clusters"`
	Nodes    int `json:"nodes"`
	// GatewayNodes is how many nodes of each cluster (the first ones) are
	// gateway-capable: attached to the internet and labelled for it.
	GatewayNodes int `json:"gatewayNodes"`
	// NAT names clusters that sit behind a NAT router: their gateway nodes have
	// private addresses only and reach the internet through the router.
	NAT []string `json:"nat,omitempty"`
	// Overlapping gives every cluster the same pod and service CIDRs.
	Overlapping bool `json:"overlapping"`
	// ProxyMode is kube-proxy's mode in every cluster (one of ProxyModes);
	// empty is DefaultProxyMode.
	ProxyMode string `json:"proxyMode,omitempty"`
	// ClusterProxyModes overrides ProxyMode for the clusters it names
	// ("c2": "nftables").
	ClusterProxyModes map[string]string `json:"clusterProxyModes,omitempty"`
}

// ParseProxyModes sets o's ProxyMode and ClusterProxyModes from the
// --proxy-mode flag's value: a mode for every cluster, then clusters with
// their own, comma-separated: "nftables", "iptables,c2=nftables,c3=nftables",
// or only overrides, "c2=nftables". Modes and cluster names are checked by
// Validate.
func (o *Options) ParseProxyModes(flag string) error {
	for item := range strings.SplitSeq(flag, ",") {
		cluster, mode, per := strings.Cut(item, "=")
		switch {
		case item == "":
			return fmt.Errorf("--proxy-mode %q: an empty item; write e.g. iptables,c2=nftables", flag)
		case !per && o.ProxyMode != "":
			return fmt.Errorf("--proxy-mode %s: two modes for all clusters (%s and %s); name a cluster for the second: c2=%s", flag, o.ProxyMode, item, item)
		case !per:
			o.ProxyMode = item
		default:
			if o.ClusterProxyModes == nil {
				o.ClusterProxyModes = map[string]string{}
			}
			if _, dup := o.ClusterProxyModes[cluster]; dup {
				return fmt.Errorf("--proxy-mode %s: cluster %s named twice", flag, cluster)
			}
			o.ClusterProxyModes[cluster] = mode
		}
	}
	return nil
}

// proxyMode is cluster's kube-proxy mode.
func (o Options) proxyMode(cluster string) string {
	if m, ok := o.ClusterProxyModes[cluster]; ok {
		return m
	}
	if o.ProxyMode != "" {
		return o.ProxyMode
	}
	return DefaultProxyMode
}

// Validate reports options that cannot make a sandbox.
func (o Options) Validate() error {
	switch {
	case o.Clusters < 1 || o.Clusters > 9:
		return fmt.Errorf("--clusters must be 1 to 9, not %d", o.Clusters)
	case o.Nodes < 1 || o.Nodes > 9:
		return fmt.Errorf("--nodes must be 1 to 9, not %d", o.Nodes)
	case o.GatewayNodes < 0 || o.GatewayNodes > o.Nodes:
		return fmt.Errorf("--gateway-nodes must be 0 to --nodes (%d), not %d", o.Nodes, o.GatewayNodes)
	}
	for _, name := range o.NAT {
		if !o.hasCluster(name) {
			return fmt.Errorf("--nat %s: no such cluster (have c1 to c%d)", name, o.Clusters)
		}
	}
	modes := strings.Join(ProxyModes, " or ")
	if o.ProxyMode != "" && !slices.Contains(ProxyModes, o.ProxyMode) {
		return fmt.Errorf("--proxy-mode %q: kube-proxy mode must be %s", o.ProxyMode, modes)
	}
	names := make([]string, 0, len(o.ClusterProxyModes))
	for c := range o.ClusterProxyModes {
		names = append(names, c)
	}
	slices.Sort(names)
	for _, c := range names {
		m := o.ClusterProxyModes[c]
		if !o.hasCluster(c) {
			return fmt.Errorf("--proxy-mode %s=%s: no such cluster (have c1 to c%d)", c, m, o.Clusters)
		}
		if !slices.Contains(ProxyModes, m) {
			return fmt.Errorf("--proxy-mode %s=%s: kube-proxy mode must be %s", c, m, modes)
		}
	}
	return nil
}

// hasCluster reports whether the sandbox has a cluster of that name.
func (o Options) hasCluster(name string) bool {
	for i := 1; i <= o.Clusters; i++ {
		if name == clusterName(i) {
			return true
		}
	}
	return false
}

// ClusterPlan is where one cluster's hosts sit and what ranges it uses.
type ClusterPlan struct {
	Name      string       `json:"name"`
	Index     int          `json:"index"`
	LAN       netip.Prefix `json:"lan"`
	ControlIP netip.Addr   `json:"controlIP"`
	// ControlPublicIP is the control plane's address on the internet, where
	// other clusters' components and the admin host reach its apiserver.
	ControlPublicIP netip.Addr   `json:"controlPublicIP"`
	PodCIDR         netip.Prefix `json:"podCIDR"`
	ServiceCIDR     netip.Prefix `json:"serviceCIDR"`
	// KubernetesServiceIP is the first address of the service CIDR, which the
	// apiserver gives the "kubernetes" Service.
	KubernetesServiceIP netip.Addr `json:"kubernetesServiceIP"`
	// DNSServiceIP is the tenth address of the service CIDR, which the
	// cluster DNS Service kube-system/kube-dns takes, as kubeadm gives it.
	DNSServiceIP netip.Addr `json:"dnsServiceIP"`
	Region       string     `json:"region"`
	NAT          bool       `json:"nat"`
	// ProxyMode is the mode its nodes' kube-proxy runs in: "iptables" or
	// "nftables".
	ProxyMode string `json:"proxyMode"`
	// RouterLANIP and RouterPublicIP are the NAT router's addresses (NAT only).
	RouterLANIP    netip.Addr `json:"routerLANIP,omitzero"`
	RouterPublicIP netip.Addr `json:"routerPublicIP,omitzero"`
	Nodes          []NodePlan `json:"nodes"`
}

// NodePlan is one node host.
type NodePlan struct {
	Name    string     `json:"name"`
	Index   int        `json:"index"`
	IP      netip.Addr `json:"ip"`
	Gateway bool       `json:"gateway"`
	// PublicIP is the node's address on the internet (gateway-capable nodes
	// not behind NAT), or the NAT router's public address (behind NAT).
	PublicIP netip.Addr `json:"publicIP,omitzero"`
	// InternetIP is the node's own address on the internet network; unset
	// behind NAT and for non-gateway nodes.
	InternetIP netip.Addr `json:"internetIP,omitzero"`
	Zone       string     `json:"zone"`
}

// Plan lays out every cluster. Cluster i uses:
//   - node network 192.168.i.0/24: control plane .2, node j .(10+j), NAT router .1
//   - pods 10.i.0.0/16 and services 10.(100+i).0.0/16, or 10.1.0.0/16 and
//     10.101.0.0/16 for all with Overlapping
//   - internet 198.18.i.(10+j) for gateway node j, 198.18.i.1 for its NAT
//     router, 198.18.i.2 for its control plane; 198.18.0.2 for the admin host
func Plan(o Options) []ClusterPlan {
	var plans []ClusterPlan
	for i := 1; i <= o.Clusters; i++ {
		ci := i
		if o.Overlapping {
			ci = 1
		}
		c := ClusterPlan{
			Name:            clusterName(i),
			Index:           i,
			LAN:             netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 24),
			ControlIP:       netip.AddrFrom4([4]byte{192, 168, byte(i), 2}),
			ControlPublicIP: netip.AddrFrom4([4]byte{198, 18, byte(i), 2}),
			PodCIDR:         netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(ci), 0, 0}), 16),
			ServiceCIDR:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + ci), 0, 0}), 16),
			Region:          fmt.Sprintf("region-%d", i),
			ProxyMode:       o.proxyMode(clusterName(i)),
		}
		c.KubernetesServiceIP = c.ServiceCIDR.Addr().Next()
		c.DNSServiceIP = nthAddr(c.ServiceCIDR.Addr(), 10)
		for _, n := range o.NAT {
			c.NAT = c.NAT || n == c.Name
		}
		if c.NAT {
			c.RouterLANIP = netip.AddrFrom4([4]byte{192, 168, byte(i), 1})
			c.RouterPublicIP = netip.AddrFrom4([4]byte{198, 18, byte(i), 1})
		}
		for j := 1; j <= o.Nodes; j++ {
			n := NodePlan{
				Name:    fmt.Sprintf("%s-n%d", c.Name, j),
				Index:   j,
				IP:      netip.AddrFrom4([4]byte{192, 168, byte(i), byte(10 + j)}),
				Gateway: j <= o.GatewayNodes,
				// Two zones per cluster, so topology-aware tests have a choice.
				Zone: fmt.Sprintf("%s-%c", c.Region, 'a'+rune((j-1)%2)),
			}
			if n.Gateway {
				if c.NAT {
					n.PublicIP = c.RouterPublicIP
				} else {
					n.InternetIP = netip.AddrFrom4([4]byte{198, 18, byte(i), byte(10 + j)})
					n.PublicIP = n.InternetIP
				}
			}
			c.Nodes = append(c.Nodes, n)
		}
		plans = append(plans, c)
	}
	return plans
}

func clusterName(i int) string { return fmt.Sprintf("c%d", i) }

// Namespace names. Interface names stay under 15 characters.
func controlNS(c string) string { return Prefix + c + "-cp" }
func lanNS(c string) string     { return Prefix + c + "-lan" }
func routerNS(c string) string  { return Prefix + c + "-nat" }

// NodeNS is the network namespace of a node host.
func NodeNS(node string) string { return Prefix + node }

const internetNS = Prefix + "internet"

// SwitchPorts are the bridge-side ends of a node's links: in its cluster's
// LAN namespace and, for a gateway-capable node, in the internet namespace.
// Taking them down is the node losing its links (its own interfaces keep
// their addresses and routes, as a real node's do when a cable is pulled).
func SwitchPorts(cluster string, index int) [][2]string {
	return [][2]string{
		{lanNS(cluster), fmt.Sprintf("n%d", index)},
		{internetNS, fmt.Sprintf("%sn%d", cluster, index)},
	}
}

// RouterUplink is both ends of a NAT router's link to the internet: its own
// interface in the router's namespace and its switch port in the internet's.
// Every packet between the cluster's nodes and the other clusters crosses
// it.
func RouterUplink(cluster string) [][2]string {
	return [][2]string{
		{routerNS(cluster), "eth1"},
		{internetNS, cluster + "nat"},
	}
}

// AdminNS is the admin host: the operator's workstation on the internet, from
// which straitctl reaches every cluster's apiserver at its public address.
const AdminNS = Prefix + "admin"

// AdminIP is the admin host's address on the internet.
var AdminIP = netip.MustParseAddr("198.18.0.2")

// nthAddr returns the address n after a.
func nthAddr(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}
