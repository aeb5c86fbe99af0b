package manifests

import "testing"

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
	for _, k := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "DaemonSet"} {
		if kinds[k] != 1 {
			t.Errorf("%d %s objects, want 1", kinds[k], k)
		}
	}
	if _, err := Render("gateway.yaml", struct{}{}); err == nil {
		t.Error("rendering without values succeeded")
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
