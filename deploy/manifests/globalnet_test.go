package manifests

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// globalnet.yaml renders nothing for a member without a global CIDR, and
// for one with it the controller's objects, the DaemonSet on the gateway
// nodes with the CIDR as its flag.
func TestGlobalnetRenderedOnlyWithGlobalCIDR(t *testing.T) {
	v := GatewayValues{Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.0.0.0/16", ServiceCIDRs: "10.100.0.0/16",
		CableDriver: "wireguard", ImageRepository: "strait", ImageTag: "test"}
	objs, err := Render("globalnet.yaml", v)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 0 {
		t.Fatalf("without a global CIDR: %d objects, want none", len(objs))
	}
	v.GlobalCIDR = "242.1.0.0/16"
	objs, err = Render("globalnet.yaml", v)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetKind() != "DaemonSet" {
			continue
		}
		ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		args, _ := ctrs[0].(map[string]any)["args"].([]any)
		if !slices.Contains(args, any("--global-cidr=242.1.0.0/16")) {
			t.Errorf("DaemonSet args %v lack --global-cidr", args)
		}
		sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "spec", "nodeSelector")
		if sel["strait.dev/gateway"] != "true" {
			t.Errorf("DaemonSet nodeSelector %v, want the gateway nodes", sel)
		}
	}
	if want := []string{"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	all, err := RenderMember(v)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "DaemonSet" && o.GetName() == "strait-globalnet"
	}) {
		t.Error("RenderMember with a global CIDR lacks the strait-globalnet DaemonSet")
	}
}
