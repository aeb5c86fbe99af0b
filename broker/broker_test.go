package broker_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// These tests run against a real kube-apiserver: RBAC and the
// ValidatingAdmissionPolicy are what is under test.

func newClient(t *testing.T, info *broker.Info, token string) client.Client {
	t.Helper()
	c, err := client.New(info.RESTConfig(token), client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func endpoint(name, owner, clusterID string) *v1.Endpoint {
	return &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.BrokerNamespace, Labels: map[string]string{v1.ClusterIDLabel: owner}},
		Spec: v1.EndpointSpec{
			ClusterID: v1.ClusterID(clusterID), Hostname: name, PrivateIPs: v1.DualStackIPs{"192.168.1.11"},
			Subnets: []v1.CIDR{"10.1.0.0/16"}, CableDriver: v1.CableDriverVXLAN, VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800},
		},
	}
}

// exportRecords are a ServiceImport and an EndpointSlice as Lighthouse
// publishes them for Service demo/web, labelled with owner's cluster ID and,
// unless source is "", with source as the MCS source cluster.
func exportRecords(owner, source string) []client.Object {
	labels := func() map[string]string {
		l := map[string]string{v1.ClusterIDLabel: owner}
		if source != "" {
			l[mcsv1beta1.LabelSourceCluster] = source
		}
		return l
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: v1.BrokerNamespace, Labels: labels()}
	}
	return []client.Object{
		&mcsv1beta1.ServiceImport{
			ObjectMeta: meta("web.demo." + owner),
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP,
				Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  meta("web.demo." + owner + ".0a1b2c3d"),
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
		},
	}
}

func member(id, uid, pods, services string) broker.Member {
	return broker.Member{ClusterID: id, ClusterUID: uid,
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix(pods)}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix(services)}}
}

func TestDeployEnrollAndIsolation(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx := context.Background()

	first, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	// Deploying again works, and only mints a new enrolment token.
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy again: %v", err)
	}
	if info.APIServer != first.APIServer || info.Namespace != first.Namespace || string(info.CABundle) != string(first.CABundle) {
		t.Errorf("second deploy changed the join file beyond its token: %+v vs %+v", info, first)
	}

	// The join file round-trips, with mode 0600.
	path := filepath.Join(t.TempDir(), "broker-info.strait")
	if err := broker.WriteInfo(path, info); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("broker info mode %v, want 0600", st.Mode().Perm())
	}
	if info, err = broker.ReadInfo(path); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.ReadInfo(filepath.Join("testdata", "nonexistent")); err == nil {
		t.Error("reading a missing file succeeded")
	}

	c1Token, err := broker.Enroll(ctx, info, member("c1", "uid-1", "10.1.0.0/16", "10.101.0.0/16"))
	if err != nil {
		t.Fatalf("enroll c1: %v", err)
	}
	c2Token, err := broker.Enroll(ctx, info, member("c2", "uid-2", "10.2.0.0/16", "10.102.0.0/16"))
	if err != nil {
		t.Fatalf("enroll c2: %v", err)
	}
	c1, c2 := newClient(t, info, c1Token), newClient(t, info, c2Token)

	t.Run("members write their own objects", func(t *testing.T) {
		if err := c1.Create(ctx, endpoint("c1.gw", "c1", "c1")); err != nil {
			t.Fatalf("c1 creates its Endpoint: %v", err)
		}
		if err := c2.Create(ctx, endpoint("c2.gw", "c2", "c2")); err != nil {
			t.Fatalf("c2 creates its Endpoint: %v", err)
		}
		own := &v1.Endpoint{}
		if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.BrokerNamespace, Name: "c1.gw"}, own); err != nil {
			t.Fatal(err)
		}
		own.Spec.Hostname = "c1-n2"
		if err := c1.Update(ctx, own); err != nil {
			t.Fatalf("c1 updates its Endpoint: %v", err)
		}
		// Members read everyone's records: that is how they find each other.
		var list v1.EndpointList
		if err := c1.List(ctx, &list, client.InNamespace(v1.BrokerNamespace)); err != nil || len(list.Items) != 2 {
			t.Fatalf("c1 lists endpoints: %d, %v", len(list.Items), err)
		}
	})

	forbidden := func(t *testing.T, err error, fragment string) {
		t.Helper()
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Fatalf("want the write denied, got %v", err)
		}
		if !strings.Contains(err.Error(), fragment) {
			t.Errorf("denial %q does not say %q", err, fragment)
		}
		t.Logf("denied: %v", err)
	}
	t.Run("c1 cannot create c2's objects", func(t *testing.T) {
		forbidden(t, c1.Create(ctx, endpoint("fake-c2", "c2", "c2")), "cluster c1 may only write objects labelled strait.dev/cluster-id=c1")
	})
	t.Run("c1 cannot create unlabelled objects", func(t *testing.T) {
		e := endpoint("unlabelled", "c1", "c1")
		e.Labels = nil
		forbidden(t, c1.Create(ctx, e), "not unlabelled ones")
	})
	t.Run("c1 cannot claim c2's cluster ID under its own label", func(t *testing.T) {
		forbidden(t, c1.Create(ctx, endpoint("c1.claim", "c1", "c2")), "may not publish records for cluster c2")
	})
	t.Run("c1 cannot take names of c2's under its own label", func(t *testing.T) {
		// c2's standby gateway gw2 will publish c2.gw2.
		forbidden(t, c1.Create(ctx, endpoint("c2.gw2", "c1", "c1")), "cluster c1 may not write endpoints c2.gw2, a name of cluster c2: an Endpoint is named <cluster ID>.<node>")
		forbidden(t, c1.Create(ctx, endpoint("c2-gw2", "c1", "c1")), "a name of cluster c2-gw2")
		forbidden(t, c1.Create(ctx, endpoint("gw2", "c1", "c1")), "a name of cluster gw2")
		cluster := &v1.Cluster{
			ObjectMeta: metav1.ObjectMeta{Name: "c2", Namespace: v1.BrokerNamespace, Labels: map[string]string{v1.ClusterIDLabel: "c1"}},
			Spec:       v1.ClusterSpec{ClusterID: "c1", PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"}},
		}
		// The CRD itself ties a Cluster's name to its cluster ID, which the
		// policy ties to the writer.
		forbidden(t, c1.Create(ctx, cluster), "metadata.name must equal spec.clusterID")
		for _, obj := range exportRecords("c1", "c1") {
			obj.SetName(strings.Replace(obj.GetName(), ".c1", ".c2", 1))
			forbidden(t, c1.Create(ctx, obj), "a name of cluster c2: an export record is named <service>.<namespace>.<cluster ID>[.<slice>]")
		}
		cluster.Name = "c1"
		if err := c1.Create(ctx, cluster); err != nil {
			t.Fatalf("c1 creates its own Cluster: %v", err)
		}
	})
	t.Run("c1 cannot update c2's objects", func(t *testing.T) {
		theirs := &v1.Endpoint{}
		if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.BrokerNamespace, Name: "c2.gw"}, theirs); err != nil {
			t.Fatal(err)
		}
		theirs.Spec.Hostname = "hijacked"
		forbidden(t, c1.Update(ctx, theirs), "c2")
	})
	t.Run("c1 cannot relabel c2's object as its own", func(t *testing.T) {
		theirs := &v1.Endpoint{}
		if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.BrokerNamespace, Name: "c2.gw"}, theirs); err != nil {
			t.Fatal(err)
		}
		theirs.Labels[v1.ClusterIDLabel] = "c1"
		theirs.Spec.ClusterID = "c1"
		forbidden(t, c1.Update(ctx, theirs), "owned by cluster c2")
	})
	t.Run("c1 cannot hand its object to c2", func(t *testing.T) {
		own := &v1.Endpoint{}
		if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.BrokerNamespace, Name: "c1.gw"}, own); err != nil {
			t.Fatal(err)
		}
		own.Labels[v1.ClusterIDLabel] = "c2"
		forbidden(t, c1.Update(ctx, own), "may only write objects labelled strait.dev/cluster-id=c1")
	})
	t.Run("c1 cannot delete c2's objects", func(t *testing.T) {
		forbidden(t, c1.Delete(ctx, endpoint("c2.gw", "c2", "c2")), "owned by cluster c2")
	})
	t.Run("c1 cannot publish records labelled with another source cluster", func(t *testing.T) {
		for _, obj := range exportRecords("c1", "c2") {
			forbidden(t, c1.Create(ctx, obj), "cluster c1 may only label its records multicluster.kubernetes.io/source-cluster=c1, not 'c2'")
		}
	})
	t.Run("c1 publishes records of its own source cluster", func(t *testing.T) {
		for _, obj := range exportRecords("c1", "c1") {
			if err := c1.Create(ctx, obj); err != nil {
				t.Fatalf("c1 creates %T %s: %v", obj, obj.GetName(), err)
			}
		}
		// Without the MCS label (a ServiceImport needs none) is fine too.
		for _, obj := range exportRecords("c1", "") {
			obj.SetName("unlabelled-" + obj.GetName())
			if err := c1.Create(ctx, obj); err != nil {
				t.Fatalf("c1 creates %T %s: %v", obj, obj.GetName(), err)
			}
		}
	})
	t.Run("c1 cannot relabel its records to another source cluster", func(t *testing.T) {
		for _, obj := range exportRecords("c1", "c1") {
			if err := c1.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				t.Fatal(err)
			}
			obj.GetLabels()[mcsv1beta1.LabelSourceCluster] = "c2"
			forbidden(t, c1.Update(ctx, obj), "may only label its records multicluster.kubernetes.io/source-cluster=c1, not 'c2'")
		}
	})
	t.Run("c2 cannot change or delete c1's records", func(t *testing.T) {
		for _, obj := range exportRecords("c1", "c1") {
			if err := c2.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				t.Fatal(err)
			}
			obj.SetAnnotations(map[string]string{"tampered": "yes"})
			forbidden(t, c2.Update(ctx, obj), "cluster c2 may only write objects labelled strait.dev/cluster-id=c2, not c1 ones")
			// Taking the record over, labels and all, is no better.
			obj.GetLabels()[v1.ClusterIDLabel] = "c2"
			obj.GetLabels()[mcsv1beta1.LabelSourceCluster] = "c2"
			forbidden(t, c2.Update(ctx, obj), "cluster c2 may not change or delete an object owned by cluster c1")
			forbidden(t, c2.Delete(ctx, obj), "cluster c2 may not change or delete an object owned by cluster c1")
		}
	})
	t.Run("members cannot touch anything else", func(t *testing.T) {
		err := c1.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: v1.BrokerNamespace}})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("member creates a Secret: want Forbidden, got %v", err)
		}
	})

	t.Run("cluster ID used by another cluster is refused", func(t *testing.T) {
		_, err := broker.Enroll(ctx, info, member("c1", "uid-other", "10.9.0.0/16", "10.109.0.0/16"))
		var conflict *broker.ConflictError
		if err == nil || !asConflict(err, &conflict) || !strings.Contains(err.Error(), "already used by another cluster") {
			t.Fatalf("want a conflict, got %v", err)
		}
	})
	t.Run("enrolling again renews the credential", func(t *testing.T) {
		tok, err := broker.Enroll(ctx, info, member("c1", "uid-1", "10.1.0.0/16", "10.101.0.0/16"))
		if err != nil || tok == "" {
			t.Fatalf("re-enroll c1: %v", err)
		}
	})
	t.Run("overlapping CIDRs are refused, naming both", func(t *testing.T) {
		_, err := broker.Enroll(ctx, info, member("c3", "uid-3", "10.1.128.0/17", "10.103.0.0/16"))
		if err == nil {
			t.Fatal("overlapping cluster enrolled")
		}
		for _, want := range []string{"10.1.128.0/17", "c3", "10.1.0.0/16", "c1"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	})
	t.Run("bad cluster ID is refused", func(t *testing.T) {
		if _, err := broker.Enroll(ctx, info, member("C_3", "uid-3", "10.3.0.0/16", "10.103.0.0/16")); err == nil || !strings.Contains(err.Error(), "RFC 1123") {
			t.Fatalf("want an RFC 1123 error, got %v", err)
		}
	})

	t.Run("leave removes the member's objects and credential", func(t *testing.T) {
		if err := broker.Leave(ctx, info.RESTConfig(c2Token), v1.BrokerNamespace, "c2"); err != nil {
			t.Fatalf("leave: %v", err)
		}
		var list v1.EndpointList
		if err := c1.List(ctx, &list, client.InNamespace(v1.BrokerNamespace), client.MatchingLabels{v1.ClusterIDLabel: "c2"}); err != nil || len(list.Items) != 0 {
			t.Fatalf("c2's endpoints after leave: %d (%v)", len(list.Items), err)
		}
		// The credential is revoked with its service account (the apiserver
		// caches a token's validity for a few seconds).
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := c2.List(ctx, &list, client.InNamespace(v1.BrokerNamespace))
			if apierrors.IsUnauthorized(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("c2's token after leave: want Unauthorized, got %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func asConflict(err error, target **broker.ConflictError) bool {
	c, ok := err.(*broker.ConflictError)
	*target = c
	return ok
}

// A bad Globalnet pool is refused before the cluster is touched (this
// configuration reaches no apiserver).
func TestDeployRefusesBadPool(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, tc := range []struct{ pool, want string }{
		{"fd00::/8", "only IPv4 pools"},
		{"242.0.0.0/7", "a /8 to a /24"},
		{"242.0.0.0/25", "a /8 to a /24"},
		{"242.0.0.1/8", "host bits set"},
	} {
		_, err := broker.Deploy(context.Background(), cfg, broker.DeployOptions{GlobalnetCIDR: netip.MustParsePrefix(tc.pool)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.pool) {
			t.Errorf("deploy with pool %s: %v, want an error naming it and %q", tc.pool, err, tc.want)
		}
	}
}

// A join file with a bad Globalnet pool is refused as such; one with only
// its version says in one line what it lacks.
func TestReadInfoRefusesIncompleteAndBadPool(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{`{"version": "strait.dev/broker-info/v1"}`, "is incomplete: no apiServer, caBundle, namespace, token"},
		{`{"version": "strait.dev/broker-info/v1", "apiServer": "https://b:6443", "caBundle": "Y2E=", "namespace": "strait-broker"}`, "is incomplete: no token"},
		{`{"version": "strait.dev/broker-info/v1", "apiServer": "https://b:6443", "caBundle": "Y2E=", "namespace": "strait-broker", "token": "t", "globalnetCIDR": "fd00::/8"}`, "has a bad globalnetCIDR"},
		{`{"version": "strait.dev/broker-info/v1", "apiServer": "https://b:6443", "caBundle": "Y2E=", "namespace": "strait-broker", "token": "t", "globalnetCIDR": "242.0.0.0/8"}`, ""},
	} {
		path := filepath.Join(dir, "broker-info.strait")
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := broker.ReadInfo(path)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ReadInfo(%s): %v", tc.body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ReadInfo(%s): %v, want one line with %q", tc.body, err, tc.want)
		}
	}
}

// Member objects at the broker never share a name: with a joined, a-self
// joins (once, a's binding strait-member-a-self was a-self's main binding,
// and the join failed on its immutable roleRef), also next to a binding of
// a that an earlier broker named so. A first enrolment that fails leaves no
// service account behind.
func TestEnrollMemberNames(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx := context.Background()
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	admin := kubernetes.NewForConfigOrDie(env.Config)
	ns := info.Namespace
	aToken, err := broker.Enroll(ctx, info, member("a", "uid-a", "10.1.0.0/16", "10.101.0.0/16"))
	if err != nil {
		t.Fatalf("enroll a: %v", err)
	}
	// What an earlier broker made for a: its self binding under the name
	// that is a-self's main binding.
	aSA, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "strait-member-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	legacy := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "strait-member-a-self", Namespace: ns,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: aSA.Name, UID: aSA.UID}}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "strait-member-a"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "strait-member-a", Namespace: ns}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, legacy, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	selfToken, err := broker.Enroll(ctx, info, member("a-self", "uid-a-self", "10.2.0.0/16", "10.102.0.0/16"))
	if err != nil {
		t.Fatalf("enroll a-self next to a: %v", err)
	}
	// Both still read and may delete their own service account, and only
	// their own.
	for id, token := range map[string]string{"a": aToken, "a-self": selfToken} {
		cs := kubernetes.NewForConfigOrDie(info.RESTConfig(token))
		if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, broker.MemberPrefix+id, metav1.GetOptions{}); err != nil {
			t.Errorf("%s reads its own service account: %v", id, err)
		}
	}
	rbs, err := admin.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saUID := map[string]types.UID{}
	for _, id := range []string{"a", "a-self"} {
		sa, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, broker.MemberPrefix+id, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		saUID[sa.Name] = sa.UID
	}
	var names []string
	for _, rb := range rbs.Items {
		if !strings.HasPrefix(rb.Name, broker.MemberPrefix) {
			continue
		}
		names = append(names, rb.Name+"→"+rb.RoleRef.Name)
		// Each binding belongs to (goes with) the service account it binds.
		if len(rb.Subjects) != 1 || len(rb.OwnerReferences) != 1 || rb.OwnerReferences[0].UID != saUID[rb.Subjects[0].Name] {
			t.Errorf("binding %s binds %v and is owned by %v", rb.Name, rb.Subjects, rb.OwnerReferences)
		}
	}
	slices.Sort(names)
	want := []string{"strait-member-a-self.self→strait-member-a-self", "strait-member-a-self→strait-member",
		"strait-member-a.self→strait-member-a", "strait-member-a→strait-member"}
	if !slices.Equal(names, want) {
		t.Errorf("member bindings:\n got %v\nwant %v", names, want)
	}

	// a-self leaves; a's credential is untouched.
	if err := broker.Leave(ctx, info.RESTConfig(selfToken), ns, "a-self"); err != nil {
		t.Fatalf("a-self leaves: %v", err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "strait-member-a-self", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a-self's service account after leave: %v", err)
	}
	acs := kubernetes.NewForConfigOrDie(info.RESTConfig(aToken))
	if _, err := acs.CoreV1().ServiceAccounts(ns).Get(ctx, "strait-member-a", metav1.GetOptions{}); err != nil {
		t.Errorf("a reads its service account after a-self left: %v", err)
	}

	// A binding in the way that is no member's: the join fails, naming it,
	// and leaves no member behind to block later joins.
	squat := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "strait-member-zz", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "someone-elses"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "someone"}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, squat, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Enroll(ctx, info, member("zz", "uid-zz", "10.3.0.0/16", "10.103.0.0/16")); err == nil || !strings.Contains(err.Error(), "strait-member-zz") {
		t.Fatalf("enroll next to a foreign binding: want an error naming it, got %v", err)
	} else {
		t.Logf("refused: %v", err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "strait-member-zz", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("service account of the failed enrolment: want NotFound, got %v", err)
	}
	if _, err := broker.Enroll(ctx, info, member("zz2", "uid-zz", "10.3.0.0/16", "10.103.0.0/16")); err != nil {
		t.Errorf("a join with the failed one's CIDRs: %v", err)
	}
}
