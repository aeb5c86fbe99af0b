package member

import (
	"context"
	"strings"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// A CRD stuck in deletion says why in its Terminating condition; the
// error about it carries that.
func TestConditionsOf(t *testing.T) {
	crd := &unstructured.Unstructured{Object: map[string]any{
		"status": map[string]any{"conditions": []any{
			map[string]any{"type": "Established", "status": "True"},
			map[string]any{"type": "Terminating", "status": "True", "reason": "InstanceDeletionFailed", "message": "could not list instances"},
		}},
	}}
	want := "; Established=True; Terminating=True (InstanceDeletionFailed: could not list instances)"
	if got := conditionsOf(crd); got != want {
		t.Errorf("conditionsOf = %q, want %q", got, want)
	}
	if got := conditionsOf(&unstructured.Unstructured{Object: map[string]any{}}); got != "" {
		t.Errorf("conditionsOf of an object without status = %q, want \"\"", got)
	}
}

// A CRD whose object a finalizer holds cannot go: waitGone's error quotes
// the apiserver's Terminating condition, on a real kube-apiserver.
func TestWaitGoneQuotesConditions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	s := scheme.New()
	if err := apiextv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "holds.test.strait.dev"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "test.strait.dev",
			Names: apiextv1.CustomResourceDefinitionNames{Plural: "holds", Singular: "hold", Kind: "Hold", ListKind: "HoldList"},
			Scope: apiextv1.ClusterScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object"}}}},
		},
	}
	if err := c.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	hold := &unstructured.Unstructured{}
	hold.SetAPIVersion("test.strait.dev/v1")
	hold.SetKind("Hold")
	hold.SetName("held")
	hold.SetFinalizers([]string{"test.strait.dev/hold"})
	// The kind is served once the CRD is Established.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return c.Create(ctx, hold) == nil, nil
	}); err != nil {
		t.Fatalf("create a Hold: %v", err)
	}
	if err := c.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = waitGone(wctx, c, crd)
	t.Logf("waitGone: %v", err)
	if err == nil || !strings.Contains(err.Error(), "Terminating=True (InstanceDeletion") {
		t.Errorf("waitGone: %v; want an error quoting the CRD's Terminating condition", err)
	}
}
