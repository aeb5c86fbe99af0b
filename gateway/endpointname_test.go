package gateway

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Endpoint names: valid Kubernetes names for any legal cluster ID and node
// name, never the same for two (cluster, node) pairs, and always beginning
// with "<cluster ID>." (what the broker's isolation policy checks).
func TestEndpointName(t *testing.T) {
	longID := strings.Repeat("c", 63)
	// Node names are DNS subdomains of up to 253 characters.
	long := func(n int, end string) string {
		var b strings.Builder
		for b.Len() < n-len(end) {
			b.WriteString("node-")
		}
		s := strings.TrimRight(b.String()[:n-len(end)], "-.")
		for len(s) < n-len(end) {
			s += "x"
		}
		return s + end
	}
	pairs := [][2]string{
		{"east", "1-gw"}, {"east-1", "gw"}, // once both east-1-gw
		{"a", "b.c"}, {"a-b", "c"}, {"a", "b-c"},
		{longID, long(253, "a")}, {longID, long(253, "b")}, // differ past the cut
		{longID, long(189, "")}, {longID, long(190, "")}, // the last name that fits, and one more
		{longID, long(252, "q.r")}, {"x", long(253, "z")},
		{"c", long(253, ".y")},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		cluster, node := p[0], p[1]
		name := EndpointName(cluster, node)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("EndpointName(%d-char %q, %d-char node) = %d-char %q: not a valid name: %v", len(cluster), cluster, len(node), len(name), name, errs)
		}
		if !strings.HasPrefix(name, cluster+".") {
			t.Errorf("EndpointName(%q, %q) = %q does not begin with %q", cluster, node, name, cluster+".")
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("EndpointName(%q, %q) = EndpointName(%q, %q) = %q", cluster, node, prev[0], prev[1], name)
		}
		seen[name] = p
	}
	if got := EndpointName(longID, long(189, "")); len(got) != 253 || got != longID+"."+long(189, "") {
		t.Errorf("a name that fits exactly was changed: %d chars", len(got))
	}
	// The same input always gives the same name (gateways restart): the
	// hashed form, spelled out.
	node := long(253, "a")
	if got, want := EndpointName(longID, node), longID+"."+strings.TrimRight(node[:253-63-1-17], ".-")+"-5fc8f0c050150365"; got != want {
		t.Errorf("hashed name %q, want %q", got, want)
	}
}
