package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/test/proc"
	"strait.dev/strait/test/sandbox"
)

// TestSandboxRecoversFromCrash kills the sandbox's supervisor with SIGKILL,
// as a crash would, and brings the sandbox up again over the leftovers. It
// runs after the other tests (files run in name order) and before the last.
func TestSandboxRecoversFromCrash(t *testing.T) {
	need(t)
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(state.SupervisorPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the supervisor to die", func(context.Context) (bool, error) {
		return !proc.Alive(state.SupervisorPID), nil
	})
	// Its children die with it; its namespaces stay behind.
	if ns, _ := sandbox.ListNamespaces(); len(ns) == 0 {
		t.Fatal("no namespaces left behind: the crash cleaned up after itself, so this test proves nothing")
	}
	out, err := sandboxCmd(upArgs...).CombinedOutput()
	if err != nil {
		t.Fatalf("up after a crash: %v\n%s", err, out)
	}
	nodes, err := kubeClient(t, "c2").CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != 3 {
		t.Fatalf("after recovering, c2 has %d Ready nodes of %d", ready, len(nodes.Items))
	}
}
