package broker_test

import (
	"context"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// brokerObject names an object Deploy or Enroll writes.
type brokerObject struct{ apiVersion, kind, namespace, name string }

func deployed(ns string) []brokerObject {
	return []brokerObject{
		{"v1", "Namespace", "", ns},
		{"rbac.authorization.k8s.io/v1", "Role", ns, broker.MemberRoleName},
		{"rbac.authorization.k8s.io/v1", "Role", ns, broker.EnrollerName},
		{"v1", "ServiceAccount", ns, broker.EnrollerName},
		{"rbac.authorization.k8s.io/v1", "RoleBinding", ns, broker.EnrollerName},
		{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "", broker.PolicyName(ns)},
		{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "", broker.PolicyName(ns)},
		{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "", broker.GlobalnetPolicyName(ns)},
		{"admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "", broker.GlobalnetPolicyName(ns)},
		{"apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "endpoints.strait.dev"},
	}
}

func enrolled(ns, id string) []brokerObject {
	return []brokerObject{
		{"v1", "ServiceAccount", ns, broker.MemberPrefix + id},
		{"rbac.authorization.k8s.io/v1", "Role", ns, broker.MemberPrefix + id},
		{"rbac.authorization.k8s.io/v1", "RoleBinding", ns, broker.MemberPrefix + id},
		{"rbac.authorization.k8s.io/v1", "RoleBinding", ns, broker.SelfBindingName(broker.MemberPrefix + id)},
	}
}

// state returns each object's resourceVersion and its field managers.
func state(t *testing.T, c client.Client, objs []brokerObject) map[brokerObject]string {
	t.Helper()
	out := map[brokerObject]string{}
	for _, o := range objs {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(o.apiVersion)
		u.SetKind(o.kind)
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: o.namespace, Name: o.name}, u); err != nil {
			t.Fatalf("%s %s/%s: %v", o.kind, o.namespace, o.name, err)
		}
		var managers []string
		for _, m := range u.GetManagedFields() {
			if m.Subresource == "status" {
				continue // the apiserver's own, on a CRD
			}
			managers = append(managers, m.Manager+"/"+string(m.Operation))
		}
		slices.Sort(managers)
		if want := []string{kubeapply.FieldManagerCLI + "/Apply"}; !slices.Equal(managers, want) {
			t.Errorf("%s %s/%s is written by %v, want %v (one server-side apply)", o.kind, o.namespace, o.name, managers, want)
		}
		out[o] = u.GetResourceVersion()
	}
	return out
}

// Deploy and Enroll write through server-side apply as straitctl, and doing
// either again changes no object.
func TestDeployAndEnrollApply(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx := context.Background()
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if _, err := broker.Enroll(ctx, info, member("c1", "uid-1", "10.1.0.0/16", "10.101.0.0/16")); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	objs := append(deployed(v1.BrokerNamespace), enrolled(v1.BrokerNamespace, "c1")...)
	before := state(t, c, objs)

	if info, err = broker.Deploy(ctx, env.Config, broker.DeployOptions{}); err != nil {
		t.Fatalf("deploy again: %v", err)
	}
	if _, err := broker.Enroll(ctx, info, member("c1", "uid-1", "10.1.0.0/16", "10.101.0.0/16")); err != nil {
		t.Fatalf("enroll again: %v", err)
	}
	after := state(t, c, objs)
	for o, rv := range before {
		if after[o] != rv {
			t.Errorf("%s %s/%s changed: resourceVersion %s -> %s", o.kind, o.namespace, o.name, rv, after[o])
		}
	}
}
