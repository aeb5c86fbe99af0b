package manifests

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// corefileListen finds the port of the Corefile's clusterset.local server
// block and the ports its health, ready and prometheus plugins listen on
// (":8080" written as such).
var (
	corefileServer = regexp.MustCompile(`(?m)^clusterset\.local:(\d+) \{$`)
	corefilePlugin = regexp.MustCompile(`(?m)^\s+(health|ready|prometheus) :(\d+)$`)
)

func TestRenderDNS(t *testing.T) {
	byKind := renderKinds(t, "dns.yaml")
	kinds := []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"}
	for _, k := range kinds {
		o := byKind[k]
		if o == nil {
			t.Errorf("no %s", k)
			continue
		}
		if o.GetName() != DNSServiceName {
			t.Errorf("%s %s, want %s", k, o.GetName(), DNSServiceName)
		}
		if o.GetLabels()["app.kubernetes.io/part-of"] != "strait" {
			t.Errorf("%s lacks app.kubernetes.io/part-of=strait", k)
		}
		if k != "ClusterRole" && k != "ClusterRoleBinding" && o.GetNamespace() != "strait-system" {
			t.Errorf("%s in namespace %q", k, o.GetNamespace())
		}
	}
	if len(byKind) != len(kinds) {
		t.Errorf("%d kinds rendered, want %d", len(byKind), len(kinds))
	}

	// The Corefile: the plugin's values, and the ports the rest of the file
	// relies on.
	cm := convert[corev1.ConfigMap](t, byKind["ConfigMap"])
	corefile := cm.Data["Corefile"]
	for _, want := range []string{"    lighthouse {\n        namespace strait-system\n        cluster-id c1\n    }\n", "    reload\n"} {
		if !strings.Contains(corefile, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, corefile)
		}
	}
	m := corefileServer.FindStringSubmatch(corefile)
	if m == nil {
		t.Fatalf("Corefile has no clusterset.local server block:\n%s", corefile)
	}
	dnsPort := m[1]
	if p, _ := strconv.Atoi(dnsPort); p < 1024 {
		t.Errorf("the server listens on %s: a non-root process without NET_BIND_SERVICE cannot", dnsPort)
	}
	plugins := map[string]string{}
	for _, m := range corefilePlugin.FindAllStringSubmatch(corefile, -1) {
		plugins[m[1]] = m[2]
	}

	d := convert[appsv1.Deployment](t, byKind["Deployment"])
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template
	for _, labels := range []map[string]string{d.Labels, pod.Labels} {
		if labels["app.kubernetes.io/component"] != "dns" || labels["app.kubernetes.io/part-of"] != "strait" {
			t.Errorf("labels %v", labels)
		}
	}
	if d.Spec.Selector == nil || !slices.Equal(mapKeys(d.Spec.Selector.MatchLabels), []string{"app.kubernetes.io/component"}) ||
		d.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "dns" {
		t.Errorf("selector %v: leave waits for the pods by spec.selector.matchLabels", d.Spec.Selector)
	}
	spec := pod.Spec
	switch {
	case spec.ServiceAccountName != DNSServiceName:
		t.Errorf("service account %q", spec.ServiceAccountName)
	case spec.HostNetwork:
		t.Error("hostNetwork: strait-dns needs no node network")
	case spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil || len(spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname":
		t.Errorf("affinity %+v, want the replicas preferably on different nodes", spec.Affinity)
	case spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot ||
		spec.SecurityContext.RunAsUser == nil || *spec.SecurityContext.RunAsUser != 65532 ||
		spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("pod security context %+v, want user 65532, non-root, seccomp RuntimeDefault", spec.SecurityContext)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != "registry.example:5000/strait/strait-dns:v1.2.3" {
		t.Errorf("image %q", c.Image)
	}
	if !slices.Equal(c.Args, []string{"-conf", "/etc/strait-dns/Corefile"}) {
		t.Errorf("args %q", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container security context %+v, want unprivileged with every capability dropped", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("requests %v, want CPU and memory", c.Resources.Requests)
	}

	// The ConfigMap is mounted whole where -conf reads it: a subPath mount
	// would never see an update, and reload would have nothing to reload.
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].ConfigMap != nil && spec.Volumes[i].ConfigMap.Name == cm.Name {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil {
		t.Fatalf("no volume of ConfigMap %s", cm.Name)
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.Name != vol.Name {
			continue
		}
		mounted = true
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			t.Errorf("the Corefile is mounted with subPath %q: updates never reach it", vm.SubPath)
		}
		file := "Corefile"
		for _, it := range vol.ConfigMap.Items {
			if it.Key == "Corefile" {
				file = it.Path
			}
		}
		if got := strings.TrimSuffix(vm.MountPath, "/") + "/" + file; got != c.Args[1] {
			t.Errorf("the Corefile is at %s, -conf reads %s", got, c.Args[1])
		}
	}
	if !mounted {
		t.Errorf("volume %s is not mounted", vol.Name)
	}

	// The probes ask the ports the Corefile's plugins serve them on.
	for _, tc := range []struct {
		name, plugin, path string
		probe              *corev1.Probe
	}{{"readiness", "ready", "/ready", c.ReadinessProbe}, {"liveness", "health", "/health", c.LivenessProbe}} {
		switch {
		case tc.probe == nil || tc.probe.HTTPGet == nil:
			t.Errorf("no %s HTTP probe", tc.name)
		case tc.probe.HTTPGet.Port.Type != intstr.Int:
			t.Errorf("%s probe port %s is a name: the sandbox's node agent resolves none", tc.name, tc.probe.HTTPGet.Port.String())
		case tc.probe.HTTPGet.Port.String() != plugins[tc.plugin]:
			t.Errorf("%s probe on port %s, the Corefile's %s plugin listens on %q", tc.name, tc.probe.HTTPGet.Port.String(), tc.plugin, plugins[tc.plugin])
		case tc.probe.HTTPGet.Path != tc.path:
			t.Errorf("%s probe path %q, want %s", tc.name, tc.probe.HTTPGet.Path, tc.path)
		}
	}
	ctrPorts := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ctrPorts[p.Name] = p
	}
	for name, want := range map[string]struct {
		port  string
		proto corev1.Protocol
	}{"dns": {dnsPort, corev1.ProtocolUDP}, "dns-tcp": {dnsPort, corev1.ProtocolTCP}, "metrics": {plugins["prometheus"], corev1.ProtocolTCP}} {
		p := ctrPorts[name]
		if strconv.Itoa(int(p.ContainerPort)) != want.port || p.Protocol != want.proto {
			t.Errorf("container port %s: %d/%s, want %s/%s", name, p.ContainerPort, p.Protocol, want.port, want.proto)
		}
	}

	// The Service: 53 to the server's port, both protocols, and metrics; it
	// selects the Deployment's pods.
	svc := convert[corev1.Service](t, byKind["Service"])
	if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %s, want ClusterIP", svc.Spec.Type)
	}
	for k, v := range svc.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, which the pods lack", k, v)
		}
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("the Service selects nothing")
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = p
	}
	for _, tc := range []struct {
		name   string
		port   int32
		target string
		proto  corev1.Protocol
	}{
		{"dns", 53, dnsPort, corev1.ProtocolUDP},
		{"dns-tcp", 53, dnsPort, corev1.ProtocolTCP},
		{"metrics", 9153, plugins["prometheus"], corev1.ProtocolTCP},
	} {
		p, ok := svcPorts[tc.name]
		switch {
		case !ok:
			t.Errorf("the Service has no port %s", tc.name)
		case p.Port != tc.port || p.TargetPort.String() != tc.target || p.Protocol != tc.proto:
			t.Errorf("Service port %s: %d→%s/%s, want %d→%s/%s", tc.name, p.Port, p.TargetPort.String(), p.Protocol, tc.port, tc.target, tc.proto)
		}
	}
	if len(svc.Spec.Ports) != 3 {
		t.Errorf("%d Service ports, want 3", len(svc.Spec.Ports))
	}
}

func TestDNSRBAC(t *testing.T) {
	byKind := renderKinds(t, "dns.yaml")
	role := convert[rbacv1.Role](t, byKind["Role"])
	cluster := convert[rbacv1.ClusterRole](t, byKind["ClusterRole"])
	read := []string{"get", "list", "watch"}
	for _, tc := range []struct {
		rules           []rbacv1.PolicyRule
		group, resource string
	}{
		{role.Rules, "strait.dev", "gateways"},
		{cluster.Rules, "multicluster.x-k8s.io", "serviceimports"},
		{cluster.Rules, "discovery.k8s.io", "endpointslices"},
		{cluster.Rules, "about.k8s.io", "clusterproperties"},
	} {
		for _, v := range read {
			if !grants(tc.rules, tc.group, tc.resource, "", v) {
				t.Errorf("no %s on %s.%s", v, tc.resource, tc.group)
			}
		}
	}
	// strait-dns only reads: no write of any kind, no Secret, no wildcard.
	for _, r := range append(slices.Clone(role.Rules), cluster.Rules...) {
		for _, v := range r.Verbs {
			if !slices.Contains(read, v) {
				t.Errorf("rule %+v grants %s: strait-dns writes nothing", r, v)
			}
		}
		if slices.Contains(r.Resources, "secrets") {
			t.Errorf("rule %+v: strait-dns reads no Secret", r)
		}
	}
	checkNoWildcards(t, append(slices.Clone(role.Rules), cluster.Rules...))
	checkBindings(t, byKind, DNSServiceName)
}

// mapKeys returns m's keys, sorted.
func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
