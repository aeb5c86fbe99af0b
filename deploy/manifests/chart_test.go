package manifests

// Tests of the chart itself: helm lint, helm template against the Go SDK's
// rendering, and what each of the chart's example values (ci/) renders.

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"strait.dev/strait/test/helmtest"
)

// chartDir is the chart's folder.
var chartDir = helmtest.ChartDir()

// ciValues are the chart's example values files (ci/<name>-values.yaml), by
// name: default, globalnet, vxlan, dual-stack.
func ciValues(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	for _, want := range []string{"default", "globalnet", "vxlan", "dual-stack"} {
		if out[want] == "" {
			t.Fatalf("no ci/%s-values.yaml in the chart", want)
		}
	}
	return out
}

// renderFile renders the chart through the SDK with a values file, as
// join renders it, into its objects by key.
func renderFile(t *testing.T, file string) map[string]*unstructured.Unstructured {
	t.Helper()
	vals, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	byFile, err := RenderChart("strait-system", vals)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var all []*unstructured.Unstructured
	for _, objs := range byFile {
		all = append(all, objs...)
	}
	return helmtest.ByKey(t, all)
}

func TestHelmLint(t *testing.T) {
	h := helmtest.Helm(t)
	for name, file := range ciValues(t) {
		out, err := exec.Command(h, "lint", "--strict", chartDir, "-f", file).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint --strict with ci/%s-values.yaml: %v\n%s", name, err, out)
		}
	}
	// The required values are required (helm lint only mentions them).
	out, err := exec.Command(h, "template", chartDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "clusterID is required") {
		t.Errorf("helm template without values: %v, want an error saying clusterID is required\n%s", err, out)
	}
}

// helm template and the SDK rendering join uses give the same objects.
func TestHelmTemplateMatchesSDK(t *testing.T) {
	for name, file := range ciValues(t) {
		t.Run(name, func(t *testing.T) {
			out := helmtest.Run(t, "template", ReleaseName, chartDir, "--namespace", "strait-system", "-f", file)
			helmtest.Compare(t, "helm template", helmtest.ByKey(t, helmtest.Parse(t, out)), "the SDK", renderFile(t, file))
		})
	}
}

// The objects a member cluster gets with the chart's defaults: every
// component's ServiceAccount, RBAC and workload, strait-dns's ConfigMap and
// Service, and the ClusterProperty; no Globalnet, no monitoring objects,
// no namespace.
func TestChartDefaults(t *testing.T) {
	objs := renderFile(t, ciValues(t)["default"])
	var want []string
	for _, c := range []string{"strait-gateway", "strait-routeagent", "strait-lighthouse", "strait-dns"} {
		want = append(want, "ServiceAccount strait-system/"+c, "Role strait-system/"+c, "RoleBinding strait-system/"+c,
			"ClusterRole /"+c, "ClusterRoleBinding /"+c)
	}
	want = append(want, "DaemonSet strait-system/strait-gateway", "DaemonSet strait-system/strait-routeagent",
		"Deployment strait-system/strait-lighthouse", "Deployment strait-system/strait-dns",
		"ConfigMap strait-system/strait-dns", "Service strait-system/"+DNSServiceName,
		"ClusterProperty /cluster.clusterset.k8s.io")
	var got []string
	for k := range objs {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	gw := convert[appsv1.DaemonSet](t, objs["DaemonSet strait-system/strait-gateway"])
	wantArgs := []string{"--cluster-id=c1", "--namespace=strait-system", "--pod-cidrs=10.1.0.0/16", "--service-cidrs=10.101.0.0/16",
		"--cable-driver=wireguard", "--broker-secret=strait-broker", "--metrics-addr=:9476"}
	if a := gw.Spec.Template.Spec.Containers[0].Args; !slices.Equal(a, wantArgs) {
		t.Errorf("gateway args %q, want %q", a, wantArgs)
	}
	if img := gw.Spec.Template.Spec.Containers[0].Image; img != "strait/strait-gateway:devel" {
		t.Errorf("gateway image %s, want strait/strait-gateway:devel (the chart's appVersion)", img)
	}
	if sel := gw.Spec.Template.Spec.NodeSelector; !reflect.DeepEqual(sel, map[string]string{"strait.dev/gateway": "true"}) {
		t.Errorf("gateway nodeSelector %v, want strait.dev/gateway=true (the label join sets)", sel)
	}
	for _, k := range []string{"DaemonSet strait-system/strait-gateway", "DaemonSet strait-system/strait-routeagent"} {
		ds := convert[appsv1.DaemonSet](t, objs[k])
		if tol := ds.Spec.Template.Spec.Tolerations; !reflect.DeepEqual(tol, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}) {
			t.Errorf("%s tolerations %v, want every taint", k, tol)
		}
		c := ds.Spec.Template.Spec.Containers[0]
		if c.ImagePullPolicy != "" || len(c.Resources.Requests) > 0 {
			t.Errorf("%s: pull policy %q, resources %v, want neither (Kubernetes' defaults)", k, c.ImagePullPolicy, c.Resources)
		}
	}
	for _, k := range []string{"Deployment strait-system/strait-lighthouse", "Deployment strait-system/strait-dns"} {
		d := convert[appsv1.Deployment](t, objs[k])
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("%s replicas %v, want 2", k, d.Spec.Replicas)
		}
		if r := d.Spec.Template.Spec.Containers[0].Resources.Requests; r.Cpu().String() != "20m" || r.Memory().String() != "64Mi" {
			t.Errorf("%s requests %v, want cpu 20m, memory 64Mi", k, r)
		}
	}
	// The broker credential is referred to by name: the Roles allow that
	// Secret and no other.
	for _, k := range []string{"Role strait-system/strait-gateway", "Role strait-system/strait-lighthouse"} {
		if names := secretNames(t, objs[k]); !slices.Equal(names, []string{"strait-broker"}) {
			t.Errorf("%s: Secrets by name %v, want [strait-broker]", k, names)
		}
	}
}

// secretNames are the resourceNames of role's rules on Secrets.
func secretNames(t *testing.T, role *unstructured.Unstructured) []string {
	t.Helper()
	var names []string
	for _, r := range convert[rbacv1.Role](t, role).Rules {
		if slices.Contains(r.Resources, "secrets") {
			names = append(names, r.ResourceNames...)
		}
	}
	return names
}

func TestChartGlobalnetAndMonitoring(t *testing.T) {
	objs := renderFile(t, ciValues(t)["globalnet"])
	gn := objs["DaemonSet strait-system/strait-globalnet"]
	if gn == nil {
		t.Fatal("no strait-globalnet DaemonSet with a global CIDR")
	}
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding"} {
		if objs[k+" strait-system/strait-globalnet"] == nil {
			t.Errorf("no %s strait-globalnet", k)
		}
	}
	ds := convert[appsv1.DaemonSet](t, gn)
	if a := ds.Spec.Template.Spec.Containers[0].Args; !slices.Contains(a, "--global-cidr=242.1.0.0/16") {
		t.Errorf("strait-globalnet args %q lack --global-cidr=242.1.0.0/16", a)
	}
	if sel := ds.Spec.Template.Spec.NodeSelector; !reflect.DeepEqual(sel, map[string]string{"strait.dev/gateway": "true"}) {
		t.Errorf("strait-globalnet nodeSelector %v, want the gateways'", sel)
	}
	gw := convert[appsv1.DaemonSet](t, objs["DaemonSet strait-system/strait-gateway"])
	v, err := ReadValues(gw)
	if err != nil {
		t.Fatal(err)
	}
	if v.GlobalCIDR != "242.1.0.0/16" || v.UnderlayMTU != "1400" || v.ClusterID != "c3" {
		t.Errorf("gateway values read back %+v, want global CIDR 242.1.0.0/16, underlay MTU 1400, cluster c3", v)
	}
	ra := convert[appsv1.DaemonSet](t, objs["DaemonSet strait-system/strait-routeagent"])
	if a := ra.Spec.Template.Spec.Containers[0].Args; !slices.Contains(a, "--underlay-mtu=1400") || slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--global-cidr") }) {
		t.Errorf("route agent args %q, want --underlay-mtu=1400 and no --global-cidr", a)
	}

	// The dashboard ConfigMap holds the dashboard file as it is.
	cm := objs["ConfigMap strait-system/strait-dashboard"]
	if cm == nil {
		t.Fatal("no ConfigMap strait-dashboard with monitoring.dashboard.enabled")
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v, want grafana_dashboard=1", cm.GetLabels())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "strait-dashboard.json")
	file, err := os.ReadFile(filepath.Join(chartDir, "files", "strait-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(data) != strings.TrimSpace(string(file)) {
		t.Errorf("the ConfigMap's strait-dashboard.json is not files/strait-dashboard.json")
	}
	// The PrometheusRule's spec is the rules file's groups.
	pr := objs["PrometheusRule strait-system/strait"]
	if pr == nil {
		t.Fatal("no PrometheusRule strait with monitoring.alerts.enabled")
	}
	rulesFile, err := os.ReadFile(filepath.Join(chartDir, "files", "strait-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules map[string]any
	if err := yaml.Unmarshal(rulesFile, &rules); err != nil {
		t.Fatal(err)
	}
	if spec := pr.Object["spec"]; !reflect.DeepEqual(spec, rules) {
		t.Errorf("PrometheusRule spec differs from files/strait-alerts.yaml")
	}

	// Without them, neither.
	for k := range renderFile(t, ciValues(t)["default"]) {
		if strings.Contains(k, "globalnet") || strings.Contains(k, "dashboard") || strings.HasPrefix(k, "PrometheusRule") {
			t.Errorf("%s rendered with the defaults", k)
		}
	}
}

func TestChartVXLANImagesPlacement(t *testing.T) {
	objs := renderFile(t, ciValues(t)["vxlan"])
	for _, k := range []string{"DaemonSet strait-system/strait-gateway", "DaemonSet strait-system/strait-routeagent"} {
		ds := convert[appsv1.DaemonSet](t, objs[k])
		v, err := ReadValues(ds)
		if err != nil {
			t.Fatal(err)
		}
		if v.CableDriver != "vxlan" || v.ImageRepository != "registry.example:5000/strait" || v.ImageTag != "v1.2.3" {
			t.Errorf("%s values read back %+v, want vxlan, registry.example:5000/strait, v1.2.3", k, v)
		}
	}
	for k, o := range objs {
		if o.GetKind() != "DaemonSet" && o.GetKind() != "Deployment" {
			continue
		}
		tmpl := convert[corev1.PodTemplateSpec](t, &unstructured.Unstructured{Object: o.Object["spec"].(map[string]any)["template"].(map[string]any)})
		if p := tmpl.Spec.Containers[0].ImagePullPolicy; p != corev1.PullAlways {
			t.Errorf("%s pull policy %q, want Always", k, p)
		}
	}
	gw := convert[appsv1.DaemonSet](t, objs["DaemonSet strait-system/strait-gateway"])
	ps := gw.Spec.Template.Spec
	if !reflect.DeepEqual(ps.NodeSelector, map[string]string{"node-role.example/gateway": ""}) {
		t.Errorf("gateway nodeSelector %v", ps.NodeSelector)
	}
	if len(ps.Tolerations) != 1 || ps.Tolerations[0].Key != "dedicated" {
		t.Errorf("gateway tolerations %v, want the dedicated one alone", ps.Tolerations)
	}
	if r := ps.Containers[0].Resources.Requests; r.Cpu().String() != "100m" {
		t.Errorf("gateway requests %v, want cpu 100m", r)
	}
	lh := convert[appsv1.Deployment](t, objs["Deployment strait-system/strait-lighthouse"])
	if lh.Spec.Replicas == nil || *lh.Spec.Replicas != 1 {
		t.Errorf("Lighthouse replicas %v, want 1", lh.Spec.Replicas)
	}
}

func TestChartDualStack(t *testing.T) {
	objs := renderFile(t, ciValues(t)["dual-stack"])
	for _, k := range []string{"DaemonSet strait-system/strait-gateway", "DaemonSet strait-system/strait-routeagent"} {
		ds := convert[appsv1.DaemonSet](t, objs[k])
		a := ds.Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(a, "--pod-cidrs=10.4.0.0/16,fd00:4::/48") || !slices.Contains(a, "--service-cidrs=10.104.0.0/16,fd00:104::/112") {
			t.Errorf("%s args %q, want both families' CIDRs, IPv4 first", k, a)
		}
	}
	svc := convert[corev1.Service](t, objs["Service strait-system/"+DNSServiceName])
	if svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyPreferDualStack {
		t.Errorf("strait-dns Service family policy %v, want PreferDualStack", svc.Spec.IPFamilyPolicy)
	}
}

// Another broker Secret: the Roles allow it, the gateway and Lighthouse
// read it.
func TestChartBrokerSecret(t *testing.T) {
	byFile, err := RenderChart("strait-system", map[string]any{
		"clusterID": "c1", "podCIDRs": []any{"10.1.0.0/16"}, "serviceCIDRs": []any{"10.101.0.0/16"},
		"broker": map[string]any{"secretName": "my-broker"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var all []*unstructured.Unstructured
	for _, o := range byFile {
		all = append(all, o...)
	}
	objs := helmtest.ByKey(t, all)
	for _, c := range []string{"strait-gateway", "strait-lighthouse"} {
		if names := secretNames(t, objs["Role strait-system/"+c]); !slices.Equal(names, []string{"my-broker"}) {
			t.Errorf("Role %s: Secrets by name %v, want [my-broker]", c, names)
		}
	}
	gw := convert[appsv1.DaemonSet](t, objs["DaemonSet strait-system/strait-gateway"])
	lh := convert[appsv1.Deployment](t, objs["Deployment strait-system/strait-lighthouse"])
	for name, args := range map[string][]string{"gateway": gw.Spec.Template.Spec.Containers[0].Args, "lighthouse": lh.Spec.Template.Spec.Containers[0].Args} {
		if !slices.Contains(args, "--broker-secret=my-broker") {
			t.Errorf("%s args %q lack --broker-secret=my-broker", name, args)
		}
	}
}

// Every template of the chart is one join applies: a template missing from
// MemberFiles would be rendered by helm and never by join.
func TestMemberFilesAreTheTemplates(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(chartDir, "templates"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "_") && strings.HasSuffix(e.Name(), ".yaml") {
			got = append(got, e.Name())
		}
	}
	want := slices.Clone(MemberFiles)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("templates %v, MemberFiles %v", got, want)
	}
}

// values.schema.json refuses what the chart cannot render right, through
// the SDK as through the helm CLI: a misspelt key, an unknown driver, an
// MTU out of range, a cluster ID that is no RFC 1123 label.
func TestChartSchema(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"clusterID": "c1", "podCIDRs": []any{"10.1.0.0/16"}, "serviceCIDRs": []any{"10.101.0.0/16"}}
	}
	if _, err := RenderChart("strait-system", base()); err != nil {
		t.Fatalf("valid values: %v", err)
	}
	for name, tc := range map[string]struct {
		key   string
		value any
		want  string
	}{
		"misspelt key":     {"clusterId", "c1", "clusterId"},
		"unknown driver":   {"cableDriver", "ipsec", "cableDriver"},
		"MTU out of range": {"underlayMTU", 100, "underlayMTU"},
		"cluster ID":       {"clusterID", "C_1", "clusterID"},
		"CIDRs not a list": {"podCIDRs", "10.1.0.0/16", "podCIDRs"},
	} {
		vals := base()
		vals[tc.key] = tc.value
		_, err := RenderChart("strait-system", vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a schema error naming %s", name, err, tc.want)
		}
	}
}
