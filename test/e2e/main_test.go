// Package e2e holds Strait's end-to-end tests. TestMain brings one sandbox up
// (three clusters of three nodes) with the strait-sandbox binary that
// "make build" wrote, and the tests use it. Then TestMain itself runs the
// checks that destroy it, in this order, whatever tests ran: the sandbox
// recovers from a crash of its supervisor, and "down" leaves nothing behind
// (finalChecks). No test relies on the order in which files or tests run.
// TestClusterSetDNS, TestMCSConformance and TestMCS share one joined
// clusterset (joinClusterSet); a test that joins clusters its own way, or
// wants a fresh join (TestStraitctl), has it leave first, and TestMain has
// it leave after the tests if one is still joined.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/sandbox"
)

var (
	// skipReason is set when the sandbox cannot run here; every test skips with it.
	skipReason string
	// setupErr is set when the sandbox should have come up and did not.
	setupErr error
	layout   sandbox.Layout
	binDir   string
	upOutput string
	// before is the machine as it was before the sandbox came up.
	before snapshot
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	code := func() int {
		flag.Parse()
		if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
			skipReason = "listing tests"
			return m.Run()
		}
		if os.Geteuid() != 0 {
			skipReason = "the sandbox needs root (network namespaces); run the e2e tests as root"
			return m.Run()
		}
		root, err := kubetest.RepoRoot()
		if err != nil {
			setupErr = err
			return m.Run()
		}
		binDir = filepath.Join(root, "_output", "bin")
		layout = sandbox.Layout{Dir: filepath.Join(root, "_output", "e2e", "sandbox")}
		for _, b := range []string{"strait-sandbox", "strait-testpod"} {
			if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
				setupErr = fmt.Errorf("%s not built (run 'make build'): %w", b, err)
				return m.Run()
			}
		}
		// A sandbox ended without "down" (its run killed) leaves its
		// network namespaces mounted; "up" removes them. Remove them
		// before the snapshot, so that the teardown check compares with
		// the machine without any sandbox, not with those leftovers.
		if ns, _ := sandbox.ListNamespaces(); len(ns) > 0 {
			fmt.Printf("%d network namespaces of an earlier sandbox are left: removing them before the snapshot\n", len(ns))
			if err := sandbox.CleanLeftovers(layout, os.Stdout); err != nil {
				setupErr = err
				return m.Run()
			}
		}
		before = takeSnapshot()
		out, err := sandboxCmd(sandboxArgs()...).CombinedOutput()
		upOutput = string(out)
		fmt.Print(upOutput)
		if err != nil {
			setupErr = fmt.Errorf("strait-sandbox up: %w\n%s", err, out)
			// "down" removes the logs: show what a failed up left, so that
			// a CI log says why.
			printUpLogs()
		}
		code := m.Run()
		// The clusterset the MCS tests share, if one of them left it joined.
		if err := endClusterSet(); err != nil {
			fmt.Printf("--- FAIL: TestMain/the shared clusterset leaves\n    %s\n", strings.ReplaceAll(err.Error(), "\n", "\n    "))
			code = 1
		}
		if setupErr == nil && !runFinalChecks() {
			code = 1
		}
		// The final checks take the sandbox down; make sure, whatever happened.
		_ = sandboxCmd("down").Run()
		return code
	}()
	os.Exit(code)
}

// finalChecks run after every test, in this order, because each destroys
// the sandbox the tests share: the crash leaves a sandbox recovered by a
// second "up", and "down" must then leave the machine as it was.
var finalChecks = []struct {
	name  string
	check func() error
}{
	{"the sandbox recovers from a crash of its supervisor", sandboxRecoversFromCrash},
	{"down leaves nothing behind", sandboxDownLeavesNothing},
}

// runFinalChecks runs finalChecks, printing each result as go test prints a
// test's, and reports whether all passed. They run even when one fails: a
// failed recovery still has to be taken down cleanly.
func runFinalChecks() bool {
	ok := true
	for i, c := range finalChecks {
		if (overlapping() || dual()) && i == 0 {
			continue // the first run of the package checks the recovery
		}
		name := "TestMain/" + strings.ReplaceAll(c.name, " ", "_")
		if testing.Verbose() {
			fmt.Printf("=== RUN   %s\n", name)
		}
		start := time.Now()
		err := c.check()
		took := time.Since(start).Seconds()
		switch {
		case err != nil:
			ok = false
			fmt.Printf("--- FAIL: %s (%.2fs)\n    %s\n", name, took, strings.ReplaceAll(err.Error(), "\n", "\n    "))
		case testing.Verbose():
			fmt.Printf("--- PASS: %s (%.2fs)\n", name, took)
		}
	}
	return ok
}

// upArgs is the sandbox every test shares: three clusters of three nodes,
// the first two gateway-capable, c2 behind a NAT router, kube-proxy in
// iptables mode in c1 and in nftables mode in c2 and c3 (so cross-cluster
// Service traffic goes into clusters of both modes).
var upArgs = []string{"up", "--clusters", "3", "--nodes", "3", "--nat", "c2", "--proxy-mode", "iptables,c2=nftables,c3=nftables"}

// sandboxEnv chooses the sandbox: unset, the one above, for every test
// but TestGlobalnet and the families' tests (TestDataplaneFamilies,
// TestMCSFamilies); "overlapping", two clusters
// of three nodes with the same pod and Service CIDRs (no NAT, kube-proxy
// in nftables mode in c2), for TestGlobalnet alone; "dual", three
// dual-stack clusters of two nodes (dualArgs), for the sandbox's own tests
// (TestSandbox*) and the families' tests alone, and "ipv6", the same
// IPv6-only. "make test-e2e" runs the package once with each but "ipv6"
// (one sandbox at a time on a machine).
const sandboxEnv = "STRAIT_E2E_SANDBOX"

// overlapping reports whether this run's sandbox is the overlapping one.
func overlapping() bool { return os.Getenv(sandboxEnv) == "overlapping" }

// dual reports whether this run's sandbox is the dual-stack or the
// IPv6-only one: both run the sandbox's own tests and the families'
// tests (TestDataplaneFamilies, TestMCSFamilies) alone.
func dual() bool { return os.Getenv(sandboxEnv) == "dual" || os.Getenv(sandboxEnv) == "ipv6" }

// wantFamilies are the families the sandbox of this run must have, as
// addrFamilies writes them.
func wantFamilies() string {
	switch os.Getenv(sandboxEnv) {
	case "dual":
		return "IPv4,IPv6"
	case "ipv6":
		return "IPv6"
	}
	return "IPv4"
}

// runtimeEnv chooses how the sandbox's nodes run Strait's images:
// "host" (unset too) runs their binaries, "oci" the images themselves under
// crun (strait-sandbox up --runtime oci; make images IMAGES_ARCH=amd64 first).
const runtimeEnv = "STRAIT_E2E_RUNTIME"

// sandboxArgs are the arguments of this run's "up".
func sandboxArgs() []string {
	var args []string
	switch {
	case overlapping():
		args = overlappingArgs
	case os.Getenv(sandboxEnv) == "ipv6":
		args = ipv6Args
	case dual():
		args = dualArgs
	default:
		args = upArgs
	}
	if rt := os.Getenv(runtimeEnv); rt != "" {
		args = append(slices.Clip(args), "--runtime", rt)
	}
	return args
}

// ipv6Args is dualArgs with IPv6 alone ("ipv6", not in "make test-e2e": the
// dual sandbox covers both families' code, and IPv6-only adds only that
// nothing leans on IPv4; run it by hand after changing the sandbox's or
// the data plane's networking).
var ipv6Args = append(dualArgs[:len(dualArgs)-1:len(dualArgs)-1], "ipv6")

// dualArgs is the smallest sandbox that tests dual-stack networking and
// both cable drivers: three clusters (c2 behind NAT, for NAT44 and NAT66
// and the WireGuard cable c1-c2; c3 reachable, for the VXLAN cable c1-c3)
// of two nodes (pod to pod and Service traffic across nodes; for
// TestDataplaneFamilies n1 is the gateway and n2 the non-gateway node),
// both gateway-capable (the internet in both families), kube-proxy in
// nftables mode in c2 and c3 (both proxy modes run both families, and
// each cable joins clusters of both modes).
var dualArgs = []string{"up", "--clusters", "3", "--nodes", "2", "--nat", "c2", "--proxy-mode", "iptables,c2=nftables,c3=nftables", "--ip-family", "dual"}

// No NAT: TestGlobalnet joins over VXLAN too, which needs gateways that
// reach each other directly (NAT with WireGuard is TestDataplane's).
var overlappingArgs = []string{"up", "--clusters", "2", "--nodes", "3", "--proxy-mode", "iptables,c2=nftables", "--overlapping"}

func sandboxCmd(args ...string) *exec.Cmd {
	// The flag goes first: after "exec ... --" every word is the command's.
	return exec.Command(filepath.Join(binDir, "strait-sandbox"), append([]string{"--state-dir", layout.Dir}, args...)...)
}

// need skips or fails the test when the sandbox is not there, and skips
// it in the overlapping sandbox, which is TestGlobalnet's (needOverlapping),
// and, unless it is one of the sandbox's own tests, in the dual one.
func need(t *testing.T) {
	t.Helper()
	if overlapping() {
		t.Skip("the sandbox's clusters overlap (" + sandboxEnv + "=overlapping): only TestGlobalnet runs")
	}
	if dual() && !strings.HasPrefix(t.Name(), "TestSandbox") {
		t.Skip("the sandbox is dual-stack or IPv6-only (" + sandboxEnv + "=" + os.Getenv(sandboxEnv) + "): only the sandbox's own tests (TestSandbox*), TestDataplaneFamilies and TestMCSFamilies run")
	}
	needSandbox(t)
}

// needFamilies skips the test unless the sandbox is the dual-stack or the
// IPv6-only one.
func needFamilies(t *testing.T) {
	t.Helper()
	if !dual() {
		t.Skip("needs the dual-stack or IPv6-only sandbox: " + sandboxEnv + "=dual (make test-e2e runs it) or " + sandboxEnv + "=ipv6 (by hand)")
	}
	needSandbox(t)
}

// needOverlapping skips the test unless the sandbox's clusters overlap.
func needOverlapping(t *testing.T) {
	t.Helper()
	if !overlapping() {
		t.Skip("needs the overlapping sandbox: " + sandboxEnv + "=overlapping (make test-e2e runs it)")
	}
	needSandbox(t)
}

func needSandbox(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

func kubeClient(t *testing.T, cluster string) kubernetes.Interface {
	t.Helper()
	cs, err := layout.Client(cluster)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// testNamespace creates a namespace for one test and deletes it after.
func testNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	// Pods need the namespace's default ServiceAccount, which the controller
	// manager creates.
	waitFor(t, 30*time.Second, "default service account in "+name, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}

// waitFor polls cond until it holds. The bound keeps a broken sandbox from
// hanging the suite; it is not a performance assertion.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// poll is waitFor for callers that explain a timeout themselves.
func poll(timeout time.Duration, cond func(ctx context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, cond)
}

// testpodProgram is strait-testpod as a command exec'd in a container of
// the test workload (testpodContainer) names it: by name, as straitctl
// execs it (pkg/probe.TestpodBinary), found on the container's PATH. Under
// the OCI runtime that is the image's link to its /strait-testpod (the
// container's root is the image); under the host runtime the image's
// program directory, a link to _output/bin/strait-testpod. A tool pod
// (netshoot, host-mapped under both) runs hostTestpod.
const testpodProgram = "strait-testpod"

// hostTestpod is the strait-testpod binary "make build" wrote, as this
// machine's processes (and the host-mapped tool images) see it.
func hostTestpod() string { return filepath.Join(binDir, "strait-testpod") }

// testpodContainer is a container of the sandbox's test workload.
func testpodContainer(name string, args ...string) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: "strait/testpod:e2e",
		Args:  args,
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		},
	}
}

// runningPods waits until the pods matching selector are Running and Ready.
func runningPods(t *testing.T, cs kubernetes.Interface, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	waitFor(t, 60*time.Second, fmt.Sprintf("%d ready pods %s in %s", n, selector, ns), func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && podReady(&p) {
				pods = append(pods, p)
			}
		}
		return len(pods) == n, nil
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deployment returns a Deployment of the test workload, one pod per node.
func deployment(name string, replicas int32, c corev1.Container) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
					}},
					Containers: []corev1.Container{c},
				},
			},
		},
	}
}

// inPodNetwork runs argv, a program of this machine, in a pod's network
// namespace alone (nsenter --net to its sandbox's process): the tests' own
// look at a pod's sockets, which needs nothing of the pod's image. It
// returns the combined output.
func inPodNetwork(t *testing.T, cluster, ns, pod string, argv ...string) (string, error) {
	t.Helper()
	_, info, err := layout.Runtime(context.Background(), sandbox.PodRef{Cluster: cluster, Namespace: ns, Name: pod})
	if err != nil {
		return "", err
	}
	if info.SandboxPID == 0 {
		return "", fmt.Errorf("pod %s/%s/%s has no sandbox process", cluster, ns, pod)
	}
	out, err := exec.Command("nsenter", append([]string{"--target", fmt.Sprint(info.SandboxPID), "--net", "--"}, argv...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s/%s/%s: %w: %s", strings.Join(argv, " "), cluster, ns, pod, err, out)
	}
	return string(out), nil
}

// execIn runs argv in a pod's namespaces through "strait-sandbox exec".
func execIn(t *testing.T, cluster, ns, pod string, argv ...string) (string, error) {
	t.Helper()
	args := append([]string{"exec", cluster + "/" + ns + "/" + pod, "--"}, argv...)
	var out, errOut bytes.Buffer
	cmd := sandboxCmd(args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s%s", err, out.String(), errOut.String())
	}
	return out.String(), nil
}

// connectReport is what "strait-testpod connect" prints.
type connectReport struct {
	OK     bool            `json:"ok"`
	Proto  string          `json:"proto"`
	Local  string          `json:"local"`
	Remote string          `json:"remote"`
	Bytes  int             `json:"bytes"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Error  string          `json:"error"`
}

// connect runs "strait-testpod connect" in a pod of the test workload
// (testpodContainer) and decodes its report.
func connect(t *testing.T, cluster, ns, pod string, args ...string) connectReport {
	t.Helper()
	out, err := execIn(t, cluster, ns, pod, append([]string{testpodProgram, "connect"}, args...)...)
	var r connectReport
	if jerr := json.Unmarshal([]byte(strings.TrimSpace(lastLine(out))), &r); jerr != nil {
		t.Fatalf("connect %v from %s/%s: no report (%v); output %q", args, ns, pod, err, out)
	}
	if err != nil && r.OK {
		t.Fatalf("connect %v reported ok but failed: %v", args, err)
	}
	return r
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// printUpLogs prints the tails of the logs a failed "up" leaves: the
// supervisor's, each cluster's kube-controller-manager's (which makes the
// cluster DNS pods), and every start of the cluster DNS pods' containers
// (the one component of every cluster that up waits for beyond the nodes).
func printUpLogs() {
	paths := []string{filepath.Join(layout.Dir, "supervisor.log")}
	kcm, _ := filepath.Glob(filepath.Join(layout.Dir, "clusters", "*", "logs", "kube-controller-manager.log"))
	dns, _ := filepath.Glob(filepath.Join(layout.Dir, "nodes", "*", "pods", "kube-system_coredns-*", "logs", "*", "*.log"))
	for _, p := range slices.Concat(paths, kcm, dns) {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Printf("--- %s: %v\n", p, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Printf("--- the last %d lines of %s:\n%s\n", min(40, len(lines)), p, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}
