package crds

import (
	"testing"
)

func TestAllDecodes(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"clusters.strait.dev":                  "v1alpha1",
		"endpoints.strait.dev":                 "v1alpha1",
		"gateways.strait.dev":                  "v1alpha1",
		"clusterglobalegressips.strait.dev":    "v1alpha1",
		"globalegressips.strait.dev":           "v1alpha1",
		"globalingressips.strait.dev":          "v1alpha1",
		"clusterproperties.about.k8s.io":       "v1beta1",
		"serviceexports.multicluster.x-k8s.io": "v1beta1",
		"serviceimports.multicluster.x-k8s.io": "v1beta1",
	}
	got := map[string]string{}
	for _, crd := range all {
		for _, v := range crd.Spec.Versions {
			if v.Storage {
				got[crd.Name] = v.Name
			}
		}
	}
	for name, storage := range want {
		if got[name] != storage {
			t.Errorf("CRD %s: storage version %q, want %q", name, got[name], storage)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got CRDs %v, want exactly %v", got, want)
	}
}
