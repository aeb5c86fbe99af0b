// Package kubeapply is the one way Strait writes Kubernetes objects and their
// status: server-side apply, each component under a field manager of its own
// (FieldManager* below), with ownership forced, since each field Strait
// writes has exactly one writing component. What a component applies is the
// whole of what it wants of an object; fields it no longer sets are removed
// by the apiserver, fields other managers own (a user's labels) are kept.
//
// Source: Kubernetes server-side apply,
// https://kubernetes.io/docs/reference/using-api/server-side-apply/.
package kubeapply

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Field managers, one per component that writes objects.
const (
	FieldManagerCLI        = "straitctl"
	FieldManagerGateway    = "strait-gateway"
	FieldManagerRouteAgent = "strait-routeagent"
	FieldManagerLighthouse = "strait-lighthouse"
	FieldManagerGlobalnet  = "strait-globalnet"
)

// Apply server-side applies obj (a typed object of c's scheme, or an
// *unstructured.Unstructured) as manager. The object's status, if any, is
// not part of the request: the apiserver ignores it on the main resource;
// write it with ApplyStatus. Errors are the apiserver's (wrapped, so that
// apierrors.IsInvalid and friends still see them) or a scheme error for a
// type c does not know.
func Apply(ctx context.Context, c client.Client, obj client.Object, manager string) error {
	u, err := toUnstructured(c.Scheme(), obj)
	if err != nil {
		return err
	}
	unstructured.RemoveNestedField(u.Object, "status")
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(manager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s: %w", u.GetKind(), key(u), err)
	}
	return nil
}

// ApplyStatus server-side applies obj's status through the status
// subresource as manager. Only apiVersion, kind, name, namespace and status
// are sent.
func ApplyStatus(ctx context.Context, c client.Client, obj client.Object, manager string) error {
	u, err := toUnstructured(c.Scheme(), obj)
	if err != nil {
		return err
	}
	status, _, _ := unstructured.NestedFieldNoCopy(u.Object, "status")
	slim := &unstructured.Unstructured{Object: map[string]any{"status": status}}
	slim.SetGroupVersionKind(u.GroupVersionKind())
	slim.SetName(u.GetName())
	slim.SetNamespace(u.GetNamespace())
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(slim), client.FieldOwner(manager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply status of %s %s: %w", u.GetKind(), key(u), err)
	}
	return nil
}

// All applies objs in order (a namespace before what lives in it, a CRD
// before its objects), stopping at the first error.
func All(ctx context.Context, c client.Client, objs []client.Object, manager string) error {
	for _, o := range objs {
		if err := Apply(ctx, c, o, manager); err != nil {
			return err
		}
	}
	return nil
}

// toUnstructured renders obj with its apiVersion and kind, which a typed
// object usually leaves empty, and without the fields an apply must not
// carry (resourceVersion, creationTimestamp, managedFields, uid).
func toUnstructured(s *runtime.Scheme, obj client.Object) (*unstructured.Unstructured, error) {
	var u *unstructured.Unstructured
	if uo, ok := obj.(*unstructured.Unstructured); ok {
		u = uo.DeepCopy()
	} else {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("convert %T: %w", obj, err)
		}
		u = &unstructured.Unstructured{Object: m}
		gvk := obj.GetObjectKind().GroupVersionKind()
		if gvk.Empty() {
			gvks, _, err := s.ObjectKinds(obj)
			if err != nil || len(gvks) == 0 {
				return nil, fmt.Errorf("kind of %T: %w", obj, err)
			}
			gvk = gvks[0]
		}
		u.SetGroupVersionKind(gvk)
	}
	if u.GroupVersionKind() == (schema.GroupVersionKind{}) {
		return nil, fmt.Errorf("object %s has no apiVersion and kind", key(u))
	}
	for _, f := range [][]string{{"metadata", "resourceVersion"}, {"metadata", "creationTimestamp"}, {"metadata", "managedFields"}, {"metadata", "uid"}, {"metadata", "generation"}} {
		unstructured.RemoveNestedField(u.Object, f...)
	}
	return u, nil
}

func key(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}
