package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterID names a member cluster. It is the value of the cluster's
// ClusterProperty cluster.clusterset.k8s.io and must be an RFC 1123 label, as
// the MCS API requires of cluster IDs, so that it can be used in DNS names and
// labels.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",messageExpression="'cluster ID ' + self + ' is not an RFC 1123 label: use lower-case letters, digits and -, starting and ending with a letter or digit'"
type ClusterID string

// CIDR is an IP prefix of either family in canonical form, as
// netip.Prefix.Masked().String() prints it: "10.1.0.0/16", "fd00:10:1::/64".
// Host bits must be zero, so that two clusters' prefixes compare by text. At
// most 43 characters, the length of the longest IPv6 prefix.
//
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="isCIDR(self)",messageExpression="'invalid CIDR ' + self + ': want a prefix such as 10.1.0.0/16 or fd00:10:1::/64'"
// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || string(cidr(self).masked()) == self",messageExpression="'CIDR ' + self + ' is not in canonical form: host bits must be zero, IPv6 in lower case with :: for the longest run of zeros'"
type CIDR string

// IP is an IP address of either family in canonical form, as
// netip.Addr.String() prints it. At most 39 characters, the length of the
// longest IPv6 address.
//
// +kubebuilder:validation:MaxLength=39
// +kubebuilder:validation:XValidation:rule="isIP(self)",messageExpression="'invalid IP address ' + self + ': want an address such as 192.0.2.10 or 2001:db8::10'"
// +kubebuilder:validation:XValidation:rule="!isIP(self) || ip.isCanonical(self)",messageExpression="'IP address ' + self + ' is not in canonical form: no leading zeros, IPv6 in lower case with :: for the longest run of zeros'"
type IP string

// DualStackIPs holds at most one address of each IP family.
//
// +kubebuilder:validation:MaxItems=2
// +kubebuilder:validation:XValidation:rule="self.size() < 2 || !isIP(self[0]) || !isIP(self[1]) || ip(self[0]).family() != ip(self[1]).family()",message="at most one address of each IP family"
// +listType=atomic
type DualStackIPs []IP

// CableDriver names the data plane that carries traffic between gateways.
//
// +kubebuilder:validation:Enum=wireguard;vxlan
type CableDriver string

const (
	// CableDriverWireGuard is an encrypted WireGuard tunnel (the default).
	CableDriverWireGuard CableDriver = "wireguard"
	// CableDriverVXLAN is a plain, unencrypted VXLAN tunnel for trusted networks.
	CableDriverVXLAN CableDriver = "vxlan"
)

// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories=strait
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterID`
// +kubebuilder:printcolumn:name="Pod CIDRs",type=string,JSONPath=`.spec.podCIDRs`
// +kubebuilder:printcolumn:name="Service CIDRs",type=string,JSONPath=`.spec.serviceCIDRs`
// +kubebuilder:printcolumn:name="Global CIDRs",type=string,JSONPath=`.spec.globalCIDRs`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.clusterID",message="a Cluster is named after its cluster ID: metadata.name must equal spec.clusterID"

// Cluster describes one member cluster: its identity, the address ranges its
// pods and services use, and where it runs. The active gateway of each member
// publishes its own Cluster through the broker.
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ClusterSpec `json:"spec"`
}

// ClusterSpec is the published description of a member cluster.
type ClusterSpec struct {
	// ClusterID is the cluster's ID; it never changes.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="clusterID is immutable"
	ClusterID ClusterID `json:"clusterID"`

	// PodCIDRs are the prefixes the cluster's pods take addresses from.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	PodCIDRs []CIDR `json:"podCIDRs"`

	// ServiceCIDRs are the prefixes the cluster's Service ClusterIPs come from.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	ServiceCIDRs []CIDR `json:"serviceCIDRs"`

	// GlobalCIDRs are the prefixes globalnet allotted to the cluster when
	// members' pod or service CIDRs overlap; empty without globalnet.
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +optional
	GlobalCIDRs []CIDR `json:"globalCIDRs,omitempty"`

	// Topology places the cluster, for topology-aware service routing.
	// +optional
	Topology Topology `json:"topology,omitempty"`
}

// Topology is where a cluster runs, in the terms of the well-known node labels
// topology.kubernetes.io/region and topology.kubernetes.io/zone.
type Topology struct {
	// Region is the cluster's region.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Region string `json:"region,omitempty"`

	// Zone is the cluster's zone, when the whole cluster is in one.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Zone string `json:"zone,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Cluster `json:"items"`
}

// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories=strait
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.clusterID`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.hostname`
// +kubebuilder:printcolumn:name="Driver",type=string,JSONPath=`.spec.cableDriver`
// +kubebuilder:printcolumn:name="Private IPs",type=string,JSONPath=`.spec.privateIPs`
// +kubebuilder:printcolumn:name="Public IPs",type=string,JSONPath=`.spec.publicIPs`
// +kubebuilder:printcolumn:name="Subnets",type=string,JSONPath=`.spec.subnets`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Endpoint describes a cluster's active gateway as other clusters' gateways
// need to know it to build a cable to it.
type Endpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec EndpointSpec `json:"spec"`
}

// EndpointSpec is how to reach a cluster's active gateway.
//
// +kubebuilder:validation:XValidation:rule="self.cableDriver != 'wireguard' || has(self.wireguard)",message="a wireguard endpoint needs spec.wireguard (public key and port)"
// +kubebuilder:validation:XValidation:rule="self.cableDriver != 'vxlan' || has(self.vxlan)",message="a vxlan endpoint needs spec.vxlan (VNI and port)"
type EndpointSpec struct {
	// ClusterID is the cluster whose gateway this is.
	ClusterID ClusterID `json:"clusterID"`

	// Hostname is the gateway node's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Hostname string `json:"hostname"`

	// PrivateIPs are the gateway's addresses on its node network, one per family.
	// +kubebuilder:validation:MinItems=1
	PrivateIPs DualStackIPs `json:"privateIPs"`

	// PublicIPs are the addresses the gateway is reached at from outside its
	// network, one per family; equal to PrivateIPs when there is no NAT, empty
	// when they are not known.
	// +optional
	PublicIPs DualStackIPs `json:"publicIPs,omitempty"`

	// NATTraversal says that the gateway sits behind NAT (its public address
	// is not one of its own): peers and the gateway keep the path open with
	// keepalives, and only the side behind NAT can open it.
	// +optional
	NATTraversal bool `json:"natTraversal,omitempty"`

	// NATDiscoveryPort is the UDP port the gateway answers NAT discovery on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	NATDiscoveryPort int32 `json:"natDiscoveryPort,omitempty"`

	// Subnets are the prefixes routed to this gateway: the cluster's pod and
	// service CIDRs, or its global CIDRs under globalnet.
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	Subnets []CIDR `json:"subnets"`

	// CableDriver is the tunnel this gateway speaks.
	CableDriver CableDriver `json:"cableDriver"`

	// WireGuard is the configuration peers need for the wireguard driver.
	// +optional
	WireGuard *WireGuardConfig `json:"wireguard,omitempty"`

	// VXLAN is the configuration peers need for the vxlan driver.
	// +optional
	VXLAN *VXLANConfig `json:"vxlan,omitempty"`

	// HealthCheckIPs are addresses inside the cluster, one per family, that
	// peers probe through the tunnel to measure the connection.
	// +optional
	HealthCheckIPs DualStackIPs `json:"healthCheckIPs,omitempty"`

	// Candidates are the cluster's standby gateways, which may take this
	// gateway's place: other clusters know each one's addresses and key in
	// advance, so that they can switch their cable to it when it announces a
	// takeover, before its own Endpoint reaches them through the broker
	// (docs/failover-without-broker.md). The active gateway lists every other
	// Gateway of its cluster whose Node exists, sorted by hostname; it
	// refreshes the list within 30 s of a change.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=hostname
	// +optional
	Candidates []GatewayCandidate `json:"candidates,omitempty"`
}

// GatewayCandidate is a standby gateway of an Endpoint's cluster: the fields
// of its Endpoint that peers need to reach it, as it would publish them.
type GatewayCandidate struct {
	// Hostname is the standby gateway node's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Hostname string `json:"hostname"`

	// PrivateIPs are its addresses on its node network, one per family.
	// +kubebuilder:validation:MinItems=1
	PrivateIPs DualStackIPs `json:"privateIPs"`

	// PublicIPs are the addresses it is reached at from outside its network.
	// +optional
	PublicIPs DualStackIPs `json:"publicIPs,omitempty"`

	// NATTraversal says that it sits behind NAT.
	// +optional
	NATTraversal bool `json:"natTraversal,omitempty"`

	// WireGuard is its public key and port, for the wireguard driver.
	// +optional
	WireGuard *WireGuardConfig `json:"wireguard,omitempty"`

	// VXLAN is its VXLAN configuration, for the vxlan driver.
	// +optional
	VXLAN *VXLANConfig `json:"vxlan,omitempty"`

	// HealthCheckIPs are its health-check addresses, one per family.
	// +optional
	HealthCheckIPs DualStackIPs `json:"healthCheckIPs,omitempty"`
}

// WireGuardConfig is the public half of a gateway's WireGuard configuration.
// The private key never leaves the gateway's cluster.
type WireGuardConfig struct {
	// PublicKey is the gateway's Curve25519 public key, base64 as wg(8) prints it.
	// +kubebuilder:validation:MaxLength=44
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$')",message="must be a WireGuard public key: 32 bytes in base64, 44 characters, as wg pubkey prints it"
	PublicKey string `json:"publicKey"`

	// Port is the UDP port the gateway listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// VXLANConfig is what peers need to reach a gateway over plain VXLAN.
type VXLANConfig struct {
	// VNI is the VXLAN network identifier (24 bits).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16777215
	VNI int32 `json:"vni"`

	// Port is the UDP port of the VXLAN device.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// +kubebuilder:object:root=true

// EndpointList is a list of Endpoints.
type EndpointList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Endpoint `json:"items"`
}

// HAStatus is a gateway's role in its cluster's high-availability pair (or set).
//
// +kubebuilder:validation:Enum=active;passive
type HAStatus string

const (
	// HAStatusActive is the one gateway per cluster that holds the cables.
	HAStatusActive HAStatus = "active"
	// HAStatusPassive is a standby gateway, ready to take over.
	HAStatusPassive HAStatus = "passive"
)

// ConnectionStatus is the state of one cable to a remote gateway.
//
// +kubebuilder:validation:Enum=connected;connecting;error
type ConnectionStatus string

const (
	// Connected means the health check through the tunnel answers.
	Connected ConnectionStatus = "connected"
	// Connecting means the cable is being set up or has not answered yet.
	Connecting ConnectionStatus = "connecting"
	// ConnectionError means setting up the cable failed or the health check
	// stopped answering; the status message says which.
	ConnectionError ConnectionStatus = "error"
)

// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories=strait
// +kubebuilder:printcolumn:name="HA",type=string,JSONPath=`.status.haStatus`
// +kubebuilder:printcolumn:name="Connections",type=integer,JSONPath=`.status.connections[*].clusterID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Gateway reports one gateway node's role and the health of its cables. It has
// no spec: it is written only through its status subresource by the gateway
// engine on that node, and is named after the node. The cluster's active
// gateway also shows passive a Gateway that still says active while another
// gateway holds the Lease (its engine was killed while active).
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status GatewayStatus `json:"status,omitempty"`
}

// GatewayStatus is what a gateway engine observes about itself.
type GatewayStatus struct {
	// HAStatus is whether this gateway is its cluster's active one.
	// +optional
	HAStatus HAStatus `json:"haStatus,omitempty"`

	// LocalEndpoint is the name of the Endpoint this gateway publishes.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	LocalEndpoint string `json:"localEndpoint,omitempty"`

	// Connections are this gateway's cables, one per remote endpoint.
	// +kubebuilder:validation:MaxItems=1024
	// +listType=map
	// +listMapKey=endpoint
	// +optional
	Connections []Connection `json:"connections,omitempty"`

	// Conditions are the gateway engine's own conditions (Ready and such).
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Connection is the state of the cable to one remote gateway.
type Connection struct {
	// ClusterID is the remote cluster.
	ClusterID ClusterID `json:"clusterID"`

	// Endpoint is the name of the remote Endpoint.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Endpoint string `json:"endpoint"`

	// Status is the cable's state.
	Status ConnectionStatus `json:"status"`

	// StatusMessage explains the status, most of all when it is error.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	StatusMessage string `json:"statusMessage,omitempty"`

	// UsingIP is the remote address the cable uses, as NAT discovery chose it.
	// +optional
	UsingIP IP `json:"usingIP,omitempty"`

	// UsingNAT says whether the cable goes through a NAT (UsingIP is the
	// remote's public address and keepalives are on).
	// +optional
	UsingNAT bool `json:"usingNAT,omitempty"`

	// LatencyRTT is the round-trip time of the health check through the tunnel.
	// +optional
	LatencyRTT *LatencyRTT `json:"latencyRTT,omitempty"`

	// PathMTU is the largest packet, in bytes (IP header included), that
	// the cable carries to the remote gateway: the inner MTU of the cable
	// towards that cluster. The gateway measures it with path MTU probes
	// through the cable (padded health probes, RFC 8899 style), or takes
	// the override configured for the cluster (PathMTUSource). The route
	// agents size the routes and the TCP MSS clamp to that cluster from
	// it. Absent while there is no figure: then they size from the local
	// network's MTU.
	// +kubebuilder:validation:Minimum=576
	// +kubebuilder:validation:Maximum=65535
	// +optional
	PathMTU int32 `json:"pathMTU,omitempty"`

	// PathMTUSource says where PathMTU comes from.
	// +optional
	PathMTUSource PathMTUSource `json:"pathMTUSource,omitempty"`
}

// PathMTUSource is where a connection's path MTU comes from.
//
// +kubebuilder:validation:Enum=Probed;Override
type PathMTUSource string

const (
	// PathMTUProbed: measured by path MTU probes through the cable.
	PathMTUProbed PathMTUSource = "Probed"
	// PathMTUOverride: configured for the remote cluster (the gateway's
	// --path-mtu flag), not measured.
	PathMTUOverride PathMTUSource = "Override"
)

// LatencyRTT summarizes health-check round trips since the cable came up.
type LatencyRTT struct {
	// Last is the most recent round trip.
	Last metav1.Duration `json:"last"`
	// Min is the shortest round trip seen.
	Min metav1.Duration `json:"min"`
	// Average is the mean round trip.
	Average metav1.Duration `json:"average"`
	// Max is the longest round trip seen.
	Max metav1.Duration `json:"max"`
}

// +kubebuilder:object:root=true

// GatewayList is a list of Gateways.
type GatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Gateway `json:"items"`
}
