package broker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/kubeapply"
)

// Annotations on a member's service account: what the broker knows of the
// member before its gateway publishes anything.
const (
	clusterUIDAnnotation   = "strait.dev/cluster-uid"
	podCIDRsAnnotation     = "strait.dev/pod-cidrs"
	serviceCIDRsAnnotation = "strait.dev/service-cidrs"
)

var clusterIDPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateClusterID checks that id is an RFC 1123 label, as the MCS API
// requires of cluster IDs.
func ValidateClusterID(id string) error {
	if len(id) == 0 || len(id) > 63 || !clusterIDPattern.MatchString(id) {
		return fmt.Errorf("cluster ID %q is not an RFC 1123 label: use 1 to 63 lower-case letters, digits and -, starting and ending with a letter or digit", id)
	}
	return nil
}

// Member is a cluster asking to join.
type Member struct {
	ClusterID string
	// ClusterUID tells clusters apart when they ask for the same ID: the UID
	// of the member cluster's kube-system namespace.
	ClusterUID   string
	PodCIDRs     []netip.Prefix
	ServiceCIDRs []netip.Prefix
	// CurrentToken is the member's token from an earlier join, if any: while
	// it still authenticates as this member it is kept, so that joining again
	// changes nothing.
	CurrentToken string
}

// ConflictError is a join refused because of another member.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Enroll makes (or renews) a member's broker credential with the enrolment
// credential in info, and returns the member's token. It refuses a cluster
// ID that another cluster already uses, and CIDRs that overlap another
// member's (always: Globalnet does not exist yet, whatever info says).
func Enroll(ctx context.Context, info *Info, m Member) (string, error) {
	if err := ValidateClusterID(m.ClusterID); err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(info.RESTConfig(info.Token))
	if err != nil {
		return "", err
	}
	ns := info.Namespace
	members, err := cs.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{LabelSelector: v1.ClusterIDLabel})
	if err != nil {
		return "", fmt.Errorf("list broker members: %w", err)
	}
	for _, sa := range members.Items {
		other := sa.Labels[v1.ClusterIDLabel]
		if other == m.ClusterID {
			if uid := sa.Annotations[clusterUIDAnnotation]; uid != "" && uid != m.ClusterUID {
				return "", &ConflictError{fmt.Sprintf("cluster ID %s is already used by another cluster at the broker (kube-system UID %s, this cluster's is %s); choose another --clusterid", m.ClusterID, uid, m.ClusterUID)}
			}
			continue
		}
		// Annotations the enroller wrote; a malformed one (edited by hand)
		// counts as no CIDRs rather than blocking every join.
		theirPods, _ := cidr.ParseList(sa.Annotations[podCIDRsAnnotation])
		theirSvcs, _ := cidr.ParseList(sa.Annotations[serviceCIDRsAnnotation])
		theirs := append(theirPods, theirSvcs...)
		for _, mine := range append(append([]netip.Prefix(nil), m.PodCIDRs...), m.ServiceCIDRs...) {
			for _, t := range theirs {
				if mine.Overlaps(t) {
					return "", &ConflictError{fmt.Sprintf("CIDR %s of cluster %s overlaps CIDR %s of cluster %s; give the clusters distinct CIDRs", mine, m.ClusterID, t, other)}
				}
			}
		}
	}

	name := MemberPrefix + m.ClusterID
	sa := &corev1.ServiceAccount{ObjectMeta: meta(name, ns)}
	sa.Labels[v1.ClusterIDLabel] = m.ClusterID
	sa.Annotations = map[string]string{
		clusterUIDAnnotation:   m.ClusterUID,
		podCIDRsAnnotation:     cidr.Join(m.PodCIDRs),
		serviceCIDRsAnnotation: cidr.Join(m.ServiceCIDRs),
	}
	if _, err := kubeapply.ApplyTyped(ctx, cs.CoreV1().ServiceAccounts(ns), sa, kubeapply.FieldManagerCLI); err != nil {
		return "", err
	}
	sa, err = cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	// The member may remove its own service account when it leaves; the
	// Role and bindings belong to the account and go with it.
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}}
	self := &rbacv1.Role{ObjectMeta: meta(name, ns), Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, ResourceNames: []string{name}, Verbs: []string{"get", "delete"},
	}}}
	self.OwnerReferences = owner
	if _, err := kubeapply.ApplyTyped(ctx, cs.RbacV1().Roles(ns), self, kubeapply.FieldManagerCLI); err != nil {
		return "", err
	}
	for _, rb := range []*rbacv1.RoleBinding{
		{ObjectMeta: meta(name, ns), RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: MemberRoleName}},
		{ObjectMeta: meta(name+"-self", ns), RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
	} {
		rb.OwnerReferences = owner
		rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}
		if _, err := kubeapply.ApplyTyped(ctx, cs.RbacV1().RoleBindings(ns), rb, kubeapply.FieldManagerCLI); err != nil {
			return "", err
		}
	}
	if m.CurrentToken != "" && tokenIsMember(ctx, info, m.CurrentToken, "system:serviceaccount:"+ns+":"+name) {
		return m.CurrentToken, nil
	}
	return requestToken(ctx, cs, ns, name)
}

// tokenIsMember reports whether token authenticates as user at the broker.
func tokenIsMember(ctx context.Context, info *Info, token, user string) bool {
	cs, err := kubernetes.NewForConfig(info.RESTConfig(token))
	if err != nil {
		return false
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	return err == nil && review.Status.UserInfo.Username == user
}

// Leave removes a member from the broker with the member's own credential:
// every object it owns there, then its service account, which revokes the
// credential.
func Leave(ctx context.Context, cfg *rest.Config, namespace, clusterID string) error {
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
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	err = cs.CoreV1().ServiceAccounts(namespace).Delete(ctx, MemberPrefix+clusterID, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove member credential: %w", err)
	}
	return nil
}

// resourceVersions are the API versions the broker serves the synced
// resources at.
var resourceVersions = map[string]string{
	"clusters": "v1alpha1", "endpoints": "v1alpha1", "serviceimports": "v1beta1", "endpointslices": "v1",
}
