package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Enrolled reports whether the broker in info holds an enrolment of
// clusterID: a member service account labelled with it. It reads with the
// enrolment credential in info. Join asks before enrolling, so that a join
// that fails later undoes only an enrolment it made itself.
func Enrolled(ctx context.Context, info *Info, clusterID string) (bool, error) {
	cs, err := kubernetes.NewForConfig(info.RESTConfig(info.Token))
	if err != nil {
		return false, err
	}
	sas, err := cs.CoreV1().ServiceAccounts(info.Namespace).List(ctx, metav1.ListOptions{LabelSelector: v1.ClusterIDLabel + "=" + clusterID})
	if err != nil {
		return false, fmt.Errorf("list broker members: %w", err)
	}
	return len(sas.Items) > 0, nil
}

// Unenroll removes member clusterID from the broker namespace with a
// credential that may remove members (the enrolment credential of the join
// file, or an admin of the broker cluster), whether or not the member can
// still reach the broker: every synced record labelled with its cluster ID
// (its Cluster, Endpoints, ServiceImports, EndpointSlices), then the Roles
// and RoleBindings its service accounts own (found by owner reference, not
// by name), its global CIDR in the Globalnet ConfigMap, then those service
// accounts, which revokes the member's token.
// What is already gone counts as removed, so it can be run again.
//
// It is "straitctl cleanup-broker" and what a failed join runs to undo its
// enrolment. Errors are the apiserver's, wrapped with what was being
// removed, joined when several removals fail.
func Unenroll(ctx context.Context, cfg *rest.Config, namespace, clusterID string) error {
	if err := ValidateClusterID(clusterID); err != nil {
		return err
	}
	if err := deleteRecords(ctx, cfg, namespace, clusterID); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	sas, err := cs.CoreV1().ServiceAccounts(namespace).List(ctx, metav1.ListOptions{LabelSelector: v1.ClusterIDLabel + "=" + clusterID})
	if err != nil {
		return fmt.Errorf("list the member service accounts of %s: %w", clusterID, err)
	}
	var uids []types.UID
	for _, sa := range sas.Items {
		uids = append(uids, sa.UID)
	}
	owned := func(refs []metav1.OwnerReference) bool {
		return slices.ContainsFunc(refs, func(r metav1.OwnerReference) bool { return slices.Contains(uids, r.UID) })
	}
	var errs []error
	if len(uids) > 0 {
		bindings, err := cs.RbacV1().RoleBindings(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list RoleBindings: %w", err)
		}
		for _, rb := range bindings.Items {
			if owned(rb.OwnerReferences) {
				errs = append(errs, ignoreNotFound(cs.RbacV1().RoleBindings(namespace).Delete(ctx, rb.Name, preconditions(rb.UID)), "RoleBinding "+rb.Name))
			}
		}
		roles, err := cs.RbacV1().Roles(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list Roles: %w", err)
		}
		for _, r := range roles.Items {
			if owned(r.OwnerReferences) {
				errs = append(errs, ignoreNotFound(cs.RbacV1().Roles(namespace).Delete(ctx, r.Name, preconditions(r.UID)), "Role "+r.Name))
			}
		}
	}
	errs = append(errs, release(ctx, cs, namespace, clusterID))
	for _, sa := range sas.Items {
		errs = append(errs, ignoreNotFound(cs.CoreV1().ServiceAccounts(namespace).Delete(ctx, sa.Name, preconditions(sa.UID)), "ServiceAccount "+sa.Name))
	}
	return errors.Join(errs...)
}

// Remaining lists what the broker namespace still holds of member
// clusterID: its records by resource, its service accounts, and its key in
// the Globalnet ConfigMap. Nil when nothing is left.
func Remaining(ctx context.Context, cfg *rest.Config, namespace, clusterID string) ([]string, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sel := metav1.ListOptions{LabelSelector: v1.ClusterIDLabel + "=" + clusterID}
	var out []string
	for _, r := range SyncedResources {
		gvr := schema.GroupVersionResource{Group: r.Group, Version: resourceVersions[r.Resource], Resource: r.Resource}
		list, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, sel)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Resource, err)
		}
		for _, it := range list.Items {
			out = append(out, r.Resource+"/"+it.GetName())
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	sas, err := cs.CoreV1().ServiceAccounts(namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list service accounts: %w", err)
	}
	for _, sa := range sas.Items {
		out = append(out, "serviceaccounts/"+sa.Name)
	}
	cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, GlobalnetConfigMap, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read the Globalnet ConfigMap: %w", err)
	}
	if _, ok := cm.Data[clusterID]; err == nil && ok {
		out = append(out, "configmaps/"+GlobalnetConfigMap+" key "+clusterID+" (its global CIDR "+cm.Data[clusterID]+")")
	}
	return out, nil
}

// deleteRecords deletes every synced record labelled with clusterID in
// namespace. A resource the broker does not serve has none.
func deleteRecords(ctx context.Context, cfg *rest.Config, namespace, clusterID string) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range SyncedResources {
		gvr := schema.GroupVersionResource{Group: r.Group, Version: resourceVersions[r.Resource], Resource: r.Resource}
		err := dyn.Resource(gvr).Namespace(namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: v1.ClusterIDLabel + "=" + clusterID})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", r.Resource, err))
		}
	}
	return errors.Join(errs...)
}

// preconditions deletes only the object with this UID: one made again
// under the same name since the list stays.
func preconditions(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

// ignoreNotFound wraps err with what, unless the object was already gone.
func ignoreNotFound(err error, what string) error {
	if err == nil || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("delete %s: %w", what, err)
}

// HostLabel marks the namespace of a broker: deploy-broker sets it, and it
// goes with the namespace. Whether a cluster hosts a broker is read from it
// (HostsBroker), never from a namespace's name.
const HostLabel = "strait.dev/broker"

// HostsBroker returns the broker namespaces deploy-broker recorded in the
// cluster behind cs: those labelled HostLabel=true, sorted. A cluster that
// hosts no broker has none.
func HostsBroker(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: HostLabel + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list broker namespaces: %w", err)
	}
	var out []string
	for _, ns := range list.Items {
		out = append(out, ns.Name)
	}
	slices.Sort(out)
	return out, nil
}
