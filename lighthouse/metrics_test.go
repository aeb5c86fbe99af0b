package lighthouse

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
)

func exportWith(name string, conds ...metav1.Condition) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name},
		Status: mcsv1beta1.ServiceExportStatus{Conditions: conds}}
}

func exportCond(typ mcsv1beta1.ServiceExportConditionType, s metav1.ConditionStatus) metav1.Condition {
	return metav1.Condition{Type: string(typ), Status: s, Reason: "R", LastTransitionTime: metav1.Now()}
}

// The export series count ServiceExports by condition and status, the
// import series the ServiceImports outside the component namespace that
// are not records; the sync series follow the syncer's attempts.
func TestMetrics(t *testing.T) {
	valid := exportCond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue)
	objs := []client.Object{
		exportWith("a", valid, exportCond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue), exportCond(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse)),
		exportWith("b", valid, exportCond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue), exportCond(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue)),
		exportWith("c", exportCond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse), exportCond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse)),
		exportWith("d"), // not reconciled yet
		&mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "a"}},
		&mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "b"}},
		// An export record and a broker copy of one: not imports.
		&mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "a-app-c1", Labels: map[string]string{v1.ClusterIDLabel: "c1"}}},
		&mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "broker-ns", Name: "a-app-c2", Labels: map[string]string{v1.ClusterIDLabel: "c2"}}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).WithStatusSubresource(&mcsv1beta1.ServiceExport{}).Build()
	m := NewMetrics(c, v1.ComponentNamespace)
	m.now = func() time.Time { return time.Unix(1700000000, 500_000_000) }
	m.recordSync(nil)
	m.recordSync(errors.New("broker unreachable"))
	m.recordSync(errors.New("broker unreachable"))

	want := `# HELP strait_lighthouse_broker_last_sync_timestamp_seconds Unix time of the last successful sync of an export record with the broker, or of the first complete list of both sides; 0 before.
# TYPE strait_lighthouse_broker_last_sync_timestamp_seconds gauge
strait_lighthouse_broker_last_sync_timestamp_seconds 1.7000000005e+09
# HELP strait_lighthouse_broker_sync_errors_total Failed attempts to sync one export record between the cluster and the broker (each is retried with back-off).
# TYPE strait_lighthouse_broker_sync_errors_total counter
strait_lighthouse_broker_sync_errors_total 2
# HELP strait_lighthouse_exports ServiceExports in the cluster by condition (Valid, Ready, Conflict) and its status (True, False, Unknown); an export without the condition yet is in none.
# TYPE strait_lighthouse_exports gauge
strait_lighthouse_exports{condition="Conflict",status="False"} 1
strait_lighthouse_exports{condition="Conflict",status="True"} 1
strait_lighthouse_exports{condition="Conflict",status="Unknown"} 0
strait_lighthouse_exports{condition="Ready",status="False"} 1
strait_lighthouse_exports{condition="Ready",status="True"} 2
strait_lighthouse_exports{condition="Ready",status="Unknown"} 0
strait_lighthouse_exports{condition="Valid",status="False"} 1
strait_lighthouse_exports{condition="Valid",status="True"} 2
strait_lighthouse_exports{condition="Valid",status="Unknown"} 0
# HELP strait_lighthouse_imports ServiceImports the agent keeps in the cluster's namespaces (one per service exported by some cluster of the clusterset).
# TYPE strait_lighthouse_imports gauge
strait_lighthouse_imports 2
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n, err := testutil.CollectAndLint(m); err != nil || len(n) != 0 {
		t.Errorf("lint: %v %v", n, err)
	}
}
