package lighthouse

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
)

// importer turns the export records of every cluster (the component
// namespace holds this cluster's own and, through the syncer, everyone
// else's) into a ServiceImport, its derived Service and the imported
// EndpointSlices in the service's namespace, where that namespace exists.
type importer struct {
	c      client.Client
	reader client.Reader // uncached, for what was just written
	cfg    Config
	log    *slog.Logger
}

// Reconcile brings the import of one service (req: its namespace and
// name) in line with the records.
func (im *importer) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.NamespacedName
	exports, err := exportsOf(ctx, im.c, im.cfg.Namespace, key, im.log)
	if err != nil {
		return ctrl.Result{}, err
	}
	var ns corev1.Namespace
	nsErr := im.c.Get(ctx, types.NamespacedName{Name: key.Namespace}, &ns)
	if nsErr != nil && !apierrors.IsNotFound(nsErr) {
		return ctrl.Result{}, nsErr
	}
	if len(exports) == 0 || apierrors.IsNotFound(nsErr) || ns.DeletionTimestamp != nil || key.Namespace == im.cfg.Namespace {
		return ctrl.Result{}, im.remove(ctx, key)
	}
	m := Merge(exports)

	// The ServiceImport first: the derived Service and the slices name it
	// as their owner.
	si := &mcsv1beta1.ServiceImport{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: m.Labels, Annotations: m.Annotations},
		Spec:       m.Spec,
	}
	var derived corev1.Service
	haveDerived := false
	// The families the import can be used in here: the Service's that
	// this cluster also has, in the Service's order; its clusterset IPs
	// and, for a headless import, its endpoints are of those families
	// only. None in common (an IPv4 Service imported into an IPv6-only
	// cluster): no derived Service, which the apiserver would refuse, no
	// endpoints, and a Ready condition that says why.
	var notReady *metav1.Condition
	clusterSetIP := m.Spec.Type == mcsv1beta1.ClusterSetIP
	have, err := im.serviceFamilies(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	families := ImportFamilies(m.Spec.IPFamilies, have)
	if len(families) > 0 {
		si.Spec.IPFamilies = families
	}
	if len(m.Spec.IPFamilies) > 0 && len(families) == 0 {
		what := "no endpoints"
		if clusterSetIP {
			what = "no clusterset IP"
		}
		clusterSetIP = false
		notReady = &metav1.Condition{Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionFalse,
			Reason: string(mcsv1beta1.ServiceImportReasonIPFamilyNotSupported),
			Message: fmt.Sprintf("%s: the exported Service's IP families %s are none of this cluster's service families %s",
				what, familyList(m.Spec.IPFamilies), familyList(have))}
	}
	if clusterSetIP {
		err := im.c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: DerivedServiceName(key.Name)}, &derived)
		if err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		haveDerived = err == nil && ownedBy(&derived, key.Name)
		if haveDerived {
			si.Spec.IPs = ipsOf(&derived)
		}
	}
	cur, err := im.applyImport(ctx, si)
	if err != nil {
		return ctrl.Result{}, err
	}
	owner := metav1.OwnerReference{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport", Name: cur.Name, UID: cur.UID}

	switch {
	case clusterSetIP:
		want := derivedService(key, m, families, owner)
		if !haveDerived || !sameDerived(&derived, want) {
			if err := kubeapply.Apply(ctx, im.c, want, kubeapply.FieldManagerLighthouse); err != nil {
				return ctrl.Result{}, err
			}
			if err := im.reader.Get(ctx, client.ObjectKeyFromObject(want), &derived); err != nil {
				return ctrl.Result{}, err
			}
			if ips := ipsOf(&derived); !slices.Equal(ips, si.Spec.IPs) {
				si.Spec.IPs = ips
				if _, err := im.applyImport(ctx, si); err != nil {
					return ctrl.Result{}, err
				}
			}
		}
	default:
		var old corev1.Service
		err := im.c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: DerivedServiceName(key.Name)}, &old)
		if err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		if err == nil && ownedBy(&old, key.Name) {
			if err := kubeapply.Delete(ctx, im.c, &old); err != nil {
				return ctrl.Result{}, err
			}
		}
	}

	if err := im.syncSlices(ctx, key, m, have, owner); err != nil {
		return ctrl.Result{}, err
	}
	clusters := make([]mcsv1beta1.ClusterStatus, 0, len(m.Clusters))
	for _, c := range m.Clusters {
		clusters = append(clusters, mcsv1beta1.ClusterStatus{Cluster: c})
	}
	var conds []metav1.Condition
	if notReady != nil {
		c := *notReady
		c.ObservedGeneration = cur.Generation
		c.LastTransitionTime = metav1.Now()
		if old := meta.FindStatusCondition(cur.Status.Conditions, c.Type); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		conds = append(conds, c)
	}
	if !equality.Semantic.DeepEqual(clusters, cur.Status.Clusters) && !(len(clusters) == 0 && len(cur.Status.Clusters) == 0) ||
		!sameReady(notReady, meta.FindStatusCondition(cur.Status.Conditions, string(mcsv1beta1.ServiceImportConditionReady))) {
		st := &mcsv1beta1.ServiceImport{
			TypeMeta:   si.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace},
			Status:     mcsv1beta1.ServiceImportStatus{Clusters: clusters, Conditions: conds},
		}
		if err := kubeapply.ApplyStatus(ctx, im.c, st, kubeapply.FieldManagerLighthouse); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

// applyImport applies si unless the cached ServiceImport already says
// what it says, and returns the ServiceImport as stored.
func (im *importer) applyImport(ctx context.Context, si *mcsv1beta1.ServiceImport) (*mcsv1beta1.ServiceImport, error) {
	var cur mcsv1beta1.ServiceImport
	err := im.c.Get(ctx, client.ObjectKeyFromObject(si), &cur)
	if err == nil && sameImport(&cur, si) {
		return &cur, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if err := kubeapply.Apply(ctx, im.c, si, kubeapply.FieldManagerLighthouse); err != nil {
		return nil, err
	}
	if err := im.reader.Get(ctx, client.ObjectKeyFromObject(si), &cur); err != nil {
		return nil, err
	}
	return &cur, nil
}

// syncSlices writes an imported EndpointSlice per slice record of the
// service whose address family is one of clusterFamilies (the cluster's
// service families; nil: unknown, every family), bound to the derived
// Service for the clusters Bound picks, and removes imported slices whose
// record is gone or of another family.
func (im *importer) syncSlices(ctx context.Context, key types.NamespacedName, m Merged, clusterFamilies []corev1.IPFamily, owner metav1.OwnerReference) error {
	all, err := sliceRecordsOf(ctx, im.c, im.cfg.Namespace, key, "")
	if err != nil {
		return err
	}
	// Endpoints of a family the cluster has not (IPv6 pods of a dual-stack
	// exporter, imported into an IPv4-only cluster) are unreachable from
	// its pods: their slices are not imported, so neither kube-proxy nor
	// strait-dns hands them out.
	var recs []discoveryv1.EndpointSlice
	for _, r := range all {
		if len(clusterFamilies) == 0 || slices.Contains(clusterFamilies, addressFamily(r.AddressType)) {
			recs = append(recs, r)
		}
	}
	exporting := map[string]bool{}
	for _, c := range m.Clusters {
		exporting[c] = true
	}
	bySource := map[string]*Source{}
	for _, r := range recs {
		c := r.Labels[mcsv1beta1.LabelSourceCluster]
		if !exporting[c] {
			continue // a slice record whose export record is gone or not here yet
		}
		s := bySource[c]
		if s == nil {
			s = &Source{Cluster: c, Ports: map[string]bool{}}
			bySource[c] = s
		}
		for _, p := range r.Ports {
			s.Ports[ptr.Deref(p.Name, "")] = true
		}
		for _, ep := range r.Endpoints {
			if ptr.Deref(ep.Conditions.Ready, true) {
				s.Ready = true
			}
		}
	}
	bound := map[string]bool{}
	if m.Spec.Type == mcsv1beta1.ClusterSetIP {
		health, active, err := im.health(ctx)
		if err != nil {
			return err
		}
		var sources []Source
		for _, s := range bySource {
			sources = append(sources, *s)
			// With an active gateway, a remote cluster it has no
			// connection to is as unreachable as one in error (its
			// gateways are gone, say); without one, nothing is known
			// and every cluster counts as healthy.
			if _, ok := health[s.Cluster]; active && !ok && s.Cluster != im.cfg.ClusterID {
				health[s.Cluster] = ClusterHealth{Error: true}
			}
		}
		var ports []string
		for _, p := range m.Spec.Ports {
			ports = append(ports, p.Name)
		}
		for _, c := range Bound(im.cfg.ClusterID, m.Policy, ports, sources, health) {
			bound[c] = true
		}
	}
	want := map[string]bool{}
	for i := range recs {
		r := &recs[i]
		c := r.Labels[mcsv1beta1.LabelSourceCluster]
		if !exporting[c] {
			continue
		}
		sl := ImportedSlice(r, im.cfg.ClusterID, bound[c], owner)
		want[sl.Name] = true
		var cur discoveryv1.EndpointSlice
		err := im.c.Get(ctx, client.ObjectKeyFromObject(sl), &cur)
		if err == nil && sameSlice(&cur, sl) {
			continue
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		// Binding or unbinding changes kubernetes.io/service-name, and
		// kube-proxy keys its endpoints by that label as it sees a slice
		// now: an update that removes or changes it leaves the endpoints
		// under the old Service for good (k8s pkg/proxy
		// endpointslicecache). Such a slice is deleted and made again.
		if err == nil && cur.Labels[discoveryv1.LabelServiceName] != sl.Labels[discoveryv1.LabelServiceName] {
			if err := kubeapply.Delete(ctx, im.c, &cur, client.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsConflict(err) {
				return err
			}
		}
		if err := kubeapply.Apply(ctx, im.c, sl, kubeapply.FieldManagerLighthouse); err != nil {
			return err
		}
	}
	var have discoveryv1.EndpointSliceList
	if err := im.c.List(ctx, &have, client.InNamespace(key.Namespace), importedSlices(key.Name)); err != nil {
		return err
	}
	for i := range have.Items {
		if !want[have.Items[i].Name] && !isRecord(&have.Items[i]) {
			if err := kubeapply.Delete(ctx, im.c, &have.Items[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// health reads the local active gateway's view of the remote clusters
// (GatewayHealth) from the Gateways in the component namespace.
func (im *importer) health(ctx context.Context) (map[string]ClusterHealth, bool, error) {
	var gws v1.GatewayList
	if err := im.c.List(ctx, &gws, client.InNamespace(im.cfg.Namespace)); err != nil {
		return nil, false, err
	}
	h := GatewayHealth(gws.Items)
	return h.Clusters, h.Active, nil
}

// remove deletes the service's ServiceImport (when Lighthouse made it),
// derived Service and imported slices: no cluster exports it any more, or
// its namespace is not here.
func (im *importer) remove(ctx context.Context, key types.NamespacedName) error {
	var have discoveryv1.EndpointSliceList
	if err := im.c.List(ctx, &have, client.InNamespace(key.Namespace), importedSlices(key.Name)); err != nil {
		return err
	}
	for i := range have.Items {
		if isRecord(&have.Items[i]) {
			continue // a broker copy, where this cluster hosts the broker
		}
		if err := kubeapply.Delete(ctx, im.c, &have.Items[i]); err != nil {
			return err
		}
	}
	var svc corev1.Service
	if err := im.c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: DerivedServiceName(key.Name)}, &svc); err == nil && ownedBy(&svc, key.Name) {
		if err := kubeapply.Delete(ctx, im.c, &svc); err != nil {
			return err
		}
	}
	var si mcsv1beta1.ServiceImport
	if err := im.c.Get(ctx, key, &si); err == nil && kubeapply.WrittenBy(&si, kubeapply.FieldManagerLighthouse) && !isRecord(&si) {
		if err := kubeapply.Delete(ctx, im.c, &si, client.Preconditions{UID: &si.UID}); err != nil && !apierrors.IsConflict(err) {
			return err
		}
	}
	return nil
}

// importedSlices selects the slices Lighthouse imported for service name.
func importedSlices(name string) client.MatchingLabels {
	return client.MatchingLabels{mcsv1beta1.LabelServiceName: name, discoveryv1.LabelManagedBy: ManagedBy}
}

// serviceFamilies are the IP families of this cluster's service CIDRs (its
// ServiceCIDR objects, which the apiserver allocates ClusterIPs from), or
// nil when it has none to read (an apiserver older than the ServiceCIDR
// API): then nothing is known and every family counts.
func (im *importer) serviceFamilies(ctx context.Context) ([]corev1.IPFamily, error) {
	var list networkingv1.ServiceCIDRList
	if err := im.c.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list ServiceCIDRs: %w", err)
	}
	var out []corev1.IPFamily
	for _, sc := range list.Items {
		if sc.DeletionTimestamp != nil {
			continue
		}
		for _, c := range sc.Spec.CIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			f := corev1.IPv6Protocol
			if p.Addr().Is4() {
				f = corev1.IPv4Protocol
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

// addressFamily is the IP family of an EndpointSlice's address type
// (IPv4 or IPv6; FQDN slices, which Lighthouse does not export, count as
// IPv4's).
func addressFamily(t discoveryv1.AddressType) corev1.IPFamily {
	if t == discoveryv1.AddressTypeIPv6 {
		return corev1.IPv6Protocol
	}
	return corev1.IPv4Protocol
}

// ImportFamilies are the IP families an import's clusterset IPs get in a
// cluster whose Services can have the families have: those of the exported
// Service (exported, the merged export's spec.ipFamilies) that the cluster
// has, in the exported order. With have empty (unknown), exported as it
// is. An empty result for a non-empty exported means the two share no
// family: the import can have no clusterset IP there.
func ImportFamilies(exported, have []corev1.IPFamily) []corev1.IPFamily {
	if len(have) == 0 {
		return slices.Clone(exported)
	}
	var out []corev1.IPFamily
	for _, f := range exported {
		if slices.Contains(have, f) {
			out = append(out, f)
		}
	}
	return out
}

// familyList prints families for a condition message: "[IPv4 IPv6]", or
// "[] (unknown)" for none.
func familyList(fs []corev1.IPFamily) string {
	if len(fs) == 0 {
		return "[] (unknown)"
	}
	return fmt.Sprint(fs)
}

// sameReady reports whether the import's Ready condition as stored (cur,
// nil when it has none) says what want says (nil: no condition), times
// aside.
func sameReady(want, cur *metav1.Condition) bool {
	if want == nil || cur == nil {
		return want == nil && cur == nil
	}
	return want.Status == cur.Status && want.Reason == cur.Reason && want.Message == cur.Message
}

// derivedService is the Service that gives the import its clusterset IP:
// no selector (its endpoints are the imported slices bound to it), the
// import's ports, session affinity, internal traffic policy and traffic
// distribution, and families, the IP families the clusterset IPs get here
// in the exported Service's order (ImportFamilies; none: the cluster's
// default).
func derivedService(key types.NamespacedName, m Merged, families []corev1.IPFamily, owner metav1.OwnerReference) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name: DerivedServiceName(key.Name), Namespace: key.Namespace,
			Labels:          map[string]string{mcsv1beta1.LabelServiceName: key.Name, ManagedLabel: "true"},
			OwnerReferences: []metav1.OwnerReference{owner},
		},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeClusterIP,
			SessionAffinity:       orNone(m.Spec.SessionAffinity),
			InternalTrafficPolicy: m.Spec.InternalTrafficPolicy,
			TrafficDistribution:   m.Spec.TrafficDistribution,
			IPFamilies:            families,
		},
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		svc.Spec.SessionAffinityConfig = m.Spec.SessionAffinityConfig.DeepCopy()
	}
	switch len(families) {
	case 0:
	case 1:
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
	default:
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
	}
	for _, p := range m.Spec.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port, TargetPort: intstr.FromInt32(p.Port),
		})
	}
	return svc
}

func ipsOf(svc *corev1.Service) []string {
	if len(svc.Spec.ClusterIPs) > 0 {
		return slices.Clone(svc.Spec.ClusterIPs)
	}
	if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		return []string{svc.Spec.ClusterIP}
	}
	return nil
}

// ownedBy reports whether svc is the derived Service of import name.
func ownedBy(svc *corev1.Service, name string) bool {
	return svc.Labels[ManagedLabel] == "true" && svc.Labels[mcsv1beta1.LabelServiceName] == name
}

func sameImport(cur, want *mcsv1beta1.ServiceImport) bool {
	return equality.Semantic.DeepEqual(cur.Spec, want.Spec) && sameMap(cur.Labels, want.Labels) && sameMap(cur.Annotations, want.Annotations)
}

func sameDerived(cur, want *corev1.Service) bool {
	if !sameMap(cur.Labels, want.Labels) || len(cur.Spec.Ports) != len(want.Spec.Ports) || !slices.Equal(cur.Spec.IPFamilies, want.Spec.IPFamilies) && len(want.Spec.IPFamilies) > 0 {
		return false
	}
	for i, p := range want.Spec.Ports {
		c := cur.Spec.Ports[i]
		if c.Name != p.Name || c.Protocol != p.Protocol || c.Port != p.Port || !equality.Semantic.DeepEqual(c.AppProtocol, p.AppProtocol) {
			return false
		}
	}
	return cur.Spec.SessionAffinity == want.Spec.SessionAffinity &&
		equality.Semantic.DeepEqual(affinityOf(cur), affinityOf(want)) &&
		ptr.Deref(cur.Spec.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster) == ptr.Deref(want.Spec.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster) &&
		ptr.Deref(cur.Spec.TrafficDistribution, "") == ptr.Deref(want.Spec.TrafficDistribution, "")
}

func affinityOf(s *corev1.Service) *corev1.SessionAffinityConfig {
	if s.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return nil
	}
	return s.Spec.SessionAffinityConfig
}

func sameSlice(cur, want *discoveryv1.EndpointSlice) bool {
	return sameMap(cur.Labels, want.Labels) && cur.AddressType == want.AddressType &&
		equality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
		(len(cur.Endpoints) == 0 && len(want.Endpoints) == 0 || equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints))
}

func sameMap(a, b map[string]string) bool {
	return len(a) == 0 && len(b) == 0 || equality.Semantic.DeepEqual(a, b)
}
