package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// mcsClusters are the clusters the MCS tests join: c2 sits behind NAT, so
// every cluster uses WireGuard.
var mcsClusters = []string{"c1", "c2", "c3"}

// clusterSet is the clusterset of mcsClusters that the tests calling
// joinClusterSet share: a join of three clusters and the leave take minutes,
// so they happen once, not once per test. The zero value is "not joined".
var clusterSet struct {
	dir      string // holds the broker-info file; removed on leave
	info     string // the broker-info file
	joinArgs func(cluster string) []string
}

// joinClusterSet returns the clusterset every cluster of mcsClusters joined
// with WireGuard, as a user would with straitctl: the first caller deploys
// the broker on c1 and joins them; a later caller gets the same clusterset.
// Either way it returns once every cluster's active gateway reports every
// other cluster Connected and every cluster's Lighthouse Deployment is
// available, so a test finds it whole whatever the one before did to it
// (each test restores what it breaks). It returns the broker-info file and
// the join arguments of each cluster (after the file), for a test that
// joins one again.
//
// The clusters stay joined after t: leaveClusterSet ends the clusterset,
// when a test joins clusters its own way, when a test that used it failed
// (so that the next one starts from a fresh join), and in TestMain after
// every test.
func joinClusterSet(t *testing.T) (info string, joinArgs func(cluster string) []string) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			leaveClusterSet(t)
		}
	})
	if clusterSet.info == "" {
		dir, err := os.MkdirTemp("", "strait-e2e-clusterset-")
		if err != nil {
			t.Fatal(err)
		}
		clusterSet.dir = dir
		clusterSet.info = filepath.Join(dir, "broker-info.strait")
		clusterSet.joinArgs = func(c string) []string {
			return []string{"--kubeconfig", adminKubeconfig(c), "--clusterid", c,
				"--gateway-nodes", c + "-n1," + c + "-n2", "--pod-cidr", podCIDR(c), "--cable-driver", "wireguard"}
		}
		if out, err := straitctl(t, "deploy-broker", "--kubeconfig", adminKubeconfig("c1"), "--output", clusterSet.info); err != nil {
			t.Fatalf("deploy-broker: %v\n%s", err, out)
		}
		for _, c := range mcsClusters {
			if out, err := straitctl(t, append([]string{"join", clusterSet.info}, clusterSet.joinArgs(c)...)...); err != nil {
				t.Fatalf("join %s: %v\n%s", c, err, out)
			}
		}
	} else {
		t.Log("the clusterset is joined already (an earlier test joined it): checking it is whole")
	}
	waitConnected(t, mcsClusters)
	for _, c := range mcsClusters {
		cl := ctrlClient(t, c)
		waitFor(t, 2*time.Minute, "the Lighthouse Deployment in "+c, func(ctx context.Context) (bool, error) {
			var d appsv1.Deployment
			if err := cl.Get(ctx, types.NamespacedName{Namespace: v1.ComponentNamespace, Name: "strait-lighthouse"}, &d); err != nil {
				return false, nil
			}
			return d.Status.AvailableReplicas >= 1 && d.Status.ObservedGeneration == d.Generation, nil
		})
	}
	return clusterSet.info, clusterSet.joinArgs
}

// leaveClusterSet has every cluster of the clusterset joinClusterSet
// joined leave, if it is joined, and fails t when a leave fails. A test
// that joins clusters its own way calls it first.
func leaveClusterSet(t *testing.T) {
	t.Helper()
	if err := endClusterSet(); err != nil {
		t.Error(err)
	}
}

// endClusterSet is leaveClusterSet for TestMain, which has no t.
func endClusterSet() error {
	if clusterSet.info == "" {
		return nil
	}
	var errs []error
	for _, c := range slices.Backward(mcsClusters) {
		// A test may have had the cluster leave already.
		cmd := sandboxCmd("admin", "--", filepath.Join(binDir, "straitctl"), "leave", "--kubeconfig", adminKubeconfig(c))
		if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "has not joined") {
			errs = append(errs, fmt.Errorf("leave %s: %v\n%s", c, err, out))
		}
	}
	_ = os.RemoveAll(clusterSet.dir)
	clusterSet.dir, clusterSet.info, clusterSet.joinArgs = "", "", nil
	return errors.Join(errs...)
}

// connectionsOf describes the active gateway's connections, as
// "<cluster>=<status>" words.
func connectionsOf(ctx context.Context, c client.Client) string {
	var gws v1.GatewayList
	if err := c.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return err.Error()
	}
	for _, g := range gws.Items {
		if g.Status.HAStatus != v1.HAStatusActive {
			continue
		}
		var out []string
		for _, conn := range g.Status.Connections {
			out = append(out, fmt.Sprintf("%s=%s", conn.ClusterID, strings.ToLower(string(conn.Status))))
		}
		return strings.Join(out, " ")
	}
	return "no active gateway"
}

// mcsNamespace creates namespace ns in every cluster of clusters and
// deletes it when t ends (namespace sameness: the same name everywhere).
func mcsNamespace(t *testing.T, ns string, clusters ...string) {
	t.Helper()
	for _, c := range clusters {
		cs := kubeClient(t, c)
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
		waitFor(t, 30*time.Second, "default service account in "+c+"/"+ns, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		})
	}
}

// exportService creates a ServiceExport for Service ns/name in cluster with
// kubectl, as an app team would; annotations (the ServiceExport's own, such
// as the traffic policy) may be nil.
func exportService(t *testing.T, cluster, ns, name string, annotations map[string]string) {
	t.Helper()
	applyServiceExport(t, cluster, ns, name, annotations, nil, nil)
}

// applyServiceExport applies ServiceExport ns/name in cluster with
// "kubectl apply", with metadata.annotations and spec.exportedLabels and
// spec.exportedAnnotations as given (nil or empty: none).
func applyServiceExport(t *testing.T, cluster, ns, name string, annotations, exportedLabels, exportedAnnotations map[string]string) {
	t.Helper()
	meta := map[string]any{"name": name, "namespace": ns}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	spec := map[string]any{}
	if len(exportedLabels) > 0 {
		spec["exportedLabels"] = exportedLabels
	}
	if len(exportedAnnotations) > 0 {
		spec["exportedAnnotations"] = exportedAnnotations
	}
	manifest, err := json.Marshal(map[string]any{
		"apiVersion": mcsv1beta1.GroupVersion.String(), "kind": "ServiceExport", "metadata": meta, "spec": spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := kubectlStdin(t, cluster, string(manifest), "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("kubectl apply ServiceExport %s/%s in %s: exit %d\n%s%s", ns, name, cluster, r.code, r.stdout, r.stderr)
	}
}

// waitImport waits until cluster has ServiceImport ns/name and cond holds
// for it, and returns it.
func waitImport(t *testing.T, cluster, ns, name string, what string, cond func(*mcsv1beta1.ServiceImport) bool) *mcsv1beta1.ServiceImport {
	t.Helper()
	cl := ctrlClient(t, cluster)
	var si mcsv1beta1.ServiceImport
	var last string
	if err := poll(90*time.Second, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &si); err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%+v %+v", si.Spec, si.Status)
		return cond(&si), nil
	}); err != nil {
		t.Fatalf("%s: ServiceImport %s/%s %s: %s", cluster, ns, name, what, last)
	}
	return &si
}

// kubectlStdin is kubectl with stdin, for "apply -f -".
func kubectlStdin(t *testing.T, cluster, stdin string, args ...string) kubectlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := withContext(ctx, kubectlCmd(t, cluster, args...))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	r := kubectlResult{}
	if err := cmd.Run(); err != nil {
		r.code = -1
		if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
			r.code = cmd.ProcessState.ExitCode()
		}
	}
	r.stdout, r.stderr = out.String(), errOut.String()
	return r
}
