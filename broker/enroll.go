package broker

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// Globalnet asks for a global CIDR (AllocateGlobalCIDR): of
	// GlobalCIDRSize addresses (0: DefaultGlobalCIDRSize), or GlobalCIDR
	// when it is valid. The member's pod and Service CIDRs may then
	// overlap those of other Globalnet members. A member that joins again
	// without Globalnet releases the block it held.
	Globalnet      bool
	GlobalCIDRSize int
	GlobalCIDR     netip.Prefix
}

// Enrolment is what Enroll gives a member.
type Enrolment struct {
	// Token is the member's broker token.
	Token string
	// GlobalCIDR is the member's global CIDR; not valid without Globalnet.
	GlobalCIDR netip.Prefix
}

// ConflictError is a join refused because of another member.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Enroll is EnrollMember that returns only the token.
func Enroll(ctx context.Context, info *Info, m Member) (string, error) {
	e, err := EnrollMember(ctx, info, m)
	if err != nil {
		return "", err
	}
	return e.Token, nil
}

// EnrollMember makes (or renews) a member's broker credential with the
// enrolment credential in info and, with m.Globalnet, allots its global
// CIDR (AllocateGlobalCIDR). It refuses a cluster ID that another cluster
// already uses, and (a *ConflictError naming both clusters and CIDRs) pod
// or Service CIDRs that overlap another member's unless both use
// Globalnet, and pod or Service CIDRs that overlap another member's global
// CIDR. The errors of AllocateGlobalCIDR are its own.
func EnrollMember(ctx context.Context, info *Info, m Member) (*Enrolment, error) {
	if err := ValidateClusterID(m.ClusterID); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(info.RESTConfig(info.Token))
	if err != nil {
		return nil, err
	}
	ns := info.Namespace
	members, err := cs.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{LabelSelector: v1.ClusterIDLabel})
	if err != nil {
		return nil, fmt.Errorf("list broker members: %w", err)
	}
	mine := append(append([]netip.Prefix(nil), m.PodCIDRs...), m.ServiceCIDRs...)
	var avoid []claim
	for _, p := range m.PodCIDRs {
		avoid = append(avoid, claim{p, "the pod CIDR of cluster " + m.ClusterID + " itself"})
	}
	for _, p := range m.ServiceCIDRs {
		avoid = append(avoid, claim{p, "the service CIDR of cluster " + m.ClusterID + " itself"})
	}
	for _, sa := range members.Items {
		other := sa.Labels[v1.ClusterIDLabel]
		if other == m.ClusterID {
			if uid := sa.Annotations[clusterUIDAnnotation]; uid != "" && uid != m.ClusterUID {
				return nil, &ConflictError{fmt.Sprintf("cluster ID %s is already used by another cluster at the broker (kube-system UID %s, this cluster's is %s); choose another --clusterid", m.ClusterID, uid, m.ClusterUID)}
			}
			continue
		}
		// Annotations the enroller wrote; a malformed one (edited by hand)
		// counts as no CIDRs rather than blocking every join.
		theirPods, _ := cidr.ParseList(sa.Annotations[podCIDRsAnnotation])
		theirSvcs, _ := cidr.ParseList(sa.Annotations[serviceCIDRsAnnotation])
		theirGlobal, _ := cidr.ParseList(sa.Annotations[globalCIDRsAnnotation])
		theirGN := sa.Annotations[globalnetAnnotation] == "true"
		avoid = append(avoid, saClaims(&sa)...)
		for _, p := range mine {
			if !(m.Globalnet && theirGN) {
				for _, t := range append(append([]netip.Prefix(nil), theirPods...), theirSvcs...) {
					if p.Overlaps(t) {
						return nil, &ConflictError{fmt.Sprintf("CIDR %s of cluster %s overlaps CIDR %s of cluster %s; give the clusters distinct CIDRs, or join both with --globalnet (%s)",
							p, m.ClusterID, t, other, globalnetWord(m.ClusterID, m.Globalnet, other, theirGN))}
					}
				}
			}
			for _, t := range theirGlobal {
				if p.Overlaps(t) {
					return nil, &ConflictError{fmt.Sprintf("CIDR %s of cluster %s overlaps the global CIDR %s of cluster %s; give cluster %s other CIDRs", p, m.ClusterID, t, other, m.ClusterID)}
				}
			}
		}
	}

	name := MemberPrefix + m.ClusterID
	existed := false
	for _, sa := range members.Items {
		existed = existed || sa.Name == name
	}
	var global netip.Prefix
	allocated := false
	if m.Globalnet {
		if global, allocated, err = allocate(ctx, cs, ns, m.ClusterID, m.GlobalCIDRSize, m.GlobalCIDR, avoid); err != nil {
			return nil, err
		}
	}
	token, err := enrollObjects(ctx, info, cs, m, name, global)
	if err != nil {
		var undo []string
		if allocated {
			// A block this enrolment took goes back to the pool.
			if rerr := release(ctx, cs, ns, m.ClusterID); rerr != nil {
				undo = append(undo, rerr.Error())
			}
		}
		if !existed {
			// Leave nothing of a first enrolment that failed halfway: the
			// service account goes, and the garbage collector takes its Role
			// and bindings with it. A service account left behind would stand
			// for a member that never joined (its CIDRs refusing other joins).
			if derr := cs.CoreV1().ServiceAccounts(ns).Delete(ctx, name, metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
				undo = append(undo, fmt.Sprintf("removing the half-made member %s: %v", name, derr))
			}
		}
		if len(undo) > 0 {
			return nil, fmt.Errorf("%w (and %s)", err, strings.Join(undo, "; "))
		}
		return nil, err
	}
	if !m.Globalnet {
		// A member that joins again without Globalnet gives its block back.
		if err := release(ctx, cs, ns, m.ClusterID); err != nil {
			return nil, err
		}
	}
	return &Enrolment{Token: token, GlobalCIDR: global}, nil
}

// globalnetWord says which of two clusters use Globalnet.
func globalnetWord(a string, aGN bool, b string, bGN bool) string {
	switch {
	case aGN && !bGN:
		return a + " uses Globalnet, " + b + " does not"
	case !aGN && bGN:
		return b + " uses Globalnet, " + a + " does not"
	default:
		return "neither uses Globalnet"
	}
}

// saClaims are the pod, Service and global CIDRs a member service account
// records.
func saClaims(sa *corev1.ServiceAccount) []claim {
	id := sa.Labels[v1.ClusterIDLabel]
	var out []claim
	for _, a := range []struct{ key, what string }{
		{podCIDRsAnnotation, "pod CIDR"}, {serviceCIDRsAnnotation, "service CIDR"}, {globalCIDRsAnnotation, "global CIDR"},
	} {
		ps, _ := cidr.ParseList(sa.Annotations[a.key])
		for _, p := range ps {
			out = append(out, claim{p, "the " + a.what + " of cluster " + id})
		}
	}
	return out
}

// SelfBindingName is the name of the RoleBinding that lets member
// service account sa (MemberPrefix + cluster ID) read and delete itself:
// "<sa>.self". A cluster ID has no dots, so no member's binding names
// (<sa> and <sa>.self) are another's: member a's once-used "<sa>-self"
// was member a-self's <sa>.
func SelfBindingName(sa string) string { return sa + ".self" }

// enrollObjects applies member m's service account name, its Role and its
// two RoleBindings, and returns its token.
func enrollObjects(ctx context.Context, info *Info, cs kubernetes.Interface, m Member, name string, global netip.Prefix) (string, error) {
	ns := info.Namespace
	sa := &corev1.ServiceAccount{ObjectMeta: meta(name, ns)}
	sa.Labels[v1.ClusterIDLabel] = m.ClusterID
	sa.Annotations = map[string]string{
		clusterUIDAnnotation:   m.ClusterUID,
		podCIDRsAnnotation:     cidr.Join(m.PodCIDRs),
		serviceCIDRsAnnotation: cidr.Join(m.ServiceCIDRs),
	}
	if m.Globalnet {
		sa.Annotations[globalnetAnnotation] = "true"
		sa.Annotations[globalCIDRsAnnotation] = global.String()
	}
	if _, err := kubeapply.ApplyTyped(ctx, cs.CoreV1().ServiceAccounts(ns), sa, kubeapply.FieldManagerCLI); err != nil {
		return "", err
	}
	sa, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	// Earlier brokers named the self binding <sa>-self: move this member's
	// to its new name, and another member's that holds this member's name
	// (member a's strait-member-a-self, when a-self joins).
	for _, legacy := range []string{name + "-self", name} {
		if err := moveLegacySelfBinding(ctx, cs, ns, legacy); err != nil {
			return "", err
		}
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
		{ObjectMeta: meta(SelfBindingName(name), ns), RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}},
	} {
		rb.OwnerReferences = owner
		rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}}
		if _, err := kubeapply.ApplyTyped(ctx, cs.RbacV1().RoleBindings(ns), rb, kubeapply.FieldManagerCLI); err != nil {
			return "", fmt.Errorf("role binding %s: %w", rb.Name, err)
		}
	}
	if m.CurrentToken != "" && tokenIsMember(ctx, info, m.CurrentToken, "system:serviceaccount:"+ns+":"+name) {
		return m.CurrentToken, nil
	}
	return requestToken(ctx, cs, ns, name)
}

// moveLegacySelfBinding renames RoleBinding ns/legacy to SelfBindingName
// when it is a member's self binding under its old name "<sa>-self": bound
// to Role <sa> for service account <sa>. Any other binding, or none, is
// left alone.
func moveLegacySelfBinding(ctx context.Context, cs kubernetes.Interface, ns, legacy string) error {
	old, err := cs.RbacV1().RoleBindings(ns).Get(ctx, legacy, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read role binding %s: %w", legacy, err)
	}
	sa, ok := strings.CutSuffix(legacy, "-self")
	if !ok || !strings.HasPrefix(sa, MemberPrefix) || old.RoleRef.Kind != "Role" || old.RoleRef.Name != sa ||
		len(old.Subjects) != 1 || old.Subjects[0].Kind != rbacv1.ServiceAccountKind || old.Subjects[0].Name != sa {
		return nil
	}
	moved := &rbacv1.RoleBinding{ObjectMeta: meta(SelfBindingName(sa), ns), RoleRef: old.RoleRef, Subjects: old.Subjects}
	moved.OwnerReferences = old.OwnerReferences
	if _, err := kubeapply.ApplyTyped(ctx, cs.RbacV1().RoleBindings(ns), moved, kubeapply.FieldManagerCLI); err != nil {
		return fmt.Errorf("role binding %s: %w", moved.Name, err)
	}
	err = cs.RbacV1().RoleBindings(ns).Delete(ctx, legacy, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &old.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove the old role binding %s: %w", legacy, err)
	}
	return nil
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
// every object it owns there, then its global CIDR (ReleaseGlobalCIDR),
// then its service account, which revokes the credential. When the block
// cannot be released the service account stays, so that Leave can be run
// again.
func Leave(ctx context.Context, cfg *rest.Config, namespace, clusterID string) error {
	if err := deleteRecords(ctx, cfg, namespace, clusterID); err != nil {
		return err
	}
	if err := ReleaseGlobalCIDR(ctx, cfg, namespace, clusterID); err != nil {
		return err
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
