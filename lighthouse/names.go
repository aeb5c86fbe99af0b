package lighthouse

import (
	"fmt"
	"hash/fnv"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Labels and annotations Lighthouse writes. The multicluster.kubernetes.io
// labels are the MCS API's (sigs.k8s.io/mcs-api v1beta1 LabelServiceName,
// LabelSourceCluster); the rest are Strait's.
const (
	// ManagedBy is the value of endpointslice.kubernetes.io/managed-by on
	// every EndpointSlice Lighthouse writes (discoveryv1.LabelManagedBy),
	// so that the cluster's EndpointSlice controller leaves them alone.
	ManagedBy = "lighthouse.strait.dev"
	// ManagedLabel (value "true") marks the derived Services and imported
	// EndpointSlices Lighthouse makes in application namespaces; straitctl
	// leave deletes these, and the ServiceImports Lighthouse's field manager
	// wrote. The key is defined in the API package, where straitctl can
	// import it.
	ManagedLabel = v1.LighthouseManagedLabel
	// OriginNameLabel and OriginNamespaceLabel name the exported Service of
	// an export record (a ServiceImport or EndpointSlice in strait-system
	// and at the broker).
	OriginNameLabel      = "lighthouse.strait.dev/origin-name"
	OriginNamespaceLabel = "lighthouse.strait.dev/origin-namespace"
	// ExportedLabelsAnnotation and ExportedAnnotationsAnnotation carry a
	// ServiceExport's spec.exportedLabels and spec.exportedAnnotations on
	// its export record, as JSON objects.
	ExportedLabelsAnnotation      = "lighthouse.strait.dev/exported-labels"
	ExportedAnnotationsAnnotation = "lighthouse.strait.dev/exported-annotations"
	// TrafficPolicyAnnotation on a ServiceExport chooses how clients in
	// every cluster reach the service's clusters: TrafficPolicyLocalFirst
	// (the default) or TrafficPolicyBalanced.
	TrafficPolicyAnnotation = "lighthouse.strait.dev/traffic-policy"
)

// TrafficPolicy is the value of TrafficPolicyAnnotation.
type TrafficPolicy string

const (
	// TrafficPolicyLocalFirst sends clients to their own cluster's endpoints
	// while it exports the service and has ready endpoints, otherwise to the
	// nearest healthy cluster (by the RTT its gateway measures).
	TrafficPolicyLocalFirst TrafficPolicy = "LocalFirst"
	// TrafficPolicyBalanced balances over every healthy exporting cluster.
	TrafficPolicyBalanced TrafficPolicy = "Balanced"
)

// ExportRecordName is the name of the export record (a ServiceImport in
// strait-system and at the broker) of Service namespace/name exported by
// cluster: "<name>.<namespace>.<cluster>". Service names and namespaces
// are DNS labels (no dots), so no two exports share a record name.
func ExportRecordName(name, namespace, cluster string) string {
	return name + "." + namespace + "." + cluster
}

// SliceRecordName is the name of the record of the local EndpointSlice
// slice of Service namespace/name exported by cluster:
// "<name>.<namespace>.<cluster>.<8 hex digits of FNV-1a of slice>".
func SliceRecordName(name, namespace, cluster, slice string) string {
	return ExportRecordName(name, namespace, cluster) + "." + hash32(slice)
}

// ImportedSliceName is the name, in the service's namespace, of the
// EndpointSlice imported from a slice record: "<name>-<cluster>-<8 hex
// digits of FNV-1a of the record's name>".
func ImportedSliceName(name, cluster, record string) string {
	return name + "-" + cluster + "-" + hash32(record)
}

// DerivedServiceName is the name of the Service that gives the
// ServiceImport name its clusterset IP: "derived-<10 hex digits of FNV-1a
// 64 of name>", as the MCS API's reference controllers name theirs.
func DerivedServiceName(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("derived-%010x", h.Sum64()&(1<<40-1))
}

func hash32(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}
