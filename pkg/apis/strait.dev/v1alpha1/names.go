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

	// ClusterSetPropertyName is the ClusterProperty naming the clusterset the
	// cluster belongs to.
	ClusterSetPropertyName = "clusterset.k8s.io"
)
