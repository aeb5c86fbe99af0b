package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/test/helmtest"
)

// TestHelmInstallJoins brings a new cluster into a clusterset with Helm, as
// docs/helm.md says: c1 and c2 join with straitctl join, c3 with straitctl
// join --enrol-only (the enrolment, the broker credential, the gateway
// labels, and the chart's values on stdout) and then helm install -f those
// values. The cables between the three connect; straitctl leave then
// removes c3, and the broker no longer lists it. Every cluster leaves at the
// end, whatever happened.
func TestHelmInstallJoins(t *testing.T) {
	need(t)
	leaveClusterSet(t) // this test joins c1, c2 and c3 its own way
	ctx := context.Background()
	helm := helmtest.Helm(t) // before anything is joined: a missing helm says so first
	clusters := []string{"c1", "c2", "c3"}
	t.Cleanup(func() {
		for _, c := range []string{"c3", "c2", "c1"} {
			// A cluster may have left already, or never joined.
			if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig(c)); err != nil && !strings.Contains(out, "has not joined") {
				t.Errorf("leave %s: %v\n%s", c, err, out)
			}
		}
	})
	info := deployBroker(t)
	joinArgs := func(c string) []string {
		return []string{"join", info, "--kubeconfig", adminKubeconfig(c), "--clusterid", c,
			"--gateway-nodes", c + "-n1," + c + "-n2", "--pod-cidr", podCIDR(c), "--cable-driver", "wireguard"}
	}
	for _, c := range []string{"c1", "c2"} {
		if out, err := straitctl(t, joinArgs(c)...); err != nil {
			t.Fatalf("join %s: %v\n%s", c, err, out)
		}
	}

	// c3: enrol only, the values on stdout.
	cmd := sandboxCmd(append([]string{"admin", "--", filepath.Join(binDir, "straitctl")}, append(joinArgs("c3"), "--enrol-only")...)...)
	var values, progress bytes.Buffer
	cmd.Stdout, cmd.Stderr = &values, &progress
	if err := cmd.Run(); err != nil {
		t.Fatalf("join c3 --enrol-only: %v\n%s", err, progress.String())
	}
	t.Logf("straitctl join --enrol-only:\n%s\nvalues:\n%s", progress.String(), values.String())
	cs3 := kubeClient(t, "c3")
	t.Run("enrol-only writes the credential and the labels, nothing of the chart", func(t *testing.T) {
		if _, err := cs3.CoreV1().Secrets(v1.ComponentNamespace).Get(ctx, broker.SecretName, metav1.GetOptions{}); err != nil {
			t.Errorf("the broker credential: %v", err)
		}
		if _, err := cs3.AppsV1().DaemonSets(v1.ComponentNamespace).Get(ctx, "strait-gateway", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("DaemonSet strait-gateway before helm install: %v, want not found", err)
		}
		switch r, err := cs3.Discovery().ServerResourcesForGroupVersion(v1.SchemeGroupVersion.String()); {
		case apierrors.IsNotFound(err):
		case err != nil:
			t.Errorf("c3's discovery of %s: %v", v1.SchemeGroupVersion, err)
		case len(r.APIResources) > 0:
			t.Errorf("c3 serves %s before helm install: enrol-only installed CRDs", v1.SchemeGroupVersion)
		}
		nodes, err := cs3.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: v1.GatewayNodeLabel + "=true"})
		if err != nil || len(nodes.Items) != 2 {
			t.Errorf("c3's gateway-labelled nodes: %d (%v), want c3-n1 and c3-n2", len(nodes.Items), err)
		}
		cm, err := cs3.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil || strings.Contains(cm.Data["Corefile"], "clusterset.local") {
			t.Errorf("c3's Corefile after enrol-only (%v): enrol-only must leave CoreDNS alone:\n%s", err, cm.Data["Corefile"])
		}
	})

	valuesFile := filepath.Join(t.TempDir(), "c3-values.yaml")
	if err := os.WriteFile(valuesFile, values.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out := helmtest.Run(t, "install", manifests.ReleaseName, helmtest.ChartDir(), "--kubeconfig", layout.Kubeconfig("c3"),
		"--namespace", v1.ComponentNamespace, "-f", valuesFile)
	t.Logf("helm install (%s):\n%s", helm, out)

	t.Run("the cables connect", func(t *testing.T) {
		waitConnected(t, clusters)
		for _, c := range clusters {
			t.Logf("%s's active gateway: %s", c, connectionsOf(ctx, ctrlClient(t, c)))
		}
	})

	t.Run("straitctl leave removes the helm-installed cluster", func(t *testing.T) {
		if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig("c3")); err != nil {
			t.Fatalf("leave c3: %v\n%s", err, out)
		}
		brokerCfg, err := clientcmd.BuildConfigFromFlags("", layout.Kubeconfig("c1"))
		if err != nil {
			t.Fatal(err)
		}
		if left, err := broker.Remaining(ctx, brokerCfg, v1.BrokerNamespace, "c3"); err != nil || len(left) > 0 {
			t.Errorf("the broker still lists c3: %v (%v)", left, err)
		}
		c1 := ctrlClient(t, "c1")
		waitFor(t, 60*time.Second, "c1 to drop c3's records", func(ctx context.Context) (bool, error) {
			return !strings.Contains(records(ctx, c1), "c3"), nil
		})
		if _, err := cs3.CoreV1().Namespaces().Get(ctx, v1.ComponentNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("c3 still has %s (%v)", v1.ComponentNamespace, err)
		}
		if nodes, _ := cs3.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: v1.GatewayNodeLabel}); len(nodes.Items) > 0 {
			t.Errorf("c3 nodes still labelled as gateways: %d", len(nodes.Items))
		}
		if out := helmtest.Run(t, "list", "--kubeconfig", layout.Kubeconfig("c3"), "--namespace", v1.ComponentNamespace, "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("helm still lists releases in c3's %s: %s", v1.ComponentNamespace, out)
		}
	})
}
