package monitoring

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"strait.dev/strait/gateway"
	"strait.dev/strait/globalnet"
	"strait.dev/strait/lighthouse"
	"strait.dev/strait/lighthouse/coredns"
	"strait.dev/strait/routeagent"
)

const (
	rulesFile     = "../charts/strait/files/strait-alerts.yaml"
	rulesTestFile = "strait-alerts_test.yaml"
	dashboardFile = "../charts/strait/files/strait-dashboard.json"
)

// promtool finds promtool, which hack/prereqs.sh installs (Debian package
// prometheus). Its absence fails the test: a skip would let the rules go
// unchecked in every run on a machine that lacks it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): run hack/prereqs.sh, or apt-get install prometheus", err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// The rules are valid (promtool check rules), and each alert fires on the
// series of its unit tests that should fire it and stays silent on the
// others (promtool test rules).
func TestAlertRules(t *testing.T) {
	p := promtool(t)
	run(t, p, "check", "rules", rulesFile)
	run(t, p, "test", "rules", rulesTestFile)
}

// Every alert of the rules has a unit test that sees it fire.
func TestEveryAlertTested(t *testing.T) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, rulesTestFile, &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, r := range rules(t) {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] || !silent[r.Alert] {
			t.Errorf("alert %s: seen firing %v, seen silent %v in %s; test both", r.Alert, fires[r.Alert], silent[r.Alert], rulesTestFile)
		}
	}
}

// Every dashboard query is valid PromQL: promtool checks them as recording
// rules, Grafana's $__rate_interval read as 5m.
func TestDashboardQueries(t *testing.T) {
	p := promtool(t)
	exprs := dashboardExprs(t)
	if len(exprs) == 0 {
		t.Fatal("no queries in the dashboard")
	}
	var b strings.Builder
	b.WriteString("groups:\n- name: dashboard\n  rules:\n")
	for i, e := range exprs {
		e = strings.ReplaceAll(e, "$__rate_interval", "5m")
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		fmt.Fprintf(&b, "  - record: dashboard:query%d\n    expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, p, "check", "rules", f)
}

// Every metric the rules, their tests' input series and the dashboard use
// is one some component registers: a metric renamed in the code, or
// misspelt here, fails.
func TestMetricNamesRegistered(t *testing.T) {
	registered := registeredNames()
	uses := map[string][]string{} // metric -> where
	for _, r := range rules(t) {
		names, err := metricNames(r.Expr)
		if err != nil {
			t.Fatalf("%s: %s: %v", rulesFile, r.Alert, err)
		}
		for _, n := range names {
			uses[n] = append(uses[n], rulesFile+" "+r.Alert)
		}
	}
	for _, e := range dashboardExprs(t) {
		names, err := metricNames(e)
		if err != nil {
			t.Fatalf("%s: %q: %v", dashboardFile, e, err)
		}
		for _, n := range names {
			uses[n] = append(uses[n], dashboardFile)
		}
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct {
				Series string `json:"series"`
			} `json:"input_series"`
		} `json:"tests"`
	}
	readYAML(t, rulesTestFile, &tests)
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			n, _, _ := strings.Cut(s.Series, "{")
			uses[n] = append(uses[n], rulesTestFile)
		}
	}
	if len(uses) == 0 {
		t.Fatal("no metric names found")
	}
	for n, where := range uses {
		if !registered[n] {
			slices.Sort(where)
			t.Errorf("%s (used in %s) is registered by no component", n, strings.Join(slices.Compact(where), ", "))
		}
	}
}

// registeredNames are the names of every metric Strait's components
// register: the gateway's, the route agent's, Lighthouse's, Globalnet's and
// the DNS plugin's.
func registeredNames() map[string]bool {
	ch := make(chan *prometheus.Desc)
	go func() {
		defer close(ch)
		gateway.NewMetrics().Describe(ch)
		routeagent.NewMetrics().Describe(ch)
		lighthouse.NewMetrics(nil, "").Describe(ch)
		globalnet.NewMetrics(netip.MustParsePrefix("242.0.0.0/16")).Describe(ch)
		coredns.DescribeMetrics(ch)
	}()
	out := map[string]bool{}
	for d := range ch {
		// client_golang gives no accessor for a Desc's name; its String
		// starts with it.
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			out[m[1]] = true
		}
	}
	return out
}

var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// A component's metrics are found: the names read from the descriptions
// are real names, and each component contributes.
func TestRegisteredNames(t *testing.T) {
	got := registeredNames()
	for _, n := range []string{"strait_gateway_active", "strait_connection_status", "strait_routeagent_state_applied",
		"strait_lighthouse_exports", "strait_globalnet_pool_ips", "coredns_lighthouse_requests_total"} {
		if !got[n] {
			t.Errorf("%s not among the registered names %v", n, got)
		}
	}
}

type rule struct {
	Alert  string `json:"alert"`
	Record string `json:"record"`
	Expr   string `json:"expr"`
}

func rules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, rulesFile, &f)
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("no rules in %s", rulesFile)
	}
	return out
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	// Not strict: the files hold more than the test reads.
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// dashboardExprs are the "expr" of every query in the dashboard, however
// deep its panels nest.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				out = append(out, e)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(d)
	return out
}

// docs/metrics.md lists every metric the components register and every
// alert of the rules.
func TestDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for n := range registeredNames() {
		if !strings.Contains(doc, "`"+n+"`") {
			t.Errorf("docs/metrics.md does not list the metric %s", n)
		}
	}
	for _, r := range rules(t) {
		if r.Alert != "" && !strings.Contains(doc, "`"+r.Alert+"`") {
			t.Errorf("docs/metrics.md does not list the alert %s", r.Alert)
		}
	}
}
