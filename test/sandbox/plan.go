package sandbox

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"strait.dev/strait/test/sandbox/node"
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

// InternetCIDR6 is the IPv6 internet of ipv6 and dual sandboxes: 2001:2::/48
// is reserved for benchmarking (RFC 5180), like InternetCIDR, so it can never
// be a real address either. Its hosts mirror the IPv4 ones: 198.18.i.h is
// 2001:2::i:h (the decimal digits read as hex).
var InternetCIDR6 = netip.MustParsePrefix("2001:2::/48")

// IP families a sandbox can have (Options.IPFamily, --ip-family).
const (
	IPv4 = "ipv4"
	IPv6 = "ipv6"
	// Dual gives every network both families, IPv4 first, as Kubernetes
	// lists a dual-stack cluster's ranges.
	Dual = "dual"
)

// IPFamilies are the values of --ip-family.
var IPFamilies = []string{IPv4, IPv6, Dual}

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
	// IPFamily is the family of every node, pod, service and internet
	// network: IPv4, IPv6 or Dual (one of IPFamilies); empty is IPv4.
	IPFamily string `json:"ipFamily,omitempty"`
	// Runtime is how the nodes run Strait's own images (one of
	// node.Runtimes): "host" (empty too) runs their binaries from the
	// sandbox's bin directory, "oci" the images themselves, unpacked from
	// the OCI archives in Images (default <bin>/../images, _output/images)
	// and run under crun.
	Runtime string `json:"runtime,omitempty"`
	Images  string `json:"images,omitempty"`
}

// families are the address families of the sandbox, primary first: 4, 6, or
// 4 then 6.
func (o Options) families() []int {
	switch o.IPFamily {
	case IPv6:
		return []int{6}
	case Dual:
		return []int{4, 6}
	default:
		return []int{4}
	}
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
	if o.Runtime != "" && !slices.Contains(node.Runtimes, o.Runtime) {
		return fmt.Errorf("--runtime %q: must be %s", o.Runtime, strings.Join(node.Runtimes, " or "))
	}
	if o.IPFamily != "" && !slices.Contains(IPFamilies, o.IPFamily) {
		return fmt.Errorf("--ip-family %q: must be %s", o.IPFamily, strings.Join(IPFamilies, ", "))
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
//
// Every network has one address or prefix per family of the sandbox, primary
// first (IPv4 first in a dual sandbox), in the plural fields; the singular
// field of the same name is the primary one, as a Pod's status.podIP is the
// first of status.podIPs.
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
	// KubernetesServiceIP is the first address of the (primary) service
	// CIDR, which the apiserver gives the "kubernetes" Service.
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

	// One per family, primary first (see above).
	LANs             []netip.Prefix `json:"lans"`
	ControlIPs       []netip.Addr   `json:"controlIPs"`
	ControlPublicIPs []netip.Addr   `json:"controlPublicIPs"`
	PodCIDRs         []netip.Prefix `json:"podCIDRs"`
	ServiceCIDRs     []netip.Prefix `json:"serviceCIDRs"`
	DNSServiceIPs    []netip.Addr   `json:"dnsServiceIPs"`
	RouterLANIPs     []netip.Addr   `json:"routerLANIPs,omitempty"`
	RouterPublicIPs  []netip.Addr   `json:"routerPublicIPs,omitempty"`
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

	// One per family, primary first, as in ClusterPlan.
	IPs         []netip.Addr `json:"ips"`
	PublicIPs   []netip.Addr `json:"publicIPs,omitempty"`
	InternetIPs []netip.Addr `json:"internetIPs,omitempty"`
}

// NodeCIDRMaskSize is the size of each node's pod CIDR per family, the
// controller manager's --node-cidr-mask-size-ipv4/-ipv6: its defaults, a
// /24 (254 pods) and a /64 (the smallest IPv6 subnet by custom).
var NodeCIDRMaskSize = map[int]int{4: 24, 6: 64}

// lanPrefix is cluster i's node network: 192.168.i.0/24, fd00:192:168:i::/64.
func lanPrefix(fam, i int) netip.Prefix {
	if fam == 6 {
		return netip.MustParsePrefix(fmt.Sprintf("fd00:192:168:%d::/64", i))
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 24)
}

// lanHost is host h of cluster i's node network: 192.168.i.h,
// fd00:192:168:i::h.
func lanHost(fam, i, h int) netip.Addr {
	if fam == 6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:192:168:%d::%d", i, h))
	}
	return netip.AddrFrom4([4]byte{192, 168, byte(i), byte(h)})
}

// internetHost is host h of cluster i on the internet: 198.18.i.h,
// 2001:2::i:h; cluster 0 is the admin host's.
func internetHost(fam, i, h int) netip.Addr {
	if fam == 6 {
		return netip.MustParseAddr(fmt.Sprintf("2001:2::%d:%d", i, h))
	}
	return netip.AddrFrom4([4]byte{198, 18, byte(i), byte(h)})
}

// InternetPrefix is the internet of a family (4 or 6).
func InternetPrefix(fam int) netip.Prefix {
	if fam == 6 {
		return InternetCIDR6
	}
	return InternetCIDR
}

// podCIDR is the pod network of cluster ci: 10.ci.0.0/16, fd00:10:ci::/48
// (a /64 per node, 65,536 nodes: the controller manager allows a node mask
// at most 16 bits longer than the cluster's).
func podCIDR(fam, ci int) netip.Prefix {
	if fam == 6 {
		return netip.MustParsePrefix(fmt.Sprintf("fd00:10:%d::/48", ci))
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(ci), 0, 0}), 16)
}

// serviceCIDR is the service network of cluster ci: 10.(100+ci).0.0/16,
// fd00:10:1ci::/112 (65,536 ClusterIPs, as the IPv4 range has; the
// apiserver refuses IPv6 service ranges wider than /108 with its default
// allocator).
func serviceCIDR(fam, ci int) netip.Prefix {
	if fam == 6 {
		return netip.MustParsePrefix(fmt.Sprintf("fd00:10:%d::/112", 100+ci))
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + ci), 0, 0}), 16)
}

// Plan lays out every cluster. Cluster i uses, per family:
//   - node network 192.168.i.0/24 and fd00:192:168:i::/64: control plane
//     .2 and ::2, node j .(10+j) and ::(10+j), NAT router .1 and ::1
//   - pods 10.i.0.0/16 and fd00:10:i::/48, services 10.(100+i).0.0/16 and
//     fd00:10:(100+i)::/112, or those of i=1 for all with Overlapping
//   - internet 198.18.i.(10+j) and 2001:2::i:(10+j) for gateway node j,
//     198.18.i.1 and 2001:2::i:1 for its NAT router, 198.18.i.2 and
//     2001:2::i:2 for its control plane; 198.18.0.2 and 2001:2::2 for the
//     admin host
//
// (IPv6 hosts written with the IPv4 host's decimal digits.) Only the
// families of o.IPFamily are used, IPv4 first.
func Plan(o Options) []ClusterPlan {
	fams := o.families()
	var plans []ClusterPlan
	for i := 1; i <= o.Clusters; i++ {
		ci := i
		if o.Overlapping {
			ci = 1
		}
		c := ClusterPlan{
			Name:      clusterName(i),
			Index:     i,
			Region:    fmt.Sprintf("region-%d", i),
			ProxyMode: o.proxyMode(clusterName(i)),
		}
		for _, n := range o.NAT {
			c.NAT = c.NAT || n == c.Name
		}
		for _, f := range fams {
			c.LANs = append(c.LANs, lanPrefix(f, i))
			c.ControlIPs = append(c.ControlIPs, lanHost(f, i, 2))
			c.ControlPublicIPs = append(c.ControlPublicIPs, internetHost(f, i, 2))
			c.PodCIDRs = append(c.PodCIDRs, podCIDR(f, ci))
			svc := serviceCIDR(f, ci)
			c.ServiceCIDRs = append(c.ServiceCIDRs, svc)
			c.DNSServiceIPs = append(c.DNSServiceIPs, nthAddr(svc.Addr(), 10))
			if c.NAT {
				c.RouterLANIPs = append(c.RouterLANIPs, lanHost(f, i, 1))
				c.RouterPublicIPs = append(c.RouterPublicIPs, internetHost(f, i, 1))
			}
		}
		c.LAN, c.ControlIP, c.ControlPublicIP = c.LANs[0], c.ControlIPs[0], c.ControlPublicIPs[0]
		c.PodCIDR, c.ServiceCIDR, c.DNSServiceIP = c.PodCIDRs[0], c.ServiceCIDRs[0], c.DNSServiceIPs[0]
		c.KubernetesServiceIP = c.ServiceCIDR.Addr().Next()
		if c.NAT {
			c.RouterLANIP, c.RouterPublicIP = c.RouterLANIPs[0], c.RouterPublicIPs[0]
		}
		for j := 1; j <= o.Nodes; j++ {
			n := NodePlan{
				Name:    fmt.Sprintf("%s-n%d", c.Name, j),
				Index:   j,
				Gateway: j <= o.GatewayNodes,
				// Two zones per cluster, so topology-aware tests have a choice.
				Zone: fmt.Sprintf("%s-%c", c.Region, 'a'+rune((j-1)%2)),
			}
			for _, f := range fams {
				n.IPs = append(n.IPs, lanHost(f, i, 10+j))
			}
			n.IP = n.IPs[0]
			if n.Gateway {
				if c.NAT {
					n.PublicIPs = c.RouterPublicIPs
				} else {
					for _, f := range fams {
						n.InternetIPs = append(n.InternetIPs, internetHost(f, i, 10+j))
					}
					n.PublicIPs = n.InternetIPs
					n.InternetIP = n.InternetIPs[0]
				}
				n.PublicIP = n.PublicIPs[0]
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

// AdminIP is the admin host's address on the IPv4 internet.
var AdminIP = internetHost(4, 0, 2)

// AdminIPs are the admin host's addresses on the internet of a sandbox of
// those options, primary first.
func AdminIPs(o Options) []netip.Addr {
	var ips []netip.Addr
	for _, f := range o.families() {
		ips = append(ips, internetHost(f, 0, 2))
	}
	return ips
}

// nthAddr returns the address n after a.
func nthAddr(a netip.Addr, n int) netip.Addr {
	for range n {
		a = a.Next()
	}
	return a
}
