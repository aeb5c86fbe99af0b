package member_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/test/helmtest"
	"strait.dev/strait/test/kubetest"
)

// Every object the chart renders, with each of its example values (ci/),
// passes a server-side dry run of an apply on a real apiserver with the
// chart's CRDs installed: the apiserver's validation and defaulting, not
// only YAML. The PrometheusRule alone is left out: its CRD is the
// Prometheus Operator's, not the chart's.
func TestChartServerSideDryRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{}) // installs the chart's crds/
	c := newClient(t, env.Config)
	// The release namespace comes before the chart (helm install
	// --namespace, or join).
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(helmtest.ChartDir(), "ci", "*-values.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("the chart's ci values: %v %v", files, err)
	}
	dryRun := func(vals map[string]any) error {
		byFile, err := manifests.RenderChart(v1.ComponentNamespace, vals)
		if err != nil {
			return err
		}
		for _, objs := range byFile {
			for _, o := range objs {
				if o.GetKind() == "PrometheusRule" {
					continue
				}
				if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.DryRunAll, client.FieldOwner("strait-chart-test"), client.ForceOwnership); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, f := range files {
		vals, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := dryRun(vals); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
	// The dry runs wrote nothing.
	if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, &appsv1.DaemonSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("DaemonSet strait-gateway after the dry runs: %v, want not found", err)
	}
	// And a dry run refuses what the apiserver refuses: here a negative
	// replica count, which the chart itself passes on.
	err = dryRun(map[string]any{"clusterID": "c1", "podCIDRs": []any{"10.1.0.0/16"}, "serviceCIDRs": []any{"10.101.0.0/16"},
		"lighthouse": map[string]any{"replicas": -1}})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("a dry run with lighthouse.replicas -1: %v, want the apiserver's Invalid on replicas", err)
	}
}
