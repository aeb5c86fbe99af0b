package lighthouse

import (
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func export(cluster string, stored time.Duration, ports ...mcsv1beta1.ServicePort) Export {
	e := Export{Cluster: cluster, Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP, Ports: ports, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}}}
	if stored >= 0 {
		e.Stored = t0.Add(stored)
	}
	return e
}

func port(name string, proto corev1.Protocol, n int32) mcsv1beta1.ServicePort {
	return mcsv1beta1.ServicePort{Name: name, Protocol: proto, Port: n}
}

func portsString(ps []mcsv1beta1.ServicePort) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name+":"+string(p.Protocol)+"/"+strconv.Itoa(int(p.Port)))
	}
	return strings.Join(s, " ")
}

func reasons(m Merged) string {
	var s []string
	for _, c := range m.Conflicts {
		s = append(s, string(c.Reason))
	}
	return strings.Join(s, ",")
}

func TestMergeAgreeing(t *testing.T) {
	m := Merge([]Export{export("c2", time.Second, port("http", "TCP", 80)), export("c1", 0, port("http", "TCP", 80))})
	if len(m.Conflicts) != 0 || strings.Join(m.Clusters, ",") != "c1,c2" || portsString(m.Spec.Ports) != "http:TCP/80" {
		t.Fatalf("%+v", m)
	}
	if s, r, _ := m.ConflictCondition(); s != corev1.ConditionFalse || r != mcsv1beta1.ServiceExportReasonNoConflicts {
		t.Errorf("condition %s %s", s, r)
	}
}

// The oldest by the broker's clock wins; a record not yet at the broker
// is the youngest; equal times go by cluster ID.
func TestMergeOldestWins(t *testing.T) {
	a := export("c1", 2*time.Second, port("http", "TCP", 80))
	a.Labels = map[string]string{"tier": "a"}
	b := export("c2", time.Second, port("http", "TCP", 8080))
	b.Labels = map[string]string{"tier": "b"}
	c := export("c3", -1, port("http", "TCP", 9090))
	m := Merge([]Export{c, a, b})
	if m.Labels["tier"] != "b" || portsString(m.Spec.Ports) != "http:TCP/8080" {
		t.Errorf("labels %v ports %s; want c2's (oldest)", m.Labels, portsString(m.Spec.Ports))
	}
	if got := reasons(m); got != "PortConflict,LabelsConflict" {
		t.Errorf("conflicts %s", got)
	}
	if !strings.Contains(m.Conflicts[0].Message, "c1, c3") || !strings.Contains(m.Conflicts[0].Message, "cluster c2's") {
		t.Errorf("message %q", m.Conflicts[0].Message)
	}
	// Same stored time: by cluster ID.
	x, y := export("cb", 0, port("p", "TCP", 1)), export("ca", 0, port("p", "TCP", 2))
	if got := portsString(Merge([]Export{x, y}).Spec.Ports); got != "p:TCP/2" {
		t.Errorf("tie: %s, want ca's", got)
	}
}

// Ports: the union by name, then by protocol and number.
func TestMergePortUnion(t *testing.T) {
	a := export("c1", 0, port("http", "TCP", 80), port("dns", "UDP", 53))
	b := export("c2", time.Second, port("http", "TCP", 80), port("sctp", "SCTP", 9000), port("dns", "UDP", 5353), port("other", "TCP", 80))
	m := Merge([]Export{a, b})
	if got := portsString(m.Spec.Ports); got != "dns:UDP/53 http:TCP/80 sctp:SCTP/9000" {
		t.Errorf("ports %s", got)
	}
	if reasons(m) != "PortConflict" {
		t.Errorf("conflicts %s", reasons(m))
	}
	// A TCP and a UDP port of one number are two ports; protocol defaults
	// to TCP.
	c := export("c1", 0, port("", "", 53))
	d := export("c2", time.Second, port("", "TCP", 53))
	if m := Merge([]Export{c, d}); portsString(m.Spec.Ports) != ":TCP/53" || len(m.Conflicts) != 0 {
		t.Errorf("defaulted protocol: %s %s", portsString(m.Spec.Ports), reasons(m))
	}
}

func TestMergeEachProperty(t *testing.T) {
	base := func() Export { return export("c1", 0, port("http", "TCP", 80)) }
	for _, tc := range []struct {
		reason mcsv1beta1.ServiceExportConditionReason
		change func(*Export)
	}{
		{mcsv1beta1.ServiceExportReasonTypeConflict, func(e *Export) { e.Spec.Type = mcsv1beta1.Headless }},
		{mcsv1beta1.ServiceExportReasonSessionAffinityConflict, func(e *Export) { e.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }},
		{mcsv1beta1.ServiceExportReasonLabelsConflict, func(e *Export) { e.Labels = map[string]string{"a": "b"} }},
		{mcsv1beta1.ServiceExportReasonAnnotationsConflict, func(e *Export) { e.Annotations = map[string]string{"a": "b"} }},
		{mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict, func(e *Export) { e.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal) }},
		{mcsv1beta1.ServiceExportReasonTrafficDistributionConflict, func(e *Export) { e.Spec.TrafficDistribution = ptr.To("PreferClose") }},
		{mcsv1beta1.ServiceExportReasonIPFamilyConflict, func(e *Export) { e.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }},
	} {
		b := base()
		b.Cluster, b.Stored = "c2", t0.Add(time.Second)
		tc.change(&b)
		m := Merge([]Export{b, base()})
		if reasons(m) != string(tc.reason) {
			t.Errorf("%s: conflicts %q", tc.reason, reasons(m))
		}
		if s, r, _ := m.ConflictCondition(); s != corev1.ConditionTrue || r != tc.reason {
			t.Errorf("%s: condition %s %s", tc.reason, s, r)
		}
		if m.Spec.Type != mcsv1beta1.ClusterSetIP || m.Spec.SessionAffinity != "" || m.Labels != nil || m.Spec.IPFamilies[0] != corev1.IPv4Protocol {
			t.Errorf("%s: the younger export's value won: %+v", tc.reason, m)
		}
	}
	// Session affinity config counts only with ClientIP; None equals "".
	a, b := base(), base()
	b.Cluster = "c2"
	a.Spec.SessionAffinity = corev1.ServiceAffinityNone
	b.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(5))}}
	if m := Merge([]Export{a, b}); len(m.Conflicts) != 0 {
		t.Errorf("None vs unset, config without ClientIP: %s", reasons(m))
	}
	a.Spec.SessionAffinity, b.Spec.SessionAffinity = corev1.ServiceAffinityClientIP, corev1.ServiceAffinityClientIP
	if m := Merge([]Export{a, b}); reasons(m) != string(mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict) {
		t.Errorf("ClientIP with different configs: %s", reasons(m))
	}
}

func TestBound(t *testing.T) {
	ports := []string{"http"}
	src := func(c string, ready bool, ps ...string) Source {
		s := Source{Cluster: c, Ready: ready, Ports: map[string]bool{}}
		for _, p := range ps {
			s.Ports[p] = true
		}
		return s
	}
	health := map[string]ClusterHealth{"c2": {RTT: 3 * time.Millisecond}, "c3": {RTT: time.Millisecond}, "c4": {Error: true}}
	for _, tc := range []struct {
		name    string
		policy  TrafficPolicy
		ports   []string
		sources []Source
		want    string
	}{
		{"local first", "", ports, []Source{src("c1", true, "http"), src("c2", true, "http"), src("c3", true, "http")}, "c1"},
		{"local not ready: nearest", "", ports, []Source{src("c1", false, "http"), src("c2", true, "http"), src("c3", true, "http")}, "c3"},
		{"nearest not ready: next", "", ports, []Source{src("c2", true, "http"), src("c3", false, "http")}, "c2"},
		{"in error: never", "", ports, []Source{src("c4", true, "http"), src("c2", true, "http")}, "c2"},
		{"only in error: none", "", ports, []Source{src("c4", true, "http")}, ""},
		{"unknown RTT after known", "", ports, []Source{src("c5", true, "http"), src("c2", true, "http")}, "c2"},
		{"none ready: every healthy", "", ports, []Source{src("c2", false, "http"), src("c3", false, "http"), src("c4", false, "http")}, "c2,c3"},
		{"balanced", TrafficPolicyBalanced, ports, []Source{src("c1", true, "http"), src("c2", false, "http"), src("c4", true, "http")}, "c1,c2"},
		{"per port", "", []string{"http", "grpc"}, []Source{src("c1", true, "http"), src("c2", true, "http", "grpc"), src("c3", true, "grpc")}, "c1,c3"},
	} {
		if got := strings.Join(Bound("c1", tc.policy, tc.ports, tc.sources, health), ","); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
