package export

import (
	"bytes"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
)

func c(typ mcsv1beta1.ServiceExportConditionType, status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: string(typ), Status: status, Reason: reason, Message: "msg of " + string(typ)}
}

var (
	valid    = c(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, "Valid")
	invalid  = c(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, "NoService")
	pending  = c(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionUnknown, "Pending")
	exported = c(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, "Exported")
	failed   = c(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, "Failed")
	conflict = c(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, "PortConflict")
)

func TestSettledAndVerdict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		conds   []metav1.Condition
		settled bool
		verdict string // "" for none
	}{
		{"nothing yet", nil, false, ""},
		{"valid, on its way", []metav1.Condition{valid, pending}, false, ""},
		{"valid only", []metav1.Condition{valid}, false, ""},
		{"invalid", []metav1.Condition{invalid, failed}, true, "is not valid (NoService): msg of Valid"},
		{"invalid before Ready", []metav1.Condition{invalid}, true, "is not valid"},
		{"exported", []metav1.Condition{valid, exported}, true, ""},
		{"exported with a conflict", []metav1.Condition{valid, exported, conflict}, true, ""},
		{"failed", []metav1.Condition{valid, failed}, true, "is not exported (Failed)"},
	} {
		se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Status: mcsv1beta1.ServiceExportStatus{Conditions: tc.conds}}
		if got := Settled(tc.conds); got != tc.settled {
			t.Errorf("%s: Settled = %v, want %v", tc.name, got, tc.settled)
		}
		err := Verdict(se)
		if (err == nil) != (tc.verdict == "") || err != nil && !strings.Contains(err.Error(), tc.verdict) {
			t.Errorf("%s: Verdict = %v, want %q", tc.name, err, tc.verdict)
		}
	}
}

func TestPrint(t *testing.T) {
	se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Status: mcsv1beta1.ServiceExportStatus{Conditions: []metav1.Condition{valid, exported}}}
	var b bytes.Buffer
	if err := Print(&b, se, &cmdutil.Output{Format: "table"}); err != nil {
		t.Fatal(err)
	}
	want := "ServiceExport shop/web\nCONDITION  STATUS  REASON    SINCE  MESSAGE\n" +
		"Valid      True    Valid     -      msg of Valid\nReady      True    Exported  -      msg of Ready\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := Print(&b, se, &cmdutil.Output{Format: "yaml"}); err != nil || !strings.Contains(b.String(), "exports:\n- metadata:\n    name: web\n") {
		t.Errorf("yaml: %v\n%s", err, b.String())
	}
}
