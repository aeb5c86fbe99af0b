package member_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/test/helmtest"
	"strait.dev/strait/test/kubetest"
)

// enrolOnlyBroker is a broker on an apiserver of its own.
func enrolOnlyBroker(t *testing.T) (*kubetest.Env, *broker.Info) {
	t.Helper()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(context.Background(), brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	return brokerEnv, info
}

// atTheBroker lists what the broker holds of clusterID (broker.Remaining).
func atTheBroker(t *testing.T, brokerEnv *kubetest.Env) []string {
	t.Helper()
	left, err := broker.Remaining(context.Background(), brokerEnv.Config, v1.BrokerNamespace, clusterID)
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// EnrolOnly enrols the cluster, writes the namespace and the broker
// credential and labels the gateway nodes, and nothing else: no CRD, no
// object of the chart. It returns the values Join renders the chart with.
// Again, it changes nothing and keeps the token and the global CIDR. Leave
// removes the enrolment of such a cluster, chart or no chart.
func TestEnrolOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv, info := enrolOnlyBroker(t)
	env, c := memberCluster(t) // node n1
	for _, n := range []string{"n2", "n3"} {
		if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	opts := joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")
	opts.GatewayNodes = []string{"n2", "n1"}
	opts.Globalnet, opts.GlobalCIDRSize = true, 4096
	opts.UnderlayMTU = 1400

	before := snapshot(t, env.Config)
	values, err := member.EnrolOnly(ctx, env.Config, info, opts)
	if err != nil {
		t.Fatalf("enrol only: %v", err)
	}
	want := manifests.GatewayValues{
		Namespace: v1.ComponentNamespace, ClusterID: clusterID, PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
		CableDriver: "vxlan", GlobalCIDR: "242.0.0.0/20", UnderlayMTU: "1400", ImageRepository: "strait", ImageTag: "devel",
		BrokerSecretName: broker.SecretName,
	}
	if values != want {
		t.Errorf("values %+v, want %+v", values, want)
	}
	after := snapshot(t, env.Config)
	wantChanges := []string{
		"added namespaces. /" + v1.ComponentNamespace,
		"added secrets. " + v1.ComponentNamespace + "/" + broker.SecretName,
		"changed nodes. /n1",
		"changed nodes. /n2",
	}
	if got := changes(before, after); !slices.Equal(got, wantChanges) {
		t.Errorf("enrol only changed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantChanges, "\n"))
	}
	assertGatewayLabels(t, c, "n1", "n2")
	creds := memberCredential(t, env.Config)
	if creds.Info.APIServer != info.APIServer || creds.Info.Namespace != info.Namespace || creds.Token == "" {
		t.Errorf("broker credential %s, namespace %s, token set %v; want the join file's broker and a token",
			creds.Info.APIServer, creds.Info.Namespace, creds.Token != "")
	}
	if left := atTheBroker(t, brokerEnv); !slices.Contains(left, "serviceaccounts/"+broker.MemberPrefix+clusterID) {
		t.Errorf("the broker holds %v of %s, want its member service account", left, clusterID)
	}

	t.Run("again, nothing changes", func(t *testing.T) {
		again, err := member.EnrolOnly(ctx, env.Config, info, opts)
		if err != nil {
			t.Fatalf("enrol only again: %v", err)
		}
		if again != values {
			t.Errorf("values %+v the second time, %+v the first", again, values)
		}
		if got := changes(after, snapshot(t, env.Config)); len(got) > 0 {
			t.Errorf("enrol only again changed\n%s", strings.Join(got, "\n"))
		}
		if token := memberCredential(t, env.Config).Token; token != creds.Token {
			t.Error("enrol only again changed the member's broker token")
		}
	})

	t.Run("leave without the chart", func(t *testing.T) {
		if err := member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}); err != nil {
			t.Fatalf("leave: %v", err)
		}
		if left := atTheBroker(t, brokerEnv); len(left) > 0 {
			t.Errorf("the broker still holds %v of %s", left, clusterID)
		}
		if err := c.Get(ctx, client.ObjectKey{Name: v1.ComponentNamespace}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s after leave: %v, want not found", v1.ComponentNamespace, err)
		}
		assertGatewayLabels(t, c)
		if err := member.Leave(ctx, env.Config, member.LeaveOptions{}); err == nil || !strings.Contains(err.Error(), "has not joined") {
			t.Errorf("leave again: %v, want not joined", err)
		}
	})
}

// A failure after the enrolment undoes it; a kubeconfig without the rights
// enrol-only needs fails before the broker. The rights asked for are
// enrol-only's: a user who may write the namespace, the Secret and the node
// labels, and not CRDs or CoreDNS's ConfigMap, may enrol.
func TestEnrolOnlyFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv, info := enrolOnlyBroker(t)
	env, c := memberCluster(t)
	opts := joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")

	t.Run("missing rights", func(t *testing.T) {
		for _, o := range []client.Object{
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "read-all"}, Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-all"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "read-all"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "reader"}}},
		} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		reader, err := env.UserConfig("reader")
		if err != nil {
			t.Fatal(err)
		}
		_, err = member.EnrolOnly(ctx, reader, info, opts)
		if err == nil {
			t.Fatal("enrol only with read-only rights succeeded")
		}
		for _, want := range []string{"missing rights", "create secrets in " + v1.ComponentNamespace, "create namespaces", "patch nodes"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		for _, notWanted := range []string{"customresourcedefinitions", "configmaps", "daemonsets"} {
			if strings.Contains(err.Error(), notWanted) {
				t.Errorf("error %q asks for %s, which enrol only does not write", err, notWanted)
			}
		}
		if left := atTheBroker(t, brokerEnv); len(left) > 0 {
			t.Errorf("the broker holds %v of %s after the refused enrolment", left, clusterID)
		}
	})

	t.Run("the credential cannot be written", func(t *testing.T) {
		// An admission policy refuses the broker credential Secret: RBAC
		// allows it, so only writing it fails, after the enrolment.
		policy := &admissionv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "no-broker-secret"},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionv1.Fail),
				MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"*"}, Resources: []string{"secrets"}},
				}}}},
				Validations: []admissionv1.Validation{{Expression: "object.metadata.name != '" + broker.SecretName + "'", Message: "no broker Secret here"}},
			},
		}
		binding := &admissionv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "no-broker-secret"},
			Spec:       admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "no-broker-secret", ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
		}
		for _, o := range []client.Object{policy, binding} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: broker.SecretName, Namespace: metav1.NamespaceDefault}}
		poll(t, "the policy to refuse the broker Secret", func(ctx context.Context) (bool, error) {
			err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
			return err != nil && strings.Contains(err.Error(), "no broker Secret here"), nil
		})
		_, err := member.EnrolOnly(ctx, env.Config, info, opts)
		if err == nil || !strings.Contains(err.Error(), "no broker Secret here") {
			t.Fatalf("enrol only: %v, want the policy's refusal", err)
		}
		if left := atTheBroker(t, brokerEnv); len(left) > 0 {
			t.Errorf("the broker holds %v of %s after the failed enrol only, want its enrolment undone", left, clusterID)
		}
	})
}

// A cluster enrolled with EnrolOnly and installed with helm install -f the
// values it printed is a member Leave removes: Leave deletes what the chart
// installed (read back from the cluster, as for a joined cluster), the
// enrolment at the broker, the labels and the namespace, and no user's
// object.
func TestEnrolOnlyHelmInstallLeave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv, info := enrolOnlyBroker(t)
	env, c := memberCluster(t)
	// A user's objects, which leave must not touch.
	userObjs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "settings"}},
	}
	for _, o := range userObjs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	values, err := member.EnrolOnly(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16"))
	if err != nil {
		t.Fatalf("enrol only: %v", err)
	}
	vals, err := values.Values()
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	helmtest.Run(t, "install", manifests.ReleaseName, helmtest.ChartDir(), "--kubeconfig", env.Kubeconfig,
		"--namespace", v1.ComponentNamespace, "-f", valuesFile)

	// helm installed what join would have: the gateway with these values.
	ds := &appsv1.DaemonSet{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, ds); err != nil {
		t.Fatalf("the gateway DaemonSet after helm install: %v", err)
	}
	if got, err := manifests.ReadValues(ds); err != nil || got.ClusterID != clusterID || got.CableDriver != "vxlan" {
		t.Errorf("gateway values after helm install: %+v (%v)", got, err)
	}
	// A ServiceExport of the user's, in a CRD helm installed.
	export := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"}}
	if err := c.Create(ctx, export); err != nil {
		t.Fatal(err)
	}
	userObjs = append(userObjs, export)

	if err := member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if left := atTheBroker(t, brokerEnv); len(left) > 0 {
		t.Errorf("the broker still holds %v of %s", left, clusterID)
	}
	for _, gone := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: lighthouseName}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(gone), gone); !apierrors.IsNotFound(err) {
			t.Errorf("%T %s after leave: %v, want not found", gone, gone.GetName(), err)
		}
	}
	if crdExists(t, env.Config, "clusters.strait.dev") {
		t.Error("CRD clusters.strait.dev, which helm installed, is left after leave")
	}
	assertGatewayLabels(t, c)
	assertExist(t, c, userObjs, "after leave")
}
