// Package node is the sandbox node agent: a small kubelet that runs in a node
// host's network namespace. It registers the Node and keeps it Ready with a
// Lease, wires the node into a host-gw pod network with masquerade for traffic
// leaving the cluster (as common CNIs do), runs kube-proxy, and runs the pods
// the scheduler binds to the node: hostNetwork pods in the node's namespace,
// others in a network namespace of their own with a veth to the node. Each
// container runs as a real process: its image, looked up in the image table
// (images.go: Strait's binaries from _output/bin, and tool images realised
// from the machine's busybox and Debian programs), gives its programs, and
// the pod's command, args, env, volumes and /etc/resolv.conf, hosts and
// hostname are set up in a private mount namespace.
//
// The agent authenticates as system:node:<name>, so the Node authorizer and
// NodeRestriction limit it exactly as they limit a kubelet.
package node

import (
	"net/netip"
	"time"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

const (
	// GatewayCapableLabel marks nodes attached to the sandbox's internet: the
	// nodes a cluster may choose as gateways.
	GatewayCapableLabel = "sandbox.strait.dev/gateway-capable"
	// PublicIPAnnotation is the address other clusters reach a
	// gateway-capable node at (the NAT router's, behind NAT).
	PublicIPAnnotation = v1.PublicIPAnnotation
)

// Config is the agent's configuration, written by the sandbox supervisor.
type Config struct {
	NodeName        string `json:"nodeName"`
	Cluster         string `json:"cluster"`
	Kubeconfig      string `json:"kubeconfig"`
	ProxyKubeconfig string `json:"proxyKubeconfig"`
	// NodeIP and ClusterPodCIDR are the node's address and the cluster's
	// pod network of its primary family.
	NodeIP         netip.Addr   `json:"nodeIP"`
	ClusterPodCIDR netip.Prefix `json:"clusterPodCIDR"`
	// NodeIPs and ClusterPodCIDRs are those of every family in a dual-stack
	// cluster, primary first (IPv4 first, as Kubernetes lists them); empty
	// in a single-stack one, where NodeIP and ClusterPodCIDR are all.
	NodeIPs         []netip.Addr   `json:"nodeIPs,omitempty"`
	ClusterPodCIDRs []netip.Prefix `json:"clusterPodCIDRs,omitempty"`
	ServiceCIDR     netip.Prefix   `json:"serviceCIDR"`
	// KubernetesServiceIP is the ClusterIP of the kubernetes Service, which
	// in-cluster clients find in KUBERNETES_SERVICE_HOST.
	KubernetesServiceIP netip.Addr `json:"kubernetesServiceIP"`
	// ClusterDNS is the cluster DNS Service's ClusterIP (kube-system/kube-dns)
	// and ClusterDomain its domain ("cluster.local"), which pods with
	// dnsPolicy ClusterFirst get in their /etc/resolv.conf.
	ClusterDNS    netip.Addr `json:"clusterDNS"`
	ClusterDomain string     `json:"clusterDomain"`
	// ProxyMode is kube-proxy's --proxy-mode: "iptables" or "nftables".
	ProxyMode string `json:"proxyMode"`
	// KubeletCertFile and KubeletKeyFile are the PEM files of the node's
	// kubelet serving certificate (for its InternalIP); ClientCAFile is the
	// cluster CA that signs the clients the kubelet API accepts.
	KubeletCertFile string `json:"kubeletCertFile"`
	KubeletKeyFile  string `json:"kubeletKeyFile"`
	ClientCAFile    string `json:"clientCAFile"`
	// Labels and Annotations are set on the Node at registration.
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// Dir holds the node's pods: volumes, logs and runtime records.
	Dir string `json:"dir"`
	// KubeBin holds kube-proxy; ImageBin holds the binaries images map to.
	KubeBin  string `json:"kubeBin"`
	ImageBin string `json:"imageBin"`
	// ImageDir holds the images realised as directories of programs
	// (<ImageDir>/<image>/bin, a container's PATH); Dir/images when empty.
	// The sandbox puts it on the node's own /run, where a pod's volume
	// mounted at a path such as /work or /data does not hide it.
	ImageDir string `json:"imageDir,omitempty"`
	// Runtime is how Strait's own images run: RuntimeHost (empty too) or
	// RuntimeOCI. ImageArchives holds their OCI archives
	// (<component>.tar, make images) and ImageCache the images unpacked
	// from them, shared by the sandbox's nodes; both are for RuntimeOCI.
	Runtime       string `json:"runtime,omitempty"`
	ImageArchives string `json:"imageArchives,omitempty"`
	ImageCache    string `json:"imageCache,omitempty"`
	// CreatedPathsFile records directories created on the host as mount
	// points, so that the sandbox can remove them.
	CreatedPathsFile string        `json:"createdPathsFile"`
	StopGrace        time.Duration `json:"stopGrace"`
	// MarkerEnv (KEY=VALUE) is added to every process the agent starts.
	MarkerEnv string `json:"markerEnv"`
	// SandboxExecutable is the strait-sandbox binary, which also holds the
	// pause and container-exec helpers.
	SandboxExecutable string `json:"sandboxExecutable"`
}

// nodeIPs are the node's addresses, primary first.
func (c Config) nodeIPs() []netip.Addr {
	if len(c.NodeIPs) > 0 {
		return c.NodeIPs
	}
	return []netip.Addr{c.NodeIP}
}

// clusterPodCIDRs are the cluster's pod networks, primary first.
func (c Config) clusterPodCIDRs() []netip.Prefix {
	if len(c.ClusterPodCIDRs) > 0 {
		return c.ClusterPodCIDRs
	}
	return []netip.Prefix{c.ClusterPodCIDR}
}

// hasIPv6 reports whether the node has an IPv6 address.
func (c Config) hasIPv6() bool {
	for _, a := range c.nodeIPs() {
		if a.Is6() {
			return true
		}
	}
	return false
}

// Timing of the node's heartbeat. Kubernetes' node lifecycle controller
// marks a node NotReady after 40-50 s without a Lease renewal; renewing every
// 10 s, as the kubelet does, leaves room for a slow apiserver.
const (
	leaseDuration = 40 * time.Second
	leaseRenew    = 10 * time.Second
	statusRefresh = time.Minute
)
