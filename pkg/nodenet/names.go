package nodenet

// Every device name, routing table, rule priority, VXLAN identity and chain
// name Strait uses on a node, declared once. Each writer's Scope lists the
// ones it owns; no two writers own the same one.
const (
	// CableDevice is the gateway's cable device. The cable driver creates
	// it; the gateway puts its health-check addresses on it.
	CableDevice = "strait-cable"
	// WireGuardSocketDir is where a userspace WireGuard cable device
	// (wireguard-go) puts its control (UAPI) socket,
	// <WireGuardSocketDir>/<CableDevice>.sock: where wg(8) and wgctrl look
	// for it.
	WireGuardSocketDir = "/var/run/wireguard"
	// GatewayTable holds the routes of remote subnets through the cable
	// (the cable driver fills it). 150 is far from the tables the kernel
	// (253-255) and common CNIs (Calico uses 1-250 sparsely from the low
	// end, Cilium 2004+) use.
	GatewayTable = 150
	// GatewayPriority is the priority of the gateway's rules "to <remote
	// subnet> lookup GatewayTable": after the local table (0), before the
	// main table (32766), and before the route agent's (RemotePriority), so
	// that on the active gateway remote traffic takes the cable.
	GatewayPriority = 150

	// RemoteTable holds, on nodes that are not the active gateway, the
	// routes of remote subnets through the overlay to the active gateway;
	// on the active gateway, unreachable routes for them, so that remote
	// traffic never leaks to the default route while the cable is down.
	RemoteTable = 151
	// RemotePriority is the priority of the route agent's rules "to
	// <remote subnet> lookup RemoteTable": right after the gateway's.
	RemotePriority = 151
	// ReturnTable holds, on the active gateway, the routes of the other
	// nodes' pod CIDRs through the overlay, for traffic that arrived from
	// the cable: replies take the path their requests took.
	ReturnTable = 152
	// ReturnPriority is the priority of the rule "iif CableDevice lookup
	// ReturnTable", after the remote rules so that cable traffic for
	// another cluster is not bent back into the overlay.
	ReturnPriority = 152

	// OverlayDevice is the route agent's VXLAN device on every node.
	OverlayDevice = "strait-overlay"
	// OverlayVNI keeps the overlay apart from the VXLAN cable's VNI and
	// from a CNI's VXLAN (flannel uses VNI 1, Calico 4096).
	OverlayVNI = 4100
	// OverlayPort is the overlay's UDP port: apart from the VXLAN cable
	// (4800), the IANA VXLAN port (4789, Cilium, Calico) and the Linux
	// default (8472, flannel).
	OverlayPort = 4801

	// GatewayNATChain (nat, jumped to first from POSTROUTING on gateway
	// nodes) exempts traffic to remote subnets from the node's masquerade.
	GatewayNATChain = "STRAIT-GW-POSTROUTING"
	// GatewayJumpComment marks the gateway's jumps, so they are found again.
	GatewayJumpComment = "strait gateway"
	// NATChain (nat, jumped to first from POSTROUTING on every node)
	// exempts cross-cluster traffic from the pod network's masquerade.
	NATChain = "STRAIT-POSTROUTING"
	// ForwardChain (filter, jumped to first from FORWARD) accepts
	// cross-cluster traffic before a CNI's or kube-proxy's drops.
	ForwardChain = "STRAIT-FORWARD"
	// MSSChain (mangle, jumped to first from FORWARD) clamps the TCP MSS
	// of cross-cluster connections to the path MTU.
	MSSChain = "STRAIT-MSS"
	// UnmarkMasqChain (mangle, jumped to first from POSTROUTING on every
	// node) clears kube-proxy's masquerade mark (KubeProxyMasqueradeMark)
	// on packets from other clusters. kube-proxy marks a packet for
	// masquerade when it enters a Service from outside the cluster CIDR
	// (in PREROUTING, at DNAT) and masquerades marked packets in nat
	// POSTROUTING: in iptables mode the NATChain's ACCEPT ends nat
	// POSTROUTING before that, but in nftables mode the masquerade is a
	// base chain of its own (table ip kube-proxy, hook postrouting,
	// priority srcnat = 100) that no iptables verdict stops. mangle
	// POSTROUTING (priority -150) runs after the marking and before
	// either masquerade, so one rule covers both modes.
	UnmarkMasqChain = "STRAIT-UNMARK-MASQ"
	// KubeProxyMasqueradeMark is the packet mark bit kube-proxy sets on
	// packets it is to masquerade: 1<<14, from its masquerade bit's
	// default (14) in both modes (--iptables-masquerade-bit, and
	// nftables.masqueradeBit in its configuration file; kube-proxy 1.37
	// pkg/proxy/apis/config/v1alpha1 defaults), for IPv4 and IPv6 alike.
	// The route agent takes another bit (its --kube-proxy-masquerade-bit,
	// routeagent.Config.MasqueradeBit) for a kube-proxy configured with one.
	KubeProxyMasqueradeMark uint32 = 1 << 14
	// RouteAgentJumpComment marks the route agent's jumps.
	RouteAgentJumpComment = "strait route agent"

	// GlobalnetEgressChain (nat, jumped to from POSTROUTING on gateway
	// nodes of a Globalnet cluster) SNATs traffic that leaves through the
	// cable to the global IPs that apply (docs/globalnet.md). Its jump
	// must run before the gateway's and the route agent's (GatewayNATChain,
	// NATChain): their ACCEPT ends nat POSTROUTING, so after them it would
	// never be reached. JumpRank orders it first.
	GlobalnetEgressChain = "STRAIT-GN-EGRESS"
	// GlobalnetIngressChain (nat, jumped to from PREROUTING) DNATs the
	// global IPs of exported headless Services' pods to the pods.
	GlobalnetIngressChain = "STRAIT-GN-INGRESS"
	// GlobalnetJumpComment marks Globalnet's jumps.
	GlobalnetJumpComment = "strait globalnet"

	// ChainPrefix begins the name of every chain of ours. A jump to a chain
	// of that name counts as ours when SyncChains checks that a writer's
	// jump runs first; among themselves our jumps from one built-in chain
	// are kept in JumpRank's order, which every writer follows, so that no
	// two writers take turns moving their own jump to rule 1.
	ChainPrefix = "STRAIT-"

	// NoMasqueradeComment marks the nat ACCEPT rules (the gateway's and the
	// route agent's) that exempt cross-cluster traffic from masquerade. The
	// text is what iptables-save shows; changing it changes every node's
	// rules and the golden tests.
	NoMasqueradeComment = "strait: cross-cluster, no masquerade"
)

// jumpRanks are the ranks of the chains whose place among our jumps from
// one built-in chain matters (lower runs first); every other chain of ours
// ranks defaultJumpRank. Globalnet's SNAT must run before the ACCEPTs of
// the gateway and the route agent in nat POSTROUTING.
var jumpRanks = map[string]int{
	GlobalnetEgressChain: 10,
}

// defaultJumpRank is the rank of a chain not in jumpRanks: after the
// ranked ones (the gateway's and the route agent's nat ACCEPTs are there,
// and their order among themselves does not matter).
const defaultJumpRank = 100

// JumpRank is the rank of our chain name among our jumps from one built-in
// chain: lower runs first; equal ranks go by name, so that the order is
// total and the same for every writer, whatever the history of inserts.
func JumpRank(name string) int {
	if r, ok := jumpRanks[name]; ok {
		return r
	}
	return defaultJumpRank
}
