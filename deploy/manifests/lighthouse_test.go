package manifests

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"strait.dev/strait/broker"
	"strait.dev/strait/lighthouse"
)

var lighthouseValues = GatewayValues{
	Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
	CableDriver: "wireguard", ImageRepository: "registry.example:5000/strait", ImageTag: "v1.2.3",
}

// renderLighthouse renders lighthouse.yaml and returns its objects by kind
// (each kind once), failing on a kind rendered twice.
func renderLighthouse(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	return renderKinds(t, "lighthouse.yaml")
}

// renderKinds renders file with lighthouseValues and returns its objects by
// kind (each kind once), failing on a kind rendered twice.
func renderKinds(t *testing.T, file string) map[string]*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(file, lighthouseValues)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if byKind[o.GetKind()] != nil {
			t.Fatalf("two %s objects", o.GetKind())
		}
		byKind[o.GetKind()] = o
	}
	return byKind
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	if u == nil {
		t.Fatalf("no %T rendered", *new(T))
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRenderLighthouse(t *testing.T) {
	byKind := renderLighthouse(t)
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Deployment"} {
		o := byKind[k]
		if o == nil {
			t.Errorf("no %s", k)
			continue
		}
		if o.GetName() != "strait-lighthouse" {
			t.Errorf("%s %s, want strait-lighthouse", k, o.GetName())
		}
		if o.GetLabels()["app.kubernetes.io/part-of"] != "strait" {
			t.Errorf("%s lacks app.kubernetes.io/part-of=strait", k)
		}
	}
	if len(byKind) != 6 {
		t.Errorf("%d kinds rendered, want 6", len(byKind))
	}

	d := convert[appsv1.Deployment](t, byKind["Deployment"])
	if d.Namespace != "strait-system" {
		t.Errorf("Deployment in %q", d.Namespace)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2 (one active, one standby)", d.Spec.Replicas)
	}
	pod := d.Spec.Template
	for _, labels := range []map[string]string{d.Labels, pod.Labels} {
		if labels["app.kubernetes.io/component"] != "lighthouse" || labels["app.kubernetes.io/part-of"] != "strait" {
			t.Errorf("labels %v", labels)
		}
	}
	if d.Spec.Selector == nil || d.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "lighthouse" {
		t.Errorf("selector %v: leave waits for the pods by spec.selector.matchLabels", d.Spec.Selector)
	}
	spec := pod.Spec
	switch {
	case spec.ServiceAccountName != "strait-lighthouse":
		t.Errorf("service account %q", spec.ServiceAccountName)
	case spec.HostNetwork:
		t.Error("hostNetwork: Lighthouse needs no node network")
	case len(spec.Tolerations) != 0:
		t.Errorf("tolerations %v: Lighthouse runs where ordinary pods run", spec.Tolerations)
	case spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 10:
		t.Errorf("terminationGracePeriodSeconds %v, want 10", spec.TerminationGracePeriodSeconds)
	case spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot ||
		spec.SecurityContext.RunAsUser == nil || *spec.SecurityContext.RunAsUser == 0:
		t.Errorf("pod security context %+v, want non-root with a non-zero user", spec.SecurityContext)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != "registry.example:5000/strait/strait-lighthouse:v1.2.3" {
		t.Errorf("image %q", c.Image)
	}
	flags := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	for k, v := range map[string]string{"--cluster-id": "c1", "--namespace": "strait-system", "--metrics-addr": lighthouse.DefaultMetricsAddr} {
		if flags[k] != v {
			t.Errorf("%s=%q, want %q", k, flags[k], v)
		}
	}
	// The probes ask the port the agent serves them on.
	_, healthPort, err := net.SplitHostPort(flags["--health-addr"])
	if err != nil {
		t.Fatalf("--health-addr=%q: %v", flags["--health-addr"], err)
	}
	for _, tc := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		switch {
		case tc.probe == nil || tc.probe.HTTPGet == nil:
			t.Errorf("no %s HTTP probe", tc.name)
		case tc.probe.HTTPGet.Port.String() != healthPort:
			t.Errorf("%s probe on port %s, the agent serves health on %s", tc.name, tc.probe.HTTPGet.Port.String(), healthPort)
		case tc.probe.HTTPGet.Path != tc.path:
			t.Errorf("%s probe path %q, want %s", tc.name, tc.probe.HTTPGet.Path, tc.path)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("requests %v, want CPU and memory", c.Resources.Requests)
	}
	if sc := c.SecurityContext; sc == nil || sc.Privileged != nil && *sc.Privileged ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container security context %+v, want unprivileged", sc)
	}
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(int(p.ContainerPort))
	}
	if ports["health"] != healthPort {
		t.Errorf("container port health %q, want %s", ports["health"], healthPort)
	}
}

// grants reports whether rules allow verb on group/resource (named name, if
// not empty).
func grants(rules []rbacv1.PolicyRule, group, resource, name, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

func TestLighthouseRBAC(t *testing.T) {
	byKind := renderLighthouse(t)
	role := convert[rbacv1.Role](t, byKind["Role"])
	cluster := convert[rbacv1.ClusterRole](t, byKind["ClusterRole"])
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	read := []string{"get", "list", "watch"}
	status := []string{"get", "update", "patch"}
	for _, tc := range []struct {
		rules           []rbacv1.PolicyRule
		group, resource string
		verbs           []string
	}{
		{role.Rules, "coordination.k8s.io", "leases", all},
		{role.Rules, "strait.dev", "gateways", read},
		{role.Rules, "", "events", []string{"create", "patch"}},
		{cluster.Rules, "", "services", all},
		{cluster.Rules, "", "namespaces", read},
		{cluster.Rules, "discovery.k8s.io", "endpointslices", all},
		{cluster.Rules, "multicluster.x-k8s.io", "serviceexports", read},
		{cluster.Rules, "multicluster.x-k8s.io", "serviceexports/status", status},
		{cluster.Rules, "multicluster.x-k8s.io", "serviceimports", all},
		{cluster.Rules, "multicluster.x-k8s.io", "serviceimports/status", status},
		{cluster.Rules, "about.k8s.io", "clusterproperties", read},
	} {
		for _, v := range tc.verbs {
			if !grants(tc.rules, tc.group, tc.resource, "", v) {
				t.Errorf("no %s on %s.%s", v, tc.resource, tc.group)
			}
		}
	}
	// ServiceExports are the users' objects: Lighthouse writes only their
	// status.
	for _, v := range []string{"create", "update", "patch", "delete"} {
		if grants(cluster.Rules, "multicluster.x-k8s.io", "serviceexports", "", v) {
			t.Errorf("%s on serviceexports: they are the users'", v)
		}
	}
	// Of the Secrets, only the broker credential, and only to read and
	// watch.
	for _, v := range []string{"get", "list", "watch"} {
		if !grants(role.Rules, "", "secrets", broker.SecretName, v) {
			t.Errorf("no %s on Secret %s", v, broker.SecretName)
		}
	}
	for _, r := range append(slices.Clone(role.Rules), cluster.Rules...) {
		if slices.Contains(r.Resources, "secrets") && (!slices.Equal(r.ResourceNames, []string{broker.SecretName}) || !slices.Equal(r.Verbs, []string{"get", "list", "watch"})) {
			t.Errorf("rule %+v: only get, list and watch on Secret %s", r, broker.SecretName)
		}
	}
	checkNoWildcards(t, append(slices.Clone(role.Rules), cluster.Rules...))
	checkBindings(t, byKind, "strait-lighthouse")
}

// checkNoWildcards fails for a rule with "*" as a group, resource or verb.
func checkNoWildcards(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, r := range rules {
		for _, f := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
			if slices.Contains(f, "*") {
				t.Errorf("rule %+v has a wildcard", r)
			}
		}
	}
}

// checkBindings checks that the RoleBinding and the ClusterRoleBinding in
// byKind bind the Role and ClusterRole name to ServiceAccount
// strait-system/name, and nothing else.
func checkBindings(t *testing.T, byKind map[string]*unstructured.Unstructured, name string) {
	t.Helper()
	for _, kind := range []string{"RoleBinding", "ClusterRoleBinding"} {
		b := convert[rbacv1.RoleBinding](t, byKind[kind]) // a ClusterRoleBinding has the same fields
		wantRef := strings.TrimSuffix(kind, "Binding")
		if b.RoleRef.Kind != wantRef || b.RoleRef.Name != name {
			t.Errorf("%s refers to %s %s", kind, b.RoleRef.Kind, b.RoleRef.Name)
		}
		if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != name || b.Subjects[0].Namespace != "strait-system" {
			t.Errorf("%s subjects %+v", kind, b.Subjects)
		}
	}
}
