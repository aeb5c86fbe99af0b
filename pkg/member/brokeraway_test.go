package member_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/crds"
	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/test/kubetest"
)

// joinOptions are the options of a join of cluster id with node n1 as its
// gateway.
func joinOptions(t *testing.T, id, pods, services string) member.JoinOptions {
	return member.JoinOptions{
		ClusterID: id, CableDriver: v1.CableDriverVXLAN, GatewayNodes: []string{"n1"},
		PodCIDRs:        []netip.Prefix{netip.MustParsePrefix(pods)},
		ServiceCIDRs:    []netip.Prefix{netip.MustParsePrefix(services)},
		ImageRepository: "strait", ImageTag: "devel",
		Log: t.Logf,
	}
}

// memberCluster starts a member cluster with node n1 and the controllers
// leave relies on.
func memberCluster(t *testing.T) (*kubetest.Env, client.Client) {
	t.Helper()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	startControllers(t, env)
	c := newClient(t, env.Config)
	if err := c.Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	return env, c
}

// brokerEndpoint is an Endpoint record of cluster id at the broker, as its
// gateway publishes it.
func brokerEndpoint(ns, id string) *v1.Endpoint {
	return &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: id + "-gw", Namespace: ns, Labels: map[string]string{v1.ClusterIDLabel: id}},
		Spec: v1.EndpointSpec{
			ClusterID: v1.ClusterID(id), Hostname: id + "-gw", PrivateIPs: v1.DualStackIPs{"192.168.1.11"},
			Subnets: []v1.CIDR{"10.1.0.0/16"}, CableDriver: v1.CableDriverVXLAN, VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800},
		},
	}
}

// brokerCluster is a Cluster record of cluster id at the broker.
func brokerCluster(ns, id string) *v1.Cluster {
	return &v1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: ns, Labels: map[string]string{v1.ClusterIDLabel: id}},
		Spec:       v1.ClusterSpec{ClusterID: v1.ClusterID(id), PodCIDRs: []v1.CIDR{"10.2.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.102.0.0/16"}},
	}
}

// memberCredential is the member's own broker credential, as join stored it.
func memberCredential(t *testing.T, cfg *rest.Config) *broker.Credentials {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := broker.ReadCredentials(context.Background(), cs, v1.ComponentNamespace, broker.SecretName)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// crdExists reports whether the cluster has the CRD called name.
func crdExists(t *testing.T, cfg *rest.Config, name string) bool {
	t.Helper()
	_, err := apiextclient.NewForConfigOrDie(cfg).ApiextensionsV1().CustomResourceDefinitions().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// A cluster hosting a broker in a namespace of any name keeps the CRDs and
// every member's records when it leaves that broker: what deploy-broker
// recorded says it hosts one.
func TestLeaveKeepsABrokerOfAnyNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env, c := memberCluster(t)
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{Namespace: "other"})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	// Another member, c2, with its records at the broker.
	if _, err := broker.Enroll(ctx, info, broker.Member{ClusterID: "c2", ClusterUID: "uid-2",
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.102.0.0/16")}}); err != nil {
		t.Fatal(err)
	}
	records := []client.Object{brokerEndpoint("other", "c2"), brokerCluster("other", "c2")}
	for _, o := range records {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")); err != nil {
		t.Fatalf("join: %v", err)
	}
	if err := member.Leave(ctx, env.Config, member.LeaveOptions{Log: t.Logf}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range all {
		if !crdExists(t, env.Config, crd.Name) {
			t.Errorf("CRD %s went with the leave of the broker's own cluster", crd.Name)
		}
	}
	assertExist(t, c, records, "with the leave of the broker's own cluster")
	if err := c.Get(ctx, client.ObjectKey{Namespace: "other", Name: broker.MemberPrefix + "c2"}, &corev1.ServiceAccount{}); err != nil {
		t.Errorf("c2's enrolment: %v", err)
	}
}

// Leave keeps the CRDs that hold users' objects or may be someone else's
// (the MCS API's, about.k8s.io's), even empty and even when someone else
// installed them before join, and says so; --purge removes them with their
// objects.
func TestLeaveKeepsSharedCRDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	env, c := memberCluster(t)
	// Someone else installed the MCS API before Strait.
	all, err := crds.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range all {
		if crd.Spec.Group == mcsv1beta1.GroupName {
			_, err := apiextclient.NewForConfigOrDie(env.Config).ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{FieldManager: "someone-else"})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")); err != nil {
		t.Fatalf("join: %v", err)
	}
	var lines []string
	if err := member.Leave(ctx, env.Config, member.LeaveOptions{Log: func(format string, a ...any) {
		t.Logf(format, a...)
		lines = append(lines, fmt.Sprintf(format, a...))
	}}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	kept := []string{"clusterproperties.about.k8s.io", "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"}
	for _, name := range kept {
		if !crdExists(t, env.Config, name) {
			t.Errorf("leave removed CRD %s", name)
		}
		if !strings.Contains(strings.Join(lines, "\n"), name) {
			t.Errorf("leave did not say it kept CRD %s:\n%s", name, strings.Join(lines, "\n"))
		}
	}
	for _, name := range []string{"clusters.strait.dev", "endpoints.strait.dev", "gateways.strait.dev"} {
		if crdExists(t, env.Config, name) {
			t.Errorf("CRD %s stayed", name)
		}
	}

	t.Run("purge removes them with the users' objects", func(t *testing.T) {
		if err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")); err != nil {
			t.Fatalf("join: %v", err)
		}
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "app"}}); err != nil {
			t.Fatal(err)
		}
		if err := member.Leave(ctx, env.Config, member.LeaveOptions{Purge: true, Log: t.Logf}); err != nil {
			t.Fatalf("leave --purge: %v", err)
		}
		for _, crd := range all {
			if crdExists(t, env.Config, crd.Name) {
				t.Errorf("CRD %s stayed after leave --purge", crd.Name)
			}
		}
	})
}

// Leave with the broker frozen (its apiserver stopped with SIGSTOP: the
// connection is accepted and never answered) finishes in the member cluster,
// reports the records it left at the broker, keeps the credential, and a
// later leave removes them; with the credential revoked it keeps nothing and
// cleanup-broker's library removes the records at the broker side.
func TestLeaveWithTheBrokerAway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	bc := newClient(t, brokerEnv.Config)
	env, c := memberCluster(t)
	if err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")); err != nil {
		t.Fatalf("join: %v", err)
	}
	// c1's records at the broker, as its gateway would publish them.
	mine := []client.Object{brokerEndpoint(v1.BrokerNamespace, clusterID), brokerCluster(v1.BrokerNamespace, clusterID)}
	for _, o := range mine {
		if err := bc.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("join with another broker's file is refused, naming both", func(t *testing.T) {
		other, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{Namespace: "other"})
		if err != nil {
			t.Fatal(err)
		}
		err = member.Join(ctx, env.Config, other, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16"))
		if err == nil {
			t.Fatal("join with another broker's file succeeded")
		}
		for _, want := range []string{info.APIServer + " (namespace " + v1.BrokerNamespace + ")", "(namespace other)", "straitctl leave first"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if enrolled, err := broker.Enrolled(ctx, other, clusterID); err != nil || enrolled {
			t.Errorf("the other broker enrolled %s: %v %v", clusterID, enrolled, err)
		}
		if got := memberCredential(t, env.Config); got.Info.Namespace != v1.BrokerNamespace {
			t.Errorf("the cluster's broker credential moved to namespace %s", got.Info.Namespace)
		}
	})

	pid := brokerEnv.PIDs()[len(brokerEnv.PIDs())-1] // kube-apiserver starts after etcd
	frozen := false
	freeze := func() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen = true
	}
	thaw := func() {
		// Only while frozen: a later restart gives the apiserver another
		// process ID.
		if frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			frozen = false
		}
	}
	t.Cleanup(thaw)
	// Only a hang guard: leave must end long before it.
	guard, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	opts := member.LeaveOptions{BrokerTimeout: 5 * time.Second, Log: t.Logf}

	t.Run("leave with the broker frozen finishes in the cluster and reports the broker's records", func(t *testing.T) {
		freeze()
		err := member.Leave(guard, env.Config, opts)
		var be *member.BrokerRecordsError
		if !errors.As(err, &be) {
			t.Fatalf("leave with the broker frozen: %v, want a BrokerRecordsError", err)
		}
		if !be.Kept {
			t.Errorf("the credential was not kept for a retry")
		}
		for _, want := range []string{"cluster " + clusterID, info.APIServer, "straitctl cleanup-broker --kubeconfig", "--namespace " + v1.BrokerNamespace + " --clusterid " + clusterID} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is more than one line: %q", err)
		}
		assertGone(t, c, []client.Object{
			&aboutv1beta1.ClusterProperty{ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterIDPropertyName}},
			&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}},
		})
		if crdExists(t, env.Config, "endpoints.strait.dev") {
			t.Error("CRD endpoints.strait.dev stayed")
		}
		// The credential alone stays, for the next leave.
		var secrets corev1.SecretList
		if err := c.List(ctx, &secrets, client.InNamespace(v1.ComponentNamespace)); err != nil {
			t.Fatal(err)
		}
		if len(secrets.Items) != 1 || secrets.Items[0].Name != broker.SecretName {
			t.Errorf("secrets in %s after leave: %v, want only %s", v1.ComponentNamespace, secrets.Items, broker.SecretName)
		}
	})

	t.Run("leaving again with the broker still frozen finishes too", func(t *testing.T) {
		err := member.Leave(guard, env.Config, opts)
		var be *member.BrokerRecordsError
		if !errors.As(err, &be) || !be.Kept {
			t.Fatalf("leave again: %v, want a BrokerRecordsError keeping the credential", err)
		}
	})

	thaw()
	assertExist(t, bc, mine, "while the broker was frozen")

	t.Run("leaving again with the broker back removes the records and the credential", func(t *testing.T) {
		if err := member.Leave(guard, env.Config, opts); err != nil {
			t.Fatalf("leave with the broker back: %v", err)
		}
		assertGone(t, bc, mine)
		if enrolled, err := broker.Enrolled(ctx, info, clusterID); err != nil || enrolled {
			t.Errorf("the broker still enrols %s: %v %v", clusterID, enrolled, err)
		}
		assertGone(t, c, []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}})
		if err := member.Leave(guard, env.Config, opts); err == nil || !strings.Contains(err.Error(), "has not joined") {
			t.Errorf("leave after everything went: %v, want has not joined", err)
		}
	})

	t.Run("with the credential revoked leave keeps nothing, and cleanup-broker removes the records", func(t *testing.T) {
		if err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")); err != nil {
			t.Fatalf("join: %v", err)
		}
		for _, o := range []client.Object{brokerEndpoint(v1.BrokerNamespace, clusterID), brokerCluster(v1.BrokerNamespace, clusterID)} {
			if err := bc.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		// The broker's admin revokes the member's credential (its service
		// account), and the apiserver's token cache lets go of it.
		if err := bc.Delete(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: v1.BrokerNamespace, Name: broker.MemberPrefix + clusterID}}); err != nil {
			t.Fatal(err)
		}
		creds := memberCredential(t, env.Config)
		mc, err := kubernetes.NewForConfig(creds.Info.RESTConfig(creds.Token))
		if err != nil {
			t.Fatal(err)
		}
		poll(t, "the revoked token to be refused", func(ctx context.Context) (bool, error) {
			_, err := mc.CoreV1().ServiceAccounts(v1.BrokerNamespace).Get(ctx, broker.MemberPrefix+clusterID, metav1.GetOptions{})
			return apierrors.IsUnauthorized(err), nil
		})
		err = member.Leave(guard, env.Config, opts)
		var be *member.BrokerRecordsError
		if !errors.As(err, &be) || be.Kept {
			t.Fatalf("leave with a revoked credential: %v, want a BrokerRecordsError keeping nothing", err)
		}
		assertGone(t, c, []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}})
		left, err := broker.Remaining(ctx, brokerEnv.Config, v1.BrokerNamespace, clusterID)
		if err != nil || len(left) == 0 {
			t.Fatalf("records left at the broker: %v %v, want c1's Endpoint and Cluster", left, err)
		}
		if err := broker.Unenroll(ctx, brokerEnv.Config, v1.BrokerNamespace, clusterID); err != nil {
			t.Fatalf("cleanup-broker: %v", err)
		}
		if left, err := broker.Remaining(ctx, brokerEnv.Config, v1.BrokerNamespace, clusterID); err != nil || len(left) > 0 {
			t.Errorf("records left after cleanup-broker: %v %v", left, err)
		}
	})

	t.Run("with the broker's apiserver gone leave keeps the credential, and a later leave finishes the job", func(t *testing.T) {
		if err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16")); err != nil {
			t.Fatalf("join: %v", err)
		}
		if err := bc.Create(ctx, brokerEndpoint(v1.BrokerNamespace, clusterID)); err != nil {
			t.Fatal(err)
		}
		brokerEnv.StopAPIServer()
		err := member.Leave(guard, env.Config, opts)
		var be *member.BrokerRecordsError
		if !errors.As(err, &be) || !be.Kept {
			t.Fatalf("leave with the broker gone: %v, want a BrokerRecordsError keeping the credential", err)
		}
		if err := brokerEnv.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		if err := member.Leave(guard, env.Config, opts); err != nil {
			t.Fatalf("leave with the broker back: %v", err)
		}
		if left, err := broker.Remaining(ctx, brokerEnv.Config, v1.BrokerNamespace, clusterID); err != nil || len(left) > 0 {
			t.Errorf("records left at the broker: %v %v", left, err)
		}
	})
}

// A join whose kubeconfig lacks rights in the member cluster fails before it
// touches the broker; a join that fails after enrolling undoes its
// enrolment.
func TestFailedJoinLeavesNoEnrolment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	bc := newClient(t, brokerEnv.Config)
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	c := newClient(t, env.Config)
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	nothingAtTheBroker := func(t *testing.T) {
		t.Helper()
		for _, list := range []client.ObjectList{&corev1.ServiceAccountList{}, &rbacv1.RoleList{}, &rbacv1.RoleBindingList{}} {
			if err := bc.List(ctx, list, client.InNamespace(v1.BrokerNamespace)); err != nil {
				t.Fatal(err)
			}
			items, err := meta.ExtractList(list)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				o := it.(client.Object)
				if strings.HasPrefix(o.GetName(), broker.MemberPrefix) {
					t.Errorf("the broker holds %T %s after the failed join", o, o.GetName())
				}
			}
		}
		if left, err := broker.Remaining(ctx, brokerEnv.Config, v1.BrokerNamespace, clusterID); err != nil || len(left) > 0 {
			t.Errorf("the broker holds %v of %s after the failed join (%v)", left, clusterID, err)
		}
	}

	t.Run("a kubeconfig that may only read", func(t *testing.T) {
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
		err = member.Join(ctx, reader, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16"))
		if err == nil {
			t.Fatal("join with read-only rights succeeded")
		}
		for _, want := range []string{"missing rights", "create customresourcedefinitions.apiextensions.k8s.io", "patch nodes", "create daemonsets.apps in " + v1.ComponentNamespace} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		nothingAtTheBroker(t)
	})

	t.Run("a step after the enrolment fails", func(t *testing.T) {
		// An admission policy refuses Strait's DaemonSets: RBAC allows
		// them, so only applying them fails.
		policy := &admissionv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "no-daemonsets"},
			Spec: admissionv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionv1.Fail),
				MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"*"}, Resources: []string{"daemonsets"}},
				}}}},
				Validations: []admissionv1.Validation{{Expression: "object.metadata.namespace != '" + v1.ComponentNamespace + "'", Message: "no DaemonSets here"}},
			},
		}
		binding := &admissionv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "no-daemonsets"},
			Spec:       admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "no-daemonsets", ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
		}
		for _, o := range []client.Object{policy, binding, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		probe := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: v1.ComponentNamespace},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}},
			},
		}
		poll(t, "the policy to refuse DaemonSets", func(ctx context.Context) (bool, error) {
			err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
			return err != nil && strings.Contains(err.Error(), "no DaemonSets here"), nil
		})
		err := member.Join(ctx, env.Config, info, joinOptions(t, clusterID, "10.1.0.0/16", "10.101.0.0/16"))
		if err == nil || !strings.Contains(err.Error(), "no DaemonSets here") {
			t.Fatalf("join: %v, want the policy's refusal", err)
		}
		nothingAtTheBroker(t)
	})
}
