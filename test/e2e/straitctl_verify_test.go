package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// straitctlResult is one straitctl run on the admin host: what it printed
// on each stream and its exit code.
type straitctlResult struct {
	stdout, stderr string
	code           int
}

// runStraitctl runs the built straitctl on the admin host, as a user
// would, bounded so that a hang fails the test instead of the suite.
func runStraitctl(t *testing.T, args ...string) straitctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := withContext(ctx, sandboxCmd(append([]string{"admin", "--", filepath.Join(binDir, "straitctl")}, args...)...))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := straitctlResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("straitctl %v: %v", args, err)
	}
	return r
}

// kubeconfigsFlag is --kubeconfig for every cluster of mcsClusters.
func kubeconfigsFlag() []string {
	var files []string
	for _, c := range mcsClusters {
		files = append(files, adminKubeconfig(c))
	}
	return []string{"--kubeconfig", strings.Join(files, ",")}
}

// TestStraitctlVerify drives "straitctl verify", "diagnose" and
// "benchmark" against the joined clusterset as an operator would, and
// breaks the fabric to see each name what broke.
func TestStraitctlVerify(t *testing.T) {
	need(t)
	joinClusterSet(t)
	ctx := context.Background()

	t.Run("verify passes on the joined clusters, failover included", func(t *testing.T) {
		r := runStraitctl(t, append([]string{"verify", "--disruptive"}, kubeconfigsFlag()...)...)
		t.Logf("straitctl verify --disruptive: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("verify failed on a working clusterset: exit %d: %s", r.code, r.stderr)
		}
		// A run that checked nothing passes too: count what it checked.
		// Three clusters, six ordered pairs: per pair two placements
		// over TCP and UDP, a ServiceImport, and per placement a Service
		// and a name; three failovers.
		for check, want := range map[string]int{"pod-to-pod/tcp": 12, "pod-to-pod/udp": 12, "service-import": 6,
			"service ": 12, "clusterset-dns": 12, "gateway-failover": 3, "active-gateway": 3} {
			if got := countRows(r.stdout, check, "pass"); got != want {
				t.Errorf("%d passed %q rows, want %d", got, check, want)
			}
		}
		// Its namespaces are gone or going.
		for _, c := range mcsClusters {
			list, err := kubeClient(t, c).CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=straitctl"})
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range list.Items {
				if ns.DeletionTimestamp == nil {
					t.Errorf("%s: verify left namespace %s behind", c, ns.Name)
				}
			}
		}
	})

	t.Run("verify fails naming the checks when c2's gateways are frozen", func(t *testing.T) {
		pids := []int{gatewayPID(t, "c2", "c2-n1"), gatewayPID(t, "c2", "c2-n2")}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		thawed := false
		thaw := func() {
			if !thawed {
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
				thawed = true
			}
		}
		defer thaw()
		r := runStraitctl(t, append([]string{"verify"}, kubeconfigsFlag()...)...)
		thaw()
		t.Logf("straitctl verify with c2's gateways frozen: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		for _, want := range []string{"pod-to-pod/tcp c1/gateway -> c2/gateway", "pod-to-pod/udp c2/non-gateway -> c1/non-gateway"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the error does not name %q: %s", want, r.stderr)
			}
		}
		// c1 and c3 still reach each other: the failures are c2's.
		if strings.Contains(r.stderr, "c1/gateway -> c3/gateway") || countRows(r.stdout, "pod-to-pod/tcp", "pass") != 4 {
			t.Errorf("checks between c1 and c3 failed too, or did not run")
		}
		waitFor(t, 60*time.Second, "c1 to report c2 connected again", func(ctx context.Context) (bool, error) {
			return strings.Contains(connectionsOf(ctx, ctrlClient(t, "c1")), "c2=connected"), nil
		})
	})
}

// countRows counts the table rows that start with check and have result
// as a whole word.
func countRows(table, check, result string) int {
	n := 0
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, check) && strings.Contains(" "+line+" ", " "+result+" ") {
			n++
		}
	}
	return n
}
