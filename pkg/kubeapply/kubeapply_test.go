package kubeapply_test

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"strait.dev/strait/deploy/crds"
	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// These tests run against a real kube-apiserver: server-side apply, field
// ownership, the status subresource and the discovery of new kinds are the
// apiserver's behaviour.

const ns = "apply-test"

func configMap(data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: ns}, Data: data}
}

// managers returns the managers of obj's fields, as "manager/operation".
func managers(obj client.Object) []string {
	var out []string
	for _, m := range obj.GetManagedFields() {
		out = append(out, m.Manager+"/"+string(m.Operation))
	}
	slices.Sort(out)
	return out
}

func TestApply(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx := context.Background()
	// The client is made before Strait's CRDs exist, as straitctl join's is.
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeapply.Apply(ctx, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, kubeapply.FieldManagerCLI); err != nil {
		t.Fatal(err)
	}

	t.Run("a CRD kind once its CRD is applied", func(t *testing.T) {
		prop := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": aboutv1beta1.SchemeGroupVersion.String(), "kind": "ClusterProperty",
			"metadata": map[string]any{"name": "cluster.clusterset.k8s.io"},
			"spec":     map[string]any{"value": "c1"},
		}}
		if err := kubeapply.Apply(ctx, c, prop, kubeapply.FieldManagerCLI); !meta.IsNoMatchError(err) {
			t.Fatalf("applying a ClusterProperty before its CRD: got %v, want a no-match error", err)
		}
		all, err := crds.All()
		if err != nil {
			t.Fatal(err)
		}
		if err := kubeapply.ApplyCRDs(ctx, c, all, kubeapply.FieldManagerCLI); err != nil {
			t.Fatal(err)
		}
		if err := kubeapply.Apply(ctx, c, prop, kubeapply.FieldManagerCLI); err != nil {
			t.Fatalf("applying a ClusterProperty after its CRD: %v", err)
		}
		got := &aboutv1beta1.ClusterProperty{}
		if err := c.Get(ctx, client.ObjectKey{Name: "cluster.clusterset.k8s.io"}, got); err != nil || got.Spec.Value != "c1" {
			t.Fatalf("ClusterProperty: %+v, %v", got.Spec, err)
		}
		// Applying the CRDs again changes none of them.
		before := crdVersions(t, c)
		if err := kubeapply.ApplyCRDs(ctx, c, all, kubeapply.FieldManagerCLI); err != nil {
			t.Fatal(err)
		}
		if after := crdVersions(t, c); !equalMaps(before, after) {
			t.Errorf("applying the CRDs again changed them: %v -> %v", before, after)
		}
	})

	t.Run("fields the manager drops go, others' stay, the same apply changes nothing", func(t *testing.T) {
		if err := kubeapply.Apply(ctx, c, configMap(map[string]string{"a": "1", "b": "2"}), kubeapply.FieldManagerCLI); err != nil {
			t.Fatal(err)
		}
		// A user labels the object with a tool of their own.
		patch := client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"team":"blue"}}}`))
		if err := c.Patch(ctx, configMap(nil), patch, client.FieldOwner("kubectl-label")); err != nil {
			t.Fatal(err)
		}
		if err := kubeapply.Apply(ctx, c, configMap(map[string]string{"a": "1"}), kubeapply.FieldManagerCLI); err != nil {
			t.Fatal(err)
		}
		got := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(configMap(nil)), got); err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Data["b"]; ok || got.Data["a"] != "1" {
			t.Errorf("data %v, want only a=1", got.Data)
		}
		if got.Labels["team"] != "blue" {
			t.Errorf("the user's label went: %v", got.Labels)
		}
		if want := []string{"kubectl-label/Update", "straitctl/Apply"}; !slices.Equal(managers(got), want) {
			t.Errorf("managers %v, want %v", managers(got), want)
		}
		if err := kubeapply.Apply(ctx, c, configMap(map[string]string{"a": "1"}), kubeapply.FieldManagerCLI); err != nil {
			t.Fatal(err)
		}
		again := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(configMap(nil)), again); err != nil {
			t.Fatal(err)
		}
		if again.ResourceVersion != got.ResourceVersion {
			t.Errorf("the same apply changed the object: resourceVersion %s -> %s", got.ResourceVersion, again.ResourceVersion)
		}
	})

	t.Run("ownership is forced", func(t *testing.T) {
		if err := kubeapply.Apply(ctx, c, configMap(map[string]string{"a": "9"}), kubeapply.FieldManagerGateway); err != nil {
			t.Fatalf("another component takes a field over: %v", err)
		}
		got := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(configMap(nil)), got); err != nil || got.Data["a"] != "9" {
			t.Fatalf("data %v, %v", got.Data, err)
		}
	})

	t.Run("status only through ApplyStatus", func(t *testing.T) {
		gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: ns},
			Status: v1.GatewayStatus{HAStatus: v1.HAStatusActive, LocalEndpoint: "c1-node-1"}}
		// The status in the object is not sent with the object.
		if err := kubeapply.Apply(ctx, c, gw, kubeapply.FieldManagerGateway); err != nil {
			t.Fatal(err)
		}
		got := &v1.Gateway{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(gw), got); err != nil {
			t.Fatal(err)
		}
		if got.Status.HAStatus != "" {
			t.Errorf("Apply wrote the status: %+v", got.Status)
		}
		if err := kubeapply.ApplyStatus(ctx, c, gw, kubeapply.FieldManagerGateway); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(gw), got); err != nil {
			t.Fatal(err)
		}
		if got.Status.HAStatus != v1.HAStatusActive || got.Status.LocalEndpoint != "c1-node-1" {
			t.Errorf("status after ApplyStatus: %+v", got.Status)
		}
	})

	t.Run("errors keep the apiserver's reason", func(t *testing.T) {
		bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "Not_A_Name", Namespace: ns}}
		err := kubeapply.Apply(ctx, c, bad, kubeapply.FieldManagerCLI)
		if !apierrors.IsInvalid(err) {
			t.Errorf("got %v, want an Invalid error", err)
		}
	})

	t.Run("through a typed client", func(t *testing.T) {
		cs, err := kubernetes.NewForConfig(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "sa", Namespace: ns, Labels: map[string]string{"a": "1"}}}
		got, err := kubeapply.ApplyTyped(ctx, cs.CoreV1().ServiceAccounts(ns), sa, kubeapply.FieldManagerCLI)
		if err != nil {
			t.Fatal(err)
		}
		if got.UID == "" || got.Labels["a"] != "1" {
			t.Errorf("returned %+v", got.ObjectMeta)
		}
		if want := []string{"straitctl/Apply"}; !slices.Equal(managers(got), want) {
			t.Errorf("managers %v, want %v", managers(got), want)
		}
		sa.Labels = nil
		if got, err = kubeapply.ApplyTyped(ctx, cs.CoreV1().ServiceAccounts(ns), sa, kubeapply.FieldManagerCLI); err != nil || len(got.Labels) != 0 {
			t.Errorf("labels after dropping them: %v, %v", got.Labels, err)
		}
	})

	t.Run("DeleteAll in reverse, gone counts as deleted", func(t *testing.T) {
		cw, err := client.NewWithWatch(env.Config, client.Options{Scheme: scheme.New()})
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		rec := interceptor.NewClient(cw, interceptor.Funcs{
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				order = append(order, obj.GetName())
				return c.Delete(ctx, obj, opts...)
			},
		})
		for _, name := range []string{"one", "two"} {
			if err := kubeapply.Apply(ctx, c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, kubeapply.FieldManagerCLI); err != nil {
				t.Fatal(err)
			}
		}
		unserved := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "nothing.example/v1", "kind": "Nothing", "metadata": map[string]any{"name": "x"}}}
		objs := []client.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: ns}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "never-made", Namespace: ns}},
			unserved,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "two", Namespace: ns}},
		}
		if err := kubeapply.DeleteAll(ctx, rec, objs); err != nil {
			t.Fatal(err)
		}
		if want := []string{"two", "x", "never-made", "one"}; !slices.Equal(order, want) {
			t.Errorf("deleted in order %v, want %v", order, want)
		}
		for _, name := range []string{"one", "two"} {
			err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.ConfigMap{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("ConfigMap %s: %v, want it gone", name, err)
			}
		}
		// A failure that is not "gone" stops it, and says which object.
		forbidden := interceptor.NewClient(cw, interceptor.Funcs{
			Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error {
				return apierrors.NewForbidden(corev1.Resource("configmaps"), "cm", nil)
			},
		})
		if err := kubeapply.DeleteAll(ctx, forbidden, objs[:1]); !apierrors.IsForbidden(err) {
			t.Errorf("got %v, want the Forbidden error", err)
		}
	})
}

func crdVersions(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, crd := range all {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		if err := c.Get(context.Background(), client.ObjectKey{Name: crd.Name}, u); err != nil {
			t.Fatal(err)
		}
		out[crd.Name] = u.GetResourceVersion()
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
