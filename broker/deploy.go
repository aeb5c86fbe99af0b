package broker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/deploy/crds"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/scheme"
)

const (
	// EnrollerName names the enrolment service account and its Role.
	EnrollerName = "strait-enroller"
	// MemberRoleName is the Role every member's credential is bound to.
	MemberRoleName = "strait-member"
	// MemberPrefix starts the name of each member's service account:
	// strait-member-<cluster ID>. The isolation policy reads the cluster ID
	// back from the authenticated user name.
	MemberPrefix = "strait-member-"
	// credentialLifetime is how long broker tokens are requested for. The
	// apiserver may shorten it (--service-account-max-token-expiration);
	// running join again renews a member's token. Deleting the service
	// account revokes every token at once.
	credentialLifetime = 365 * 24 * time.Hour
)

// SyncedResources are the broker resources members write, each labelled with
// its owner's cluster ID.
var SyncedResources = []struct{ Group, Resource string }{
	{v1.GroupName, "clusters"},
	{v1.GroupName, "endpoints"},
	{"multicluster.x-k8s.io", "serviceimports"},
	{"discovery.k8s.io", "endpointslices"},
}

// DeployOptions configure a broker.
type DeployOptions struct {
	// Namespace is the broker namespace (default strait-broker).
	Namespace string
	// APIServer is the URL members reach the broker's apiserver at; default:
	// the URL of the configuration used to deploy.
	APIServer string
	// GlobalnetCIDR is the Globalnet pool members' global CIDRs are
	// allotted from (an IPv4 prefix of /8 to /24). Unset, a broker keeps
	// the pool it has, and a new broker gets DefaultGlobalnetCIDR.
	GlobalnetCIDR netip.Prefix
}

// Deploy installs a broker in the cluster behind cfg and returns the join
// file's contents (Info) with a fresh enrolment token.
//
// It server-side applies, as kubeapply.FieldManagerCLI and in this order:
// Strait's CRDs (waiting until they are served), the broker namespace
// (labelled HostLabel=true: the record that this cluster hosts a broker), the
// Role every member is bound to (strait-member), the enroller's Role,
// ServiceAccount and RoleBinding (strait-enroller), and the member isolation
// ValidatingAdmissionPolicies with their bindings (member isolation, and the
// Globalnet ConfigMap's), then the Globalnet ConfigMap GlobalnetConfigMap
// with the pool (see EnsureGlobalnetPool). It waits (up to a minute) until
// the apiserver enforces both policies, which it loads some time after they
// are written, so that no member write is admitted unchecked: it probes with
// dry-run writes as a member (waitPoliciesEnforced; a credential that may not
// impersonate skips the wait). Then it requests a token for the
// enroller. It is idempotent: deploying again changes no object and only
// mints another enrolment token.
//
// Errors: a pool that is not IPv4 /8 to /24, before anything is written; a
// pool other than the broker's while members hold global CIDRs; a policy
// not enforced within the minute, naming it; otherwise
// they wrap the apiserver's (apierrors.IsForbidden and friends see through
// them), or the reading of cfg's CA file.
func Deploy(ctx context.Context, cfg *rest.Config, opts DeployOptions) (*Info, error) {
	if opts.GlobalnetCIDR.IsValid() {
		if err := ValidateGlobalnetPool(opts.GlobalnetCIDR); err != nil {
			return nil, err
		}
	}
	if opts.Namespace == "" {
		opts.Namespace = v1.BrokerNamespace
	}
	if opts.APIServer == "" {
		opts.APIServer = cfg.Host
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("broker cluster client: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("broker cluster client: %w", err)
	}
	all, err := crds.All()
	if err != nil {
		return nil, err
	}
	if err := kubeapply.ApplyCRDs(ctx, c, all, kubeapply.FieldManagerCLI); err != nil {
		return nil, err
	}
	if err := kubeapply.All(ctx, c, brokerObjects(opts.Namespace), kubeapply.FieldManagerCLI); err != nil {
		return nil, err
	}
	pool, err := EnsureGlobalnetPool(ctx, cs, opts.Namespace, opts.GlobalnetCIDR)
	if err != nil {
		return nil, err
	}
	if err := waitPoliciesEnforced(ctx, cfg, c, opts.Namespace, enforcedTimeout); err != nil && !errors.Is(err, errCannotProbe) {
		return nil, err
	}
	token, err := requestToken(ctx, cs, opts.Namespace, EnrollerName)
	if err != nil {
		return nil, err
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("read the broker's CA: %w", err)
		}
	}
	return &Info{APIServer: opts.APIServer, CABundle: ca, Namespace: opts.Namespace, Token: token, GlobalnetCIDR: pool.String()}, nil
}

// brokerObjects are the objects of a broker in namespace ns, in the order
// they are applied: the namespace first.
func brokerObjects(ns string) []client.Object {
	var memberRules []rbacv1.PolicyRule
	for _, r := range SyncedResources {
		memberRules = append(memberRules, rbacv1.PolicyRule{
			APIGroups: []string{r.Group}, Resources: []string{r.Resource},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
		})
	}
	// The enroller makes and removes members: their service accounts, tokens
	// and bindings. RBAC lets it bind the member Role only because it holds
	// every permission in it (and "bind" on it by name, said outright). It
	// writes with server-side apply, which needs "patch" (and "create" for a
	// new object).
	// Members read the Globalnet ConfigMap and, at leave, remove their own
	// key from it (the Globalnet policy allows nothing else); the enroller
	// allots blocks in it.
	globalnetRule := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"},
		ResourceNames: []string{GlobalnetConfigMap}, Verbs: []string{"get", "update"}}
	memberRules = append(memberRules, globalnetRule)
	enrollerRules := append([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles", "rolebindings"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles"}, Verbs: []string{"bind", "escalate"}},
	}, memberRules...)
	policy, binding := isolationPolicy(ns)
	gnPolicy, gnBinding := globalnetPolicy(ns)
	return []client.Object{
		// HostLabel records that this cluster hosts a broker, for leave.
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "strait", HostLabel: "true"}}},
		&rbacv1.Role{ObjectMeta: meta(MemberRoleName, ns), Rules: memberRules},
		&rbacv1.Role{ObjectMeta: meta(EnrollerName, ns), Rules: enrollerRules},
		&corev1.ServiceAccount{ObjectMeta: meta(EnrollerName, ns)},
		&rbacv1.RoleBinding{
			ObjectMeta: meta(EnrollerName, ns),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: EnrollerName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: EnrollerName, Namespace: ns}},
		},
		policy,
		binding,
		gnPolicy,
		gnBinding,
	}
}

// PolicyName is the name of the isolation policy of a broker namespace.
func PolicyName(namespace string) string { return "strait-member-isolation." + namespace }

// isolationPolicy enforces per-cluster write isolation in the broker
// namespace: a member credential (service account strait-member-<id>) may
// create, change and delete only objects labelled with its own cluster ID,
// cannot move an object to or from another cluster's label, cannot write
// under a name from another cluster's namespace of names (a Cluster is named
// <cluster ID>, an Endpoint <cluster ID>.<node>, an export record
// <service>.<namespace>.<cluster ID>[.<slice>]), and cannot claim
// another cluster ID in spec.clusterID nor in the MCS API's
// multicluster.kubernetes.io/source-cluster label (importers take that label
// as the cluster an EndpointSlice's endpoints live in, so a member must not
// publish slices in another cluster's name; records without the label are
// left alone). A ValidatingAdmissionPolicy runs in the apiserver itself:
// there is no webhook to run or to fail open.
func isolationPolicy(ns string) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	user := "system:serviceaccount:" + ns + ":" + MemberPrefix
	label := v1.ClusterIDLabel
	source := mcsv1beta1.LabelSourceCluster
	ownerOf := func(obj string) string {
		return fmt.Sprintf("(has(%[1]s.metadata.labels) && '%[2]s' in %[1]s.metadata.labels ? %[1]s.metadata.labels['%[2]s'] : '')", obj, label)
	}
	var rules []admissionv1.NamedRuleWithOperations
	for _, r := range SyncedResources {
		rules = append(rules, admissionv1.NamedRuleWithOperations{RuleWithOperations: admissionv1.RuleWithOperations{
			Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete},
			Rule:       admissionv1.Rule{APIGroups: []string{r.Group}, APIVersions: []string{"*"}, Resources: []string{r.Resource}},
		}})
	}
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: PolicyName(ns), Labels: map[string]string{"app.kubernetes.io/part-of": "strait"}},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: rules},
			MatchConditions: []admissionv1.MatchCondition{{
				Name:       "member-credential",
				Expression: fmt.Sprintf("request.userInfo.username.startsWith('%s')", user),
			}},
			Variables: []admissionv1.Variable{
				{Name: "cluster", Expression: fmt.Sprintf("request.userInfo.username.substring(%d)", len(user))},
				{Name: "newOwner", Expression: "request.operation == 'DELETE' ? '' : " + ownerOf("object")},
				{Name: "oldOwner", Expression: "request.operation == 'CREATE' ? '' : " + ownerOf("oldObject")},
				// The cluster whose namespace of names object's name is in:
				// a Cluster is named by its cluster ID, an Endpoint
				// "<cluster ID>.<node>" (a cluster ID has no dots), an export
				// record "<service>.<namespace>.<cluster ID>[.<slice>]"
				// (service names and namespaces have none either). So no
				// member can take, under its own label, a name another
				// member will write.
				{Name: "nameOwner", Expression: `request.operation == 'DELETE' ? '' :
					request.resource.resource == 'clusters' ? object.metadata.name :
					request.resource.resource == 'endpoints' ? object.metadata.name.split('.')[0] :
					object.metadata.name.split('.').size() >= 3 ? object.metadata.name.split('.')[2] : ''`},
				{Name: "nameRule", Expression: `request.resource.resource == 'clusters' ? 'a Cluster is named by its cluster ID' :
					request.resource.resource == 'endpoints' ? 'an Endpoint is named <cluster ID>.<node>' :
					'an export record is named <service>.<namespace>.<cluster ID>[.<slice>]'`},
			},
			Validations: []admissionv1.Validation{
				{
					Expression:        "request.operation == 'DELETE' || variables.newOwner == variables.cluster",
					MessageExpression: fmt.Sprintf("'cluster ' + variables.cluster + ' may only write objects labelled %s=' + variables.cluster + ', not ' + (variables.newOwner == '' ? 'unlabelled ones' : variables.newOwner + ' ones')", label),
					Reason:            ptr.To(metav1.StatusReasonForbidden),
				},
				{
					Expression:        "request.operation == 'CREATE' || variables.oldOwner == variables.cluster",
					MessageExpression: "'cluster ' + variables.cluster + ' may not change or delete an object owned by ' + (variables.oldOwner == '' ? 'no cluster' : 'cluster ' + variables.oldOwner)",
					Reason:            ptr.To(metav1.StatusReasonForbidden),
				},
				{
					Expression:        "request.operation == 'DELETE' || !has(object.spec) || !has(object.spec.clusterID) || object.spec.clusterID == variables.cluster",
					MessageExpression: "'cluster ' + variables.cluster + ' may not publish records for cluster ' + string(object.spec.clusterID)",
					Reason:            ptr.To(metav1.StatusReasonForbidden),
				},
				{
					Expression:        "request.operation == 'DELETE' || variables.nameOwner == variables.cluster",
					MessageExpression: "'cluster ' + variables.cluster + ' may not write ' + request.resource.resource + ' ' + object.metadata.name + ', a name of ' + (variables.nameOwner == '' ? 'no cluster' : 'cluster ' + variables.nameOwner) + ': ' + variables.nameRule",
					Reason:            ptr.To(metav1.StatusReasonForbidden),
				},
				{
					Expression:        fmt.Sprintf("request.operation == 'DELETE' || !has(object.metadata.labels) || !('%[1]s' in object.metadata.labels) || object.metadata.labels['%[1]s'] == variables.cluster", source),
					MessageExpression: fmt.Sprintf(`'cluster ' + variables.cluster + ' may only label its records %[1]s=' + variables.cluster + ", not '" + object.metadata.labels['%[1]s'] + "'"`, source),
					Reason:            ptr.To(metav1.StatusReasonForbidden),
				},
			},
		},
	}
	return policy, policyBinding(PolicyName(ns), ns)
}

// policyBinding binds the admission policy name, denying, to the broker
// namespace ns only.
func policyBinding(name, ns string) *admissionv1.ValidatingAdmissionPolicyBinding {
	return &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "strait"}},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns},
			}},
		},
	}
}

// meta is the metadata of a broker object: its name, its namespace and
// Strait's part-of label.
func meta(name, ns string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "strait"}}
}

// requestToken requests a token for the service account ns/sa through the
// TokenRequest API, valid for credentialLifetime (or less, as the apiserver
// decides).
func requestToken(ctx context.Context, cs kubernetes.Interface, ns, sa string) (string, error) {
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(credentialLifetime.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", ns, sa, err)
	}
	return tr.Status.Token, nil
}
