package manifests

import (
	"errors"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestRenderGateway(t *testing.T) {
	objs, err := Render("gateway.yaml", GatewayValues{
		Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
		CableDriver: "wireguard", ImageRepository: "strait", ImageTag: "devel",
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "DaemonSet"} {
		if kinds[k] != 1 {
			t.Errorf("%d %s objects, want 1", kinds[k], k)
		}
	}
	// The release namespace is not the chart's: helm install --namespace
	// (or join) makes it.
	if kinds["Namespace"] != 0 {
		t.Errorf("%d Namespace objects, want none", kinds["Namespace"])
	}
	if _, err := Render("gateway.yaml", GatewayValues{Namespace: "strait-system"}); err == nil || !strings.Contains(err.Error(), "clusterID is required") {
		t.Errorf("rendering without values: %v, want clusterID is required", err)
	}
}

func TestRenderRouteAgent(t *testing.T) {
	objs, err := Render("routeagent.yaml", GatewayValues{
		Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
		CableDriver: "vxlan", ImageRepository: "strait", ImageTag: "devel",
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "DaemonSet" && o.GetName() != "strait-routeagent" {
			t.Errorf("DaemonSet %s, want strait-routeagent (the agent cleans up only when that one goes)", o.GetName())
		}
	}
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "DaemonSet"} {
		if kinds[k] != 1 {
			t.Errorf("%d %s objects, want 1", kinds[k], k)
		}
	}
}

func TestRenderMember(t *testing.T) {
	v := GatewayValues{
		Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
		CableDriver: "wireguard", ImageRepository: "strait", ImageTag: "devel",
	}
	objs, err := RenderMember(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 || objs[0].GetKind() != "ServiceAccount" {
		t.Fatalf("the first object is not the gateway's ServiceAccount")
	}
	seen := map[string]bool{}
	for _, o := range objs {
		id := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		if seen[id] {
			t.Errorf("%s rendered twice", id)
		}
		seen[id] = true
		if o.GetNamespace() == "" && o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetKind() != "ClusterProperty" {
			t.Errorf("%s has no namespace", id)
		}
	}
	for _, want := range []string{"DaemonSet strait-system/strait-gateway", "DaemonSet strait-system/strait-routeagent", "Deployment strait-system/strait-lighthouse",
		"Deployment strait-system/strait-dns", "Service strait-system/" + DNSServiceName, "ClusterProperty /cluster.clusterset.k8s.io"} {
		if !seen[want] {
			t.Errorf("%s not rendered", want)
		}
	}
}

// Leave renders the manifests again with the values read back from a
// DaemonSet in the cluster: they must be the values join rendered with.
func TestReadValuesRoundTrip(t *testing.T) {
	for _, v := range []GatewayValues{
		{Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.1.0.0/16,fd00:1::/48", ServiceCIDRs: "10.101.0.0/16",
			CableDriver: "wireguard", ImageRepository: "strait", ImageTag: "devel"},
		{Namespace: "other", ClusterID: "c-2", PodCIDRs: "10.2.0.0/16", ServiceCIDRs: "10.102.0.0/16",
			CableDriver: "vxlan", ImageRepository: "registry.example:5000/team/strait", ImageTag: "v1.2.3"},
		{Namespace: "strait-system", ClusterID: "c3", PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
			CableDriver: "wireguard", GlobalCIDR: "242.1.0.0/16", ImageRepository: "strait", ImageTag: "devel"},
		{Namespace: "strait-system", ClusterID: "c4", PodCIDRs: "10.4.0.0/16", ServiceCIDRs: "10.104.0.0/16",
			CableDriver: "vxlan", UnderlayMTU: "1400", ImageRepository: "strait", ImageTag: "devel"},
	} {
		objs, err := RenderMember(v)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, o := range objs {
			if o.GetKind() != "DaemonSet" {
				continue
			}
			n++
			ds := &appsv1.DaemonSet{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, ds); err != nil {
				t.Fatal(err)
			}
			if ds.Name == "strait-globalnet" {
				continue // rendered only with a global CIDR; leave reads the gateway's
			}
			got, err := ReadValues(ds)
			if err != nil {
				t.Fatalf("%s: %v", ds.Name, err)
			}
			want := v
			if ds.Name != "strait-gateway" {
				want.GlobalCIDR = "" // only the gateway takes it
			}
			if got != want {
				t.Errorf("%s: read back %+v, rendered with %+v", ds.Name, got, want)
			}
			// --global-cidr= and --underlay-mtu= are there only when set.
			has := func(flag string) bool {
				return slices.ContainsFunc(ds.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, flag) })
			}
			if has("--global-cidr") != (want.GlobalCIDR != "") {
				t.Errorf("%s: --global-cidr rendered %v with GlobalCIDR %q", ds.Name, has("--global-cidr"), want.GlobalCIDR)
			}
			if has("--underlay-mtu") != (want.UnderlayMTU != "") {
				t.Errorf("%s: --underlay-mtu rendered %v with UnderlayMTU %q", ds.Name, has("--underlay-mtu"), want.UnderlayMTU)
			}
		}
		// The gateway's and the route agent's, and strait-globalnet's
		// with a global CIDR.
		want := 2
		if v.GlobalCIDR != "" {
			want = 3
		}
		if n != want {
			t.Errorf("%d DaemonSets, want %d", n, want)
		}
	}
}

func TestReadValuesErrors(t *testing.T) {
	for name, ds := range map[string]*appsv1.DaemonSet{
		"no container": {},
		"image without repository": {Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Image: "strait-gateway:devel"}}}}}},
		"image without tag": {Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Image: "host:5000/strait/strait-gateway"}}}}}},
	} {
		if _, err := ReadValues(ds); !errors.Is(err, ErrNotRendered) {
			t.Errorf("%s: got %v, want ErrNotRendered", name, err)
		}
	}
}
