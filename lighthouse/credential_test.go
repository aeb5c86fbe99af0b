package lighthouse

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// A join again that changes the broker credential (here: the member's
// service account at the broker removed, which revokes the old token, and
// the member enrolled again with a new one) takes effect in the running
// agent: its syncer restarts with the new token from the Secret, and
// exports keep reaching the broker. The agent runs with the manifest's RBAC.
func TestAgentFollowsCredential(t *testing.T) {
	f := newFabric(t, "c1")
	c1 := f.members["c1"].c
	ctx := context.Background()
	bc := mustClient(t, f.brokerEnv.Config)
	atBroker := func(name string) func() string {
		return func() string {
			var si mcsv1beta1.ServiceImport
			if err := bc.Get(ctx, client.ObjectKey{Namespace: f.info.Namespace, Name: ExportRecordName(name, "app", "c1")}, &si); err != nil {
				return err.Error()
			}
			return ""
		}
	}
	http := svcPort("http", corev1.ProtocolTCP, 80)
	mustCreate(t, c1, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	mustCreate(t, c1, service("app", "one", http), localSlice("app", "one", "one-abc", []corev1.ServicePort{http}, "10.1.0.5"),
		serviceExport("app", "one", nil))
	eventually(t, "app/one's record at the broker", atBroker("one"))

	// Revoke c1's credential and enrol it again.
	admin := kubernetes.NewForConfigOrDie(f.brokerEnv.Config)
	if err := admin.CoreV1().ServiceAccounts(f.info.Namespace).Delete(ctx, broker.MemberPrefix+"c1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := broker.Enroll(ctx, f.info, broker.Member{ClusterID: "c1", ClusterUID: "uid-c1",
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	// The old token no longer works (the apiserver caches a token's
	// validity for a few seconds).
	var old corev1.Secret
	if err := c1.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: broker.SecretName}, &old); err != nil {
		t.Fatal(err)
	}
	oldClient := kubernetes.NewForConfigOrDie(f.info.RESTConfig(string(old.Data["token"])))
	eventually(t, "the old token rejected", func() string {
		_, err := oldClient.CoreV1().ServiceAccounts(f.info.Namespace).Get(ctx, broker.MemberPrefix+"c1", metav1.GetOptions{})
		if apierrors.IsUnauthorized(err) {
			return ""
		}
		return fmt.Sprint("old token: ", err)
	})
	// What join writes: the Secret with the new token.
	secret := broker.CredentialSecret(v1.ComponentNamespace, f.info, tok)
	secret.ResourceVersion = old.ResourceVersion
	if err := c1.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c1, service("app", "two", http), localSlice("app", "two", "two-abc", []corev1.ServicePort{http}, "10.1.0.6"),
		serviceExport("app", "two", nil))
	eventually(t, "app/two's record at the broker, exported with the new credential", atBroker("two"))
}
