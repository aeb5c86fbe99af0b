package show

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

func TestParse(t *testing.T) {
	if n, err := Parse("all"); err != nil || strings.Join(n, ",") != strings.Join(Nouns, ",") {
		t.Errorf("all: %v %v", n, err)
	}
	if n, err := Parse("imports"); err != nil || len(n) != 1 || n[0] != "imports" {
		t.Errorf("imports: %v %v", n, err)
	}
	if _, err := Parse("widgets"); err == nil || !strings.Contains(err.Error(), "want all, clusters, networks") {
		t.Errorf("widgets: %v", err)
	}
	for _, n := range Nouns {
		if len(headers[n]) == 0 {
			t.Errorf("noun %s has no headers", n)
		}
	}
}

func TestImageVersion(t *testing.T) {
	for in, want := range map[string]string{
		"strait/strait-gateway:v0.3.0":         "v0.3.0",
		"reg.local:5000/strait/strait-gateway": "",
		"reg.local:5000/strait/gw:dev":         "dev",
		"strait/gw@sha256:abcd":                "sha256:abcd",
		"strait/gw:v1@sha256:abcd":             "sha256:abcd",
		"busybox":                              "",
	} {
		if got := ImageVersion(in); got != want {
			t.Errorf("ImageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func cond(typ mcsv1beta1.ServiceExportConditionType, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: string(typ), Status: status, Reason: reason, Message: msg}
}

func TestExportCells(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conds []metav1.Condition
		want  string
	}{
		{"none yet", nil, "shop|web||||"},
		{"exported", []metav1.Condition{
			cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, "Valid", "ok"),
			cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, "Exported", "at the broker"),
			cond(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, "NoConflicts", "none"),
		}, "shop|web|True (Valid)|True (Exported)|False (NoConflicts)|"},
		{"no service", []metav1.Condition{
			cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, "NoService", "no Service web"),
			cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, "Failed", "not exported: no Service web"),
		}, "shop|web|False (NoService)|False (Failed)||no Service web"},
		{"pending", []metav1.Condition{
			cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, "Valid", "ok"),
			cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionUnknown, "Pending", "on its way"),
		}, "shop|web|True (Valid)|Unknown (Pending)||on its way"},
		{"conflict", []metav1.Condition{
			cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, "Valid", "ok"),
			cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, "Exported", "at the broker"),
			cond(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, "PortConflict", "c2 exports port 81"),
		}, "shop|web|True (Valid)|True (Exported)|True (PortConflict)|c2 exports port 81"},
	} {
		se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Status: mcsv1beta1.ServiceExportStatus{Conditions: tc.conds}}
		if got := strings.Join(ExportCells(se), "|"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestImportCells(t *testing.T) {
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, IPs: []string{"10.100.0.9", "fd00::9"},
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}, {Port: 8080}}},
		Status: mcsv1beta1.ServiceImportStatus{Clusters: []mcsv1beta1.ClusterStatus{{Cluster: "c2"}, {Cluster: "c1"}}},
	}
	want := "shop|web|ClusterSetIP|10.100.0.9,fd00::9|http:80/TCP,53/UDP,8080/TCP|c1,c2"
	if got := strings.Join(ImportCells(si), "|"); got != want {
		t.Errorf("ImportCells = %q, want %q", got, want)
	}
}

func TestNetworkRows(t *testing.T) {
	clusters := []v1.Cluster{
		{Spec: v1.ClusterSpec{ClusterID: "c1", PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"}}},
		{Spec: v1.ClusterSpec{ClusterID: "c2", PodCIDRs: []v1.CIDR{"10.2.0.0/16", "fd02::/56"}, ServiceCIDRs: []v1.CIDR{"10.102.0.0/16"}, GlobalCIDRs: []v1.CIDR{"242.0.1.0/24"}}},
		{Spec: v1.ClusterSpec{ClusterID: "c3", PodCIDRs: []v1.CIDR{"10.3.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.103.0.0/16"}}},
	}
	eps := []v1.Endpoint{
		{Spec: v1.EndpointSpec{ClusterID: "c1", CableDriver: v1.CableDriverWireGuard}},
		{Spec: v1.EndpointSpec{ClusterID: "c1", CableDriver: v1.CableDriverWireGuard}},
		{Spec: v1.EndpointSpec{ClusterID: "c2", CableDriver: "vxlan"}},
	}
	var got []string
	for _, r := range networkRows(clusters, eps, "c2") {
		got = append(got, strings.Join(r.Cells, "|"))
	}
	want := []string{
		"c1|no|10.1.0.0/16|10.101.0.0/16|wireguard|none",
		"c2|yes|10.2.0.0/16,fd02::/56|10.102.0.0/16|vxlan|242.0.1.0/24",
		"c3|no|10.3.0.0/16|10.103.0.0/16||none",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("networks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestIsExportRecord(t *testing.T) {
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		want   bool
	}{
		{"shop", nil, false},
		{"shop", map[string]string{"app": "web"}, false},
		{v1.ComponentNamespace, nil, true},
		{"strait-broker", map[string]string{v1.ClusterIDLabel: "c1"}, true},
	} {
		si := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: tc.ns, Name: "x", Labels: tc.labels}}
		if got := IsExportRecord(si); got != tc.want {
			t.Errorf("IsExportRecord(%s %v) = %v, want %v", tc.ns, tc.labels, got, tc.want)
		}
	}
}

func TestConnectionRowsShowPathMTU(t *testing.T) {
	gws := []v1.Gateway{{ObjectMeta: metav1.ObjectMeta{Name: "c1-n1"}, Status: v1.GatewayStatus{Connections: []v1.Connection{
		{ClusterID: "c2", Endpoint: "c2-n1", PathMTU: 1340, PathMTUSource: v1.PathMTUProbed},
		{ClusterID: "c3", Endpoint: "c3-n1", PathMTU: 1300, PathMTUSource: v1.PathMTUOverride},
		{ClusterID: "c4", Endpoint: "c4-n1"},
	}}}}
	col := -1
	for i, h := range headers["connections"] {
		if h == "PATH MTU" {
			col = i
		}
	}
	if col < 0 {
		t.Fatalf("no PATH MTU column in %v", headers["connections"])
	}
	rows := connectionRows(gws)
	for i, want := range []string{"1340", "1300 (override)", ""} {
		if len(rows[i].Cells) != len(headers["connections"]) {
			t.Fatalf("row %d has %d cells for %d headers", i, len(rows[i].Cells), len(headers["connections"]))
		}
		if got := rows[i].Cells[col]; got != want {
			t.Errorf("row %d: PATH MTU %q, want %q", i, got, want)
		}
	}
}
