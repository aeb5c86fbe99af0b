// Package kubeapply is the one way Strait writes Kubernetes objects and their
// status: server-side apply, each component under a field manager of its own
// (FieldManager* below), with ownership forced, since each field Strait
// writes has exactly one writing component. What a component applies is the
// whole of what it wants of an object; fields it no longer sets are removed
// by the apiserver, fields other managers own (a user's labels) are kept.
//
// Apply and All take a controller-runtime client (typed objects of its
// scheme, or *unstructured.Unstructured, as deploy/manifests renders the chart);
// ApplyTyped takes a typed client-go client; ApplyCRDs applies CRDs and waits
// until they are served; DeleteAll undoes All, in reverse order.
//
// Source: Kubernetes server-side apply,
// https://kubernetes.io/docs/reference/using-api/server-side-apply/.
package kubeapply

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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

// Patcher is the Patch method every typed client-go client has, such as
// kubernetes.Interface's CoreV1().ServiceAccounts(namespace).
type Patcher[T any] interface {
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// ApplyTyped is Apply through a typed client-go client, for code that holds a
// clientset (a credential of its own, say) rather than a controller-runtime
// client. obj is a built-in Kubernetes type; the same fields are sent, under
// the same field manager, with ownership forced, as Apply sends. It returns
// the object as the apiserver stored it.
func ApplyTyped[T any](ctx context.Context, p Patcher[T], obj client.Object, manager string) (T, error) {
	var zero T
	u, err := toUnstructured(clientgoscheme.Scheme, obj)
	if err != nil {
		return zero, err
	}
	unstructured.RemoveNestedField(u.Object, "status")
	data, err := json.Marshal(u.Object)
	if err != nil {
		return zero, fmt.Errorf("encode %s %s: %w", u.GetKind(), key(u), err)
	}
	out, err := p.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: manager, Force: new(true)})
	if err != nil {
		return zero, fmt.Errorf("apply %s %s: %w", u.GetKind(), key(u), err)
	}
	return out, nil
}

// crdEstablishTimeout bounds the wait for an applied CRD to be served. The
// apiserver establishes a CRD within a second or so; the bound only turns a
// broken apiserver into an error rather than a hang.
const crdEstablishTimeout = time.Minute

// crdPollInterval is how often ApplyCRDs looks at a CRD's conditions.
const crdPollInterval = 50 * time.Millisecond

var crdGVK = apiextv1.SchemeGroupVersion.WithKind("CustomResourceDefinition")

// ApplyCRDs applies CustomResourceDefinitions as manager and waits until the
// apiserver serves each (condition Established), so that objects of their
// kinds can be applied next through a client with a dynamic RESTMapper
// (controller-runtime's default). c's scheme need not know the apiextensions
// types. Errors are Apply's, or the wait's when a CRD is not established in
// time.
func ApplyCRDs(ctx context.Context, c client.Client, crds []*apiextv1.CustomResourceDefinition, manager string) error {
	for _, crd := range crds {
		crd = crd.DeepCopy()
		crd.SetGroupVersionKind(crdGVK)
		if err := Apply(ctx, c, crd, manager); err != nil {
			return err
		}
	}
	for _, crd := range crds {
		err := wait.PollUntilContextTimeout(ctx, crdPollInterval, crdEstablishTimeout, true, func(ctx context.Context) (bool, error) {
			cur := &unstructured.Unstructured{}
			cur.SetGroupVersionKind(crdGVK)
			if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, cur); err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == string(apiextv1.Established) && m["status"] == string(apiextv1.ConditionTrue) {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("wait for CRD %s to be established: %w", crd.Name, err)
		}
	}
	return nil
}

// DeleteAll deletes objs in reverse order (what lives in a namespace before
// the namespace, a CRD's objects before the CRD), the undoing of All. An
// object that is already gone, or whose kind the apiserver no longer serves,
// counts as deleted. It stops at the first other error. Only the objects'
// kinds, namespaces and names matter.
func DeleteAll(ctx context.Context, c client.Client, objs []client.Object, opts ...client.DeleteOption) error {
	for _, o := range slices.Backward(objs) {
		if err := Delete(ctx, c, o, opts...); err != nil {
			return err
		}
	}
	return nil
}

// Delete deletes obj, counting an object that is already gone, or whose kind
// the apiserver does not serve, as deleted. The error names the object and
// wraps the apiserver's.
func Delete(ctx context.Context, c client.Client, obj client.Object, opts ...client.DeleteOption) error {
	u, err := toUnstructured(c.Scheme(), obj)
	if err != nil {
		return err
	}
	err = c.Delete(ctx, u, opts...)
	if err == nil || apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil
	}
	return fmt.Errorf("delete %s %s: %w", u.GetKind(), key(u), err)
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

// WrittenBy reports whether field manager manager (one of the
// FieldManager* constants) owns any of obj's fields, from its
// metadata.managedFields: how a component tells what it wrote from what a
// user or another component did.
func WrittenBy(obj metav1.Object, manager string) bool {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == manager {
			return true
		}
	}
	return false
}
