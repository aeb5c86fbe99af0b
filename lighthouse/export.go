package lighthouse

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/pkg/kubeapply"
)

// exporter turns the cluster's ServiceExports into export records in the
// component namespace (which the syncer carries to the broker) and writes
// each ServiceExport's Valid, Ready and Conflict conditions.
type exporter struct {
	c   client.Client
	cfg Config
	log *slog.Logger
}

// Reconcile brings the records of one ServiceExport (req: its namespace
// and name) in line with it and its Service.
func (x *exporter) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var se mcsv1beta1.ServiceExport
	if err := x.c.Get(ctx, req.NamespacedName, &se); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, x.withdraw(ctx, req.NamespacedName)
	}
	if req.Namespace == x.cfg.Namespace {
		// The component namespace holds the records; a Service there is
		// Strait's own.
		return ctrl.Result{}, x.setConditions(ctx, &se, []metav1.Condition{
			{Type: string(mcsv1beta1.ServiceExportConditionValid), Status: metav1.ConditionFalse, Reason: string(mcsv1beta1.ServiceExportReasonInvalidServiceType),
				Message: fmt.Sprintf("Services in %s, Strait's own namespace, cannot be exported", x.cfg.Namespace)},
		})
	}
	var svc *corev1.Service
	var s corev1.Service
	if err := x.c.Get(ctx, req.NamespacedName, &s); err == nil {
		svc = &s
	} else if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	reason, msg := Validity(svc)
	if reason != mcsv1beta1.ServiceExportReasonValid {
		if err := x.withdraw(ctx, req.NamespacedName); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, x.setConditions(ctx, &se, []metav1.Condition{
			{Type: string(mcsv1beta1.ServiceExportConditionValid), Status: metav1.ConditionFalse, Reason: string(reason), Message: msg},
			{Type: string(mcsv1beta1.ServiceExportConditionReady), Status: metav1.ConditionFalse, Reason: string(mcsv1beta1.ServiceExportReasonFailed), Message: "not exported: " + msg},
		})
	}
	rec, err := ExportRecord(svc, &se, x.cfg.ClusterID, x.cfg.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	var cur mcsv1beta1.ServiceImport
	if err := x.c.Get(ctx, client.ObjectKeyFromObject(rec), &cur); err != nil || !sameExportRecord(&cur, rec) {
		if err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		if err := kubeapply.Apply(ctx, x.c, rec, kubeapply.FieldManagerLighthouse); err != nil {
			return ctrl.Result{}, err
		}
	}
	pending, err := x.syncSlices(ctx, svc)
	if err != nil {
		return ctrl.Result{}, err
	}

	// Conflicts: every cluster's record of this service, ours included.
	exports, err := exportsOf(ctx, x.c, x.cfg.Namespace, req.NamespacedName, x.log)
	if err != nil {
		return ctrl.Result{}, err
	}
	conds := []metav1.Condition{{Type: string(mcsv1beta1.ServiceExportConditionValid), Status: metav1.ConditionTrue, Reason: string(reason), Message: msg}}
	ready := metav1.Condition{Type: string(mcsv1beta1.ServiceExportConditionReady), Status: metav1.ConditionUnknown,
		Reason: string(mcsv1beta1.ServiceExportReasonPending), Message: "the export is on its way to the broker"}
	for _, e := range exports {
		if e.Cluster == x.cfg.ClusterID && !e.Stored.IsZero() {
			ready.Status, ready.Reason = metav1.ConditionTrue, string(mcsv1beta1.ServiceExportReasonExported)
			ready.Message = "the export is at the broker since " + e.Stored.UTC().Format(time.RFC3339)
		}
	}
	if pending != "" {
		// Globalnet: the records lack global IPs the controller has not
		// allotted yet; other clusters cannot reach what they lack.
		ready.Status, ready.Reason, ready.Message = metav1.ConditionUnknown, string(mcsv1beta1.ServiceExportReasonPending), pending
	}
	conds = append(conds, ready)
	if len(exports) > 0 {
		status, reason, msg := Merge(exports).ConflictCondition()
		conds = append(conds, metav1.Condition{Type: string(mcsv1beta1.ServiceExportConditionConflict), Status: metav1.ConditionStatus(status), Reason: string(reason), Message: msg})
	}
	return ctrl.Result{}, x.setConditions(ctx, &se, conds)
}

// syncSlices writes a record of each of svc's local EndpointSlices (those
// of the cluster's EndpointSlice controller or anyone else but Lighthouse)
// and removes the records of slices that are gone. In a Globalnet cluster
// the records carry global IPs (globalnet.go); pending then says which
// global IPs are still missing ("" when none is).
func (x *exporter) syncSlices(ctx context.Context, svc *corev1.Service) (pending string, err error) {
	var list discoveryv1.EndpointSliceList
	if err := x.c.List(ctx, &list, client.InNamespace(svc.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return "", err
	}
	var local []discoveryv1.EndpointSlice
	for _, sl := range list.Items {
		if sl.Labels[discoveryv1.LabelManagedBy] != ManagedBy && sl.DeletionTimestamp == nil {
			local = append(local, sl)
		}
	}
	recs, err := sliceRecordsOf(ctx, x.c, x.cfg.Namespace, types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, x.cfg.ClusterID)
	if err != nil {
		return "", err
	}
	gn, err := x.isGlobalnet(ctx)
	if err != nil {
		return "", err
	}
	var wantRecs []*discoveryv1.EndpointSlice
	switch {
	case !gn:
		for i := range local {
			wantRecs = append(wantRecs, SliceRecord(&local[i], svc.Name, x.cfg.ClusterID, x.cfg.Namespace))
		}
	default:
		ips, err := globalIPsOf(ctx, x.c, svc)
		if err != nil {
			return "", err
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			var missing []string
			for i := range local {
				rec, m := GlobalHeadlessRecord(&local[i], svc.Name, x.cfg.ClusterID, x.cfg.Namespace, ips.pods)
				wantRecs, missing = append(wantRecs, rec), append(missing, m...)
			}
			if len(missing) > 0 {
				pending = fmt.Sprintf("waiting for the global IPs of ready pods %s (GlobalIngressIP HeadlessServicePod)", strings.Join(missing, ", "))
			}
		} else if ips.service.IsValid() {
			wantRecs = append(wantRecs, GlobalServiceRecord(svc, ips.service, anyReady(local), x.cfg.ClusterID, x.cfg.Namespace))
		} else {
			pending = "waiting for the Service's global IP (GlobalIngressIP ClusterIPService)"
			if ips.why != "" {
				pending += ": " + ips.why
			}
		}
	}
	have := map[string]*discoveryv1.EndpointSlice{}
	for i := range recs {
		have[recs[i].Name] = &recs[i]
	}
	want := map[string]bool{}
	for _, rec := range wantRecs {
		want[rec.Name] = true
		if cur := have[rec.Name]; cur != nil && sameSliceRecord(cur, rec) {
			continue
		}
		if err := kubeapply.Apply(ctx, x.c, rec, kubeapply.FieldManagerLighthouse); err != nil {
			return "", err
		}
	}
	for i := range recs {
		if !want[recs[i].Name] {
			if err := kubeapply.Delete(ctx, x.c, &recs[i]); err != nil {
				return "", err
			}
		}
	}
	return pending, nil
}

// withdraw removes this cluster's records of Service key.
func (x *exporter) withdraw(ctx context.Context, key types.NamespacedName) error {
	// Every Service event of the cluster comes here when the Service is
	// not exported: the cache says whether there is anything to delete,
	// so that those cost no request.
	rec := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Name: ExportRecordName(key.Name, key.Namespace, x.cfg.ClusterID), Namespace: x.cfg.Namespace}}
	if err := x.c.Get(ctx, client.ObjectKeyFromObject(rec), rec); err == nil {
		if err := kubeapply.Delete(ctx, x.c, rec); err != nil {
			return err
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	recs, err := sliceRecordsOf(ctx, x.c, x.cfg.Namespace, key, x.cfg.ClusterID)
	if err != nil {
		return err
	}
	for i := range recs {
		if err := kubeapply.Delete(ctx, x.c, &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// setConditions sets conds on se's status (and removes the conditions of
// ours it does not list), writing only when something changed, so that an
// unchanged export keeps its resource version and transition times.
func (x *exporter) setConditions(ctx context.Context, se *mcsv1beta1.ServiceExport, conds []metav1.Condition) error {
	next := make([]metav1.Condition, 0, len(conds))
	for _, c := range conds {
		c.ObservedGeneration = se.Generation
		if old := meta.FindStatusCondition(se.Status.Conditions, c.Type); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = metav1.Now()
		}
		next = append(next, c)
	}
	if equality.Semantic.DeepEqual(next, se.Status.Conditions) {
		return nil
	}
	out := &mcsv1beta1.ServiceExport{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceExport"},
		ObjectMeta: metav1.ObjectMeta{Name: se.Name, Namespace: se.Namespace},
		Status:     mcsv1beta1.ServiceExportStatus{Conditions: next},
	}
	return kubeapply.ApplyStatus(ctx, x.c, out, kubeapply.FieldManagerLighthouse)
}

// sameExportRecord reports whether cur, the export record as cached,
// already says what want says: the spec, and the labels and annotations
// the exporter writes (the syncer's stamp and others' keys are not ours to
// compare).
func sameExportRecord(cur, want *mcsv1beta1.ServiceImport) bool {
	if !equality.Semantic.DeepEqual(cur.Spec, want.Spec) || !hasAll(cur.Labels, want.Labels) {
		return false
	}
	for _, k := range []string{ExportedLabelsAnnotation, ExportedAnnotationsAnnotation, TrafficPolicyAnnotation} {
		c, cok := cur.Annotations[k]
		w, wok := want.Annotations[k]
		if c != w || cok != wok {
			return false
		}
	}
	return true
}

// sameSliceRecord reports whether cur, a slice record as cached, already
// says what want says.
func sameSliceRecord(cur, want *discoveryv1.EndpointSlice) bool {
	return hasAll(cur.Labels, want.Labels) && cur.AddressType == want.AddressType &&
		equality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
		(len(cur.Endpoints) == 0 && len(want.Endpoints) == 0 || equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints))
}

// hasAll reports whether have holds every key of want with its value.
func hasAll(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// exportsOf parses every cluster's export record of Service key found in
// namespace ns; a record that cannot be parsed is logged and left out.
func exportsOf(ctx context.Context, c client.Reader, ns string, key types.NamespacedName, log *slog.Logger) ([]Export, error) {
	var recs mcsv1beta1.ServiceImportList
	if err := c.List(ctx, &recs, client.InNamespace(ns), originOf(key)); err != nil {
		return nil, err
	}
	var out []Export
	for i := range recs.Items {
		e, err := ParseExport(&recs.Items[i])
		if err != nil {
			log.Warn("skipping an export record", "err", err)
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// sliceRecordsOf lists the slice records of Service key in namespace ns,
// of cluster only when cluster is not empty.
func sliceRecordsOf(ctx context.Context, c client.Reader, ns string, key types.NamespacedName, cluster string) ([]discoveryv1.EndpointSlice, error) {
	sel := originOf(key)
	if cluster != "" {
		sel[mcsv1beta1.LabelSourceCluster] = cluster
	}
	var recs discoveryv1.EndpointSliceList
	if err := c.List(ctx, &recs, client.InNamespace(ns), sel); err != nil {
		return nil, err
	}
	return recs.Items, nil
}

// originOf selects the records of Service key.
func originOf(key types.NamespacedName) client.MatchingLabels {
	return client.MatchingLabels{OriginNameLabel: key.Name, OriginNamespaceLabel: key.Namespace}
}
