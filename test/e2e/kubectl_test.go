package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/kubetest"
)

// kubectlCmd returns kubectl (the one built from source with the sandbox's
// Kubernetes binaries) against a cluster's admin kubeconfig, as a user runs it.
func kubectlCmd(t *testing.T, cluster string, args ...string) *exec.Cmd {
	t.Helper()
	dir, err := kubetest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(filepath.Join(dir, "kubectl"), append([]string{"--kubeconfig", layout.Kubeconfig(cluster)}, args...)...)
}

// kubectlResult is what one kubectl run printed and how it exited.
type kubectlResult struct {
	stdout, stderr string
	code           int // the exit code; -1 when kubectl did not exit on its own
}

// kubectl runs kubectl to its end (bounded, so that a hung stream fails the
// test instead of the suite) and returns its output and exit code.
func kubectl(t *testing.T, cluster string, args ...string) kubectlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := withContext(ctx, kubectlCmd(t, cluster, args...))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := kubectlResult{stdout: out.String(), stderr: errOut.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.Exited():
		r.code = exitErr.ExitCode()
	default:
		r.code = -1
	}
	return r
}

// mustKubectl runs kubectl and fails the test unless it exits 0.
func mustKubectl(t *testing.T, cluster string, args ...string) string {
	t.Helper()
	r := kubectl(t, cluster, args...)
	if r.code != 0 {
		t.Fatalf("kubectl %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// toolPod returns a pod of the network-tools image that sleeps, for running
// commands in with kubectl exec.
func toolPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers: []corev1.Container{{
				Name:    "tools",
				Image:   "nicolaka/netshoot:v0.13",
				Command: []string{"sleep", "86400"},
			}},
		},
	}
}

// createRunning creates pods and waits until each is Running and Ready.
func createRunning(t *testing.T, cluster string, cs kubernetes.Interface, ns string, pods ...*corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		var last *corev1.Pod
		err := poll(60*time.Second, func(ctx context.Context) (bool, error) {
			got, err := cs.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = got
			return got.Status.Phase == corev1.PodRunning && podReady(got) || got.Status.Phase == corev1.PodFailed, nil
		})
		if err != nil || last.Status.Phase == corev1.PodFailed {
			status := "never seen"
			if last != nil {
				data, _ := json.MarshalIndent(last.Status, "        ", "  ")
				status = string(data)
			}
			logs := ""
			if last != nil {
				for _, cs := range append(last.Status.InitContainerStatuses, last.Status.ContainerStatuses...) {
					if cs.LastTerminationState.Terminated != nil {
						r := kubectl(t, cluster, "logs", "-n", ns, p.Name, "-c", cs.Name, "--previous")
						logs += fmt.Sprintf("\n        previous log of %s: %s%s", cs.Name, r.stdout, r.stderr)
					}
				}
			}
			t.Fatalf("pod %s/%s not running and ready (%v); status:\n        %s%s", ns, p.Name, err, status, logs)
		}
	}
}

// withContext returns a copy of cmd that ends with ctx.
func withContext(ctx context.Context, cmd *exec.Cmd) *exec.Cmd {
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c.Env = cmd.Env
	return c
}

// runHost runs a command on the machine and returns its combined output.
func runHost(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
