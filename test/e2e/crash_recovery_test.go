package e2e

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/test/proc"
	"strait.dev/strait/test/sandbox"
)

// sandboxRecoversFromCrash kills the sandbox's supervisor with SIGKILL, as
// a crash would, and brings the sandbox up again over the leftovers. It is
// one of TestMain's finalChecks: it runs after every test, before "down".
func sandboxRecoversFromCrash() error {
	state, err := layout.ReadState()
	if err != nil {
		return err
	}
	if err := syscall.Kill(state.SupervisorPID, syscall.SIGKILL); err != nil {
		return err
	}
	if err := poll(10*time.Second, func(context.Context) (bool, error) {
		return !proc.Alive(state.SupervisorPID), nil
	}); err != nil {
		return fmt.Errorf("the supervisor (pid %d) did not die: %w", state.SupervisorPID, err)
	}
	// Its children die with it; its namespaces stay behind.
	if ns, _ := sandbox.ListNamespaces(); len(ns) == 0 {
		return errors.New("no namespaces left behind: the crash cleaned up after itself, so this check proves nothing")
	}
	out, err := sandboxCmd(sandboxArgs()...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("up after a crash: %w\n%s", err, out)
	}
	cs, err := layout.Client("c2")
	if err != nil {
		return err
	}
	nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
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
		return fmt.Errorf("after recovering, c2 has %d Ready nodes of %d", ready, len(nodes.Items))
	}
	return nil
}
