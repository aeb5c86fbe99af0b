package lighthouse

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/syncer"
)

// Validity is why a ServiceExport can or cannot be exported: the reason of
// its Valid condition (KEP-1645, "Exporting Services").
func Validity(svc *corev1.Service) (mcsv1beta1.ServiceExportConditionReason, string) {
	switch {
	case svc == nil:
		return mcsv1beta1.ServiceExportReasonNoService, "the Service does not exist"
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return mcsv1beta1.ServiceExportReasonInvalidServiceType, "a Service of type ExternalName cannot be exported"
	}
	return mcsv1beta1.ServiceExportReasonValid, "the Service can be exported"
}

// ExportRecord is the export record of svc, exported by se from cluster
// (the ServiceImport that goes to the broker), in namespace ns
// (strait-system): the Service's properties in its spec, the export's
// exported labels and annotations and its traffic policy in annotations.
// The spec's IPs are left empty: each importing cluster has its own.
func ExportRecord(svc *corev1.Service, se *mcsv1beta1.ServiceExport, cluster, ns string) (*mcsv1beta1.ServiceImport, error) {
	spec := mcsv1beta1.ServiceImportSpec{
		Type:                  mcsv1beta1.ClusterSetIP,
		Ports:                 []mcsv1beta1.ServicePort{},
		SessionAffinity:       svc.Spec.SessionAffinity,
		IPFamilies:            svc.Spec.IPFamilies,
		InternalTrafficPolicy: svc.Spec.InternalTrafficPolicy,
		TrafficDistribution:   svc.Spec.TrafficDistribution,
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		spec.Type = mcsv1beta1.Headless
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		spec.SessionAffinityConfig = svc.Spec.SessionAffinityConfig.DeepCopy()
	}
	for _, p := range svc.Spec.Ports {
		spec.Ports = append(spec.Ports, mcsv1beta1.ServicePort{Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port})
	}
	ann := map[string]string{}
	for key, m := range map[string]map[string]string{
		ExportedLabelsAnnotation: se.Spec.ExportedLabels, ExportedAnnotationsAnnotation: se.Spec.ExportedAnnotations,
	} {
		if len(m) == 0 {
			continue
		}
		data, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		ann[key] = string(data)
	}
	if p := se.Annotations[TrafficPolicyAnnotation]; p != "" {
		ann[TrafficPolicyAnnotation] = p
	}
	rec := &mcsv1beta1.ServiceImport{
		TypeMeta: metav1.TypeMeta{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ExportRecordName(svc.Name, svc.Namespace, cluster), Namespace: ns,
			Labels:      recordLabels(svc.Name, svc.Namespace, cluster),
			Annotations: ann,
		},
		Spec: spec,
	}
	return rec, nil
}

// recordLabels are the labels of every record of Service namespace/name
// from cluster: its owner (the syncer's selector, the broker's isolation
// policy), its source cluster and its origin.
func recordLabels(name, namespace, cluster string) map[string]string {
	return map[string]string{
		v1.ClusterIDLabel:             cluster,
		mcsv1beta1.LabelSourceCluster: cluster,
		OriginNameLabel:               name,
		OriginNamespaceLabel:          namespace,
	}
}

// ParseExport reads an export record back. Errors: the record lacks its
// cluster label, or its exported labels or annotations are not JSON
// objects of strings.
func ParseExport(rec *mcsv1beta1.ServiceImport) (Export, error) {
	e := Export{Cluster: rec.Labels[mcsv1beta1.LabelSourceCluster], Spec: *rec.Spec.DeepCopy(), Policy: TrafficPolicy(rec.Annotations[TrafficPolicyAnnotation])}
	if e.Cluster == "" {
		return Export{}, fmt.Errorf("export record %s has no %s label", rec.Name, mcsv1beta1.LabelSourceCluster)
	}
	if t, ok := syncer.BrokerCreatedAt(rec); ok {
		e.Stored = t
	}
	for key, dst := range map[string]*map[string]string{ExportedLabelsAnnotation: &e.Labels, ExportedAnnotationsAnnotation: &e.Annotations} {
		if s, ok := rec.Annotations[key]; ok {
			if err := json.Unmarshal([]byte(s), dst); err != nil {
				return Export{}, fmt.Errorf("export record %s: annotation %s: %w", rec.Name, key, err)
			}
		}
	}
	return e, nil
}

// SliceRecord is the record of the local EndpointSlice slice of Service
// namespace/name from cluster, in namespace ns (strait-system): its address
// type, endpoints and ports, labelled as a record and as an MCS slice
// (multicluster.kubernetes.io/service-name and source-cluster, managed by
// Lighthouse).
func SliceRecord(slice *discoveryv1.EndpointSlice, name, cluster, ns string) *discoveryv1.EndpointSlice {
	labels := recordLabels(name, slice.Namespace, cluster)
	labels[mcsv1beta1.LabelServiceName] = name
	labels[discoveryv1.LabelManagedBy] = ManagedBy
	rec := &discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"},
		ObjectMeta:  metav1.ObjectMeta{Name: SliceRecordName(name, slice.Namespace, cluster, slice.Name), Namespace: ns, Labels: labels},
		AddressType: slice.AddressType,
		Ports:       slice.Ports,
	}
	for _, ep := range slice.Endpoints {
		ep := *ep.DeepCopy()
		ep.TargetRef = nil // a pod of this cluster; means nothing elsewhere
		ep.Hints = nil     // zone hints for this cluster's kube-proxy
		rec.Endpoints = append(rec.Endpoints, ep)
	}
	return rec
}

// ImportedSlice is the EndpointSlice that slice record rec becomes in the
// service's namespace of an importing cluster (local is that cluster's ID):
// the MCS labels, ours, and, when bound, kubernetes.io/service-name naming
// the derived Service, so that kube-proxy routes its clusterset IP to these
// endpoints. Endpoints of another cluster lose their node name: it names a
// node of that cluster, which kube-proxy would mistake for a local one.
func ImportedSlice(rec *discoveryv1.EndpointSlice, local string, bound bool, owner metav1.OwnerReference) *discoveryv1.EndpointSlice {
	name, ns, cluster := rec.Labels[OriginNameLabel], rec.Labels[OriginNamespaceLabel], rec.Labels[mcsv1beta1.LabelSourceCluster]
	labels := map[string]string{
		mcsv1beta1.LabelServiceName:   name,
		mcsv1beta1.LabelSourceCluster: cluster,
		discoveryv1.LabelManagedBy:    ManagedBy,
		ManagedLabel:                  "true",
	}
	if bound {
		labels[discoveryv1.LabelServiceName] = DerivedServiceName(name)
	}
	out := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: discoveryv1.SchemeGroupVersion.String(), Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ImportedSliceName(name, cluster, rec.Name), Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		AddressType: rec.AddressType,
		Ports:       rec.Ports,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, ep := range rec.Endpoints {
		ep := *ep.DeepCopy()
		if cluster != local {
			ep.NodeName = nil
		}
		out.Endpoints = append(out.Endpoints, ep)
	}
	return out
}
