package kubetest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"strait.dev/strait/test/proc"
)

// childEnv makes the test binary, run again by TestPanicLeavesNoProcess, start
// an Env and panic instead of running the tests.
const childEnv = "STRAIT_KUBETEST_PANIC_CHILD"

func TestMain(m *testing.M) {
	if out := os.Getenv(childEnv); out != "" {
		panicChild(out)
	}
	os.Exit(m.Run())
}

type childReport struct {
	PIDs []int  `json:"pids"`
	Dir  string `json:"dir"`
}

func panicChild(out string) {
	env, err := Start(context.Background(), Options{SkipCRDs: true})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(3)
	}
	data, _ := json.Marshal(childReport{PIDs: env.PIDs(), Dir: env.Dir})
	if err := os.WriteFile(out, data, 0o644); err != nil {
		os.Exit(4)
	}
	panic("kubetest: the child panics on purpose, with etcd and kube-apiserver running")
}

// waitGone waits for every PID to disappear. The bound only keeps a broken
// harness from hanging the suite; a dead parent's children die at once.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	var alive []int
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		alive = alive[:0]
		for _, pid := range pids {
			if proc.Alive(pid) {
				alive = append(alive, pid)
			}
		}
		return len(alive) == 0, nil
	}); err != nil {
		t.Fatalf("processes %v are still running", alive)
	}
}

func TestStartStopLeavesNothing(t *testing.T) {
	start := time.Now()
	env, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd + kube-apiserver + CRDs ready in %s", time.Since(start).Round(time.Millisecond))
	pids := env.PIDs()
	if len(pids) != 2 {
		t.Fatalf("want 2 processes (etcd, kube-apiserver), got %v", pids)
	}
	for _, pid := range pids {
		if !proc.Alive(pid) {
			t.Fatalf("process %d is not running while the env is up", pid)
		}
	}

	// The admin kubeconfig works as a file, the way a person would use it.
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("admin kubeconfig: %v", err)
	}

	env.Stop()
	env.Stop() // idempotent
	for _, pid := range pids {
		if proc.Alive(pid) {
			t.Errorf("process %d still runs after Stop", pid)
		}
	}
	if _, err := os.Stat(env.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop (err %v)", env.Dir, err)
	}
}

func TestPanicLeavesNoProcess(t *testing.T) {
	report := filepath.Join(t.TempDir(), "child.json")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+report)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child exited 0; want a panic. Output:\n%s", out)
	}
	data, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("child wrote no report (%v); output:\n%s", rerr, out)
	}
	var r childReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(r.Dir) })
	if len(r.PIDs) != 2 {
		t.Fatalf("child reported %v; want etcd and kube-apiserver", r.PIDs)
	}
	waitGone(t, r.PIDs)
}

func TestUsersAndServiceAccounts(t *testing.T) {
	env := New(t, Options{})
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(env.Config)

	alice, err := env.UserConfig("alice", "strait-testers")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := env.ServiceAccountConfig(ctx, "strait-system", "reader")
	if err != nil {
		t.Fatal(err)
	}

	canListPods := func(cfg *rest.Config) error {
		_, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Pods("strait-system").List(ctx, metav1.ListOptions{})
		return err
	}
	for name, cfg := range map[string]*rest.Config{"user": alice, "service account": sa} {
		if err := canListPods(cfg); !apierrors.IsForbidden(err) {
			t.Fatalf("%s without a binding: want Forbidden, got %v", name, err)
		}
	}

	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "strait-system"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}
	if _, err := admin.RbacV1().Roles("strait-system").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "strait-system"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects: []rbacv1.Subject{
			{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "strait-testers"},
			{Kind: "ServiceAccount", Name: "reader", Namespace: "strait-system"},
		},
	}
	if _, err := admin.RbacV1().RoleBindings("strait-system").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*rest.Config{"user": alice, "service account": sa} {
		// RBAC changes reach the authorizer through a watch: wait for it.
		var err error
		if werr := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			err = canListPods(cfg)
			return err == nil, nil
		}); werr != nil {
			t.Fatalf("%s with a binding: %v", name, err)
		}
		// ...and nothing beyond the role.
		_, err = kubernetes.NewForConfigOrDie(cfg).CoreV1().Secrets("strait-system").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s listing secrets: want Forbidden, got %v", name, err)
		}
	}
}
