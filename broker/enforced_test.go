package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// TestWaitPoliciesEnforced runs the enforcement probe on a real apiserver:
// in a namespace with the Globalnet ConfigMap and no policies it times out
// naming the isolation policy as admitting its write, and once Deploy has
// applied the policies of that namespace it returns at once. The probes are
// dry runs: nothing they wrote is stored.
func TestWaitPoliciesEnforced(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{})
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	const ns = "probe-broker"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: GlobalnetConfigMap}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	err = waitPoliciesEnforced(ctx, env.Config, c, ns, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "policy "+PolicyName(ns)+" not enforced") || !strings.Contains(err.Error(), "admitted") {
		t.Fatalf("without policies: %v; want the isolation policy named as not enforced, its probe admitted", err)
	}
	t.Logf("without policies: %v", err)

	if _, err := Deploy(ctx, env.Config, DeployOptions{Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := waitPoliciesEnforced(ctx, env.Config, c, ns, 5*time.Second); err != nil {
		t.Fatalf("after Deploy: %v", err)
	}
	t.Logf("after Deploy: enforced, probed in %s", time.Since(start))

	var eps v1.EndpointList
	if err := c.List(ctx, &eps, client.InNamespace(ns)); err != nil || len(eps.Items) != 0 {
		t.Errorf("Endpoints stored in %s by the dry-run probes: %d (%v)", ns, len(eps.Items), err)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, GlobalnetConfigMap, metav1.GetOptions{})
	if err != nil || cm.Data[policyProbeCluster] != "" {
		t.Errorf("the Globalnet ConfigMap after the dry-run probes: %v (%v)", cm.Data, err)
	}
}
