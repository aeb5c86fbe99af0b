package v1alpha1

// Well-known names that every Strait component and straitctl agree on.
const (
	// ComponentNamespace is where Strait's components run in a member cluster
	// and where imported Cluster and Endpoint objects are kept.
	ComponentNamespace = "strait-system"

	// BrokerNamespace is the default namespace of the broker.
	BrokerNamespace = "strait-broker"

	// ClusterIDLabel labels every synced object with the ID of the cluster that
	// owns it; only that cluster writes the object.
	ClusterIDLabel = "strait.dev/cluster-id"

	// ClusterIDPropertyName is the ClusterProperty (about.k8s.io) whose value
	// is the cluster's ID, as KEP-2149 defines it.
	ClusterIDPropertyName = "cluster.clusterset.k8s.io"

	// PublicIPAnnotation on a gateway Node gives the address other clusters
	// reach it at, when it is not the node's InternalIP.
	PublicIPAnnotation = "strait.dev/public-ip"

	// GatewayNodeLabel (value "true") marks the nodes the gateway engine
	// runs on: the gateway DaemonSet's node selector, which
	// "straitctl join --gateway-nodes" sets.
	GatewayNodeLabel = "strait.dev/gateway"

	// GatewayLeaseName is the Lease the gateways of a cluster compete for
	// in ComponentNamespace: its holder is the active gateway's node.
	GatewayLeaseName = "strait-gateway"

	// GatewayEpochAnnotation on an Endpoint counts the takeovers of the
	// gateway Lease up to the one that made this gateway active: of two
	// Endpoints of one cluster (a failover in flight), the higher wins.
	GatewayEpochAnnotation = "strait.dev/gateway-epoch"

	// ClusterSetPropertyName is the ClusterProperty naming the clusterset the
	// cluster belongs to.
	ClusterSetPropertyName = "clusterset.k8s.io"

	// LighthouseManagedLabel (value "true") marks the derived Services and
	// imported EndpointSlices Lighthouse makes in application namespaces
	// (ServiceImports carry only their exports' exported labels; Lighthouse's
	// are told by their field manager, strait-lighthouse). It is
	// lighthouse.ManagedLabel; it lives here because straitctl leave
	// (pkg/member), which may not import a component, deletes the objects
	// that carry it.
	LighthouseManagedLabel = "lighthouse.strait.dev/managed"
)
