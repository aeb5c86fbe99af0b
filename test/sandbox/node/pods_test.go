package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/kubetest"
)

// TestMain lets the test binary stand in for strait-sandbox's container-exec
// helper, which the agent starts for every container.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "container-exec" && os.Args[2] == "--spec" {
		if os.Getenv(slowExecEnv) != "" {
			// TestRunningAfterExec: widen the window between the
			// helper's start and its exec of the container's program.
			time.Sleep(time.Second)
		}
		err := ContainerExec(os.Args[3])
		fmt.Fprintln(os.Stderr, "container-exec:", err)
		os.Exit(127)
	}
	if len(os.Args) >= 4 && os.Args[1] == "node-resolv-conf" {
		// TestNodeResolvConf's body, in a throwaway mount and network
		// namespace: install the node's resolv.conf, then run a lookup.
		if err := installNodeResolvConf(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "install:", err)
			os.Exit(2)
		}
		cmd := exec.Command(os.Args[3], os.Args[4:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Println("lookup failed:", err)
		}
		os.Exit(0)
	}
	if len(os.Args) == 4 && os.Args[1] == "pause" && os.Args[2] == "--hostname" {
		if err := Pause(os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "pause:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestInitStep(t *testing.T) {
	ok := func() *containerState {
		return &containerState{init: true, done: true, lastExit: &corev1.ContainerStateTerminated{ExitCode: 0}}
	}
	bad := func() *containerState {
		return &containerState{init: true, done: true, lastExit: &corev1.ContainerStateTerminated{ExitCode: 1}}
	}
	crashed := func() *containerState { // failed, will be restarted
		return &containerState{init: true, lastExit: &corev1.ContainerStateTerminated{ExitCode: 1}}
	}
	fresh := func() *containerState { return &containerState{init: true} }
	running := func() *containerState { return &containerState{init: true, running: true} }
	sidecar := func(started bool) *containerState {
		c := &containerState{init: true, sidecar: true}
		if started {
			c.startedAt = metav1.Now()
		}
		return c
	}
	for _, tc := range []struct {
		name        string
		inits       []*containerState
		next        int
		initialized bool
		failed      bool
	}{
		{"none", nil, 0, true, false},
		{"first to run", []*containerState{fresh(), fresh()}, 0, false, false},
		{"first running", []*containerState{running(), fresh()}, 0, false, false},
		{"first succeeded", []*containerState{ok(), fresh()}, 1, false, false},
		{"first crashed, to restart", []*containerState{crashed(), fresh()}, 0, false, false},
		{"second failed for good", []*containerState{ok(), bad(), fresh()}, 1, false, true},
		{"all succeeded", []*containerState{ok(), ok()}, 2, true, false},
		{"sidecar not started blocks", []*containerState{sidecar(false), fresh()}, 0, false, false},
		{"sidecar started lets the next run", []*containerState{sidecar(true), fresh()}, 1, false, false},
		{"sidecar and init done", []*containerState{ok(), sidecar(true), ok()}, 3, true, false},
	} {
		next, initialized, failed := initStep(tc.inits)
		if next != tc.next || initialized != tc.initialized || failed != tc.failed {
			t.Errorf("%s: got next=%d initialized=%v failed=%v; want %d %v %v", tc.name, next, initialized, failed, tc.next, tc.initialized, tc.failed)
		}
	}
}

func TestRestartPolicy(t *testing.T) {
	app, init, side := &containerState{}, &containerState{init: true}, &containerState{init: true, sidecar: true}
	for _, tc := range []struct {
		c    *containerState
		pod  corev1.RestartPolicy
		want corev1.RestartPolicy
	}{
		{app, "", corev1.RestartPolicyAlways},
		{app, corev1.RestartPolicyNever, corev1.RestartPolicyNever},
		{init, corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure},
		{init, "", corev1.RestartPolicyOnFailure},
		{init, corev1.RestartPolicyNever, corev1.RestartPolicyNever},
		{side, corev1.RestartPolicyNever, corev1.RestartPolicyAlways},
	} {
		if got := tc.c.restartPolicy(tc.pod); got != tc.want {
			t.Errorf("init=%v sidecar=%v pod %q: got %q; want %q", tc.c.init, tc.c.sidecar, tc.pod, got, tc.want)
		}
	}
}

// agentFixture runs the agent's pod handling (informer, pod workers, real
// container processes through this test binary as container-exec) against a
// real kube-apiserver, for hostNetwork pods: no network namespace is made.
type agentFixture struct {
	a      *Agent
	client kubernetes.Interface
	mnt    string // a scratch directory for the pods' mount paths
	// podNetwork: pods get network namespaces of their own (the fixture
	// runs in a throwaway network namespace); else they are hostNetwork.
	podNetwork bool
}

// newAgentFixture runs an agent for node-under-test against a real
// apiserver; each opt may change its configuration before it starts.
func newAgentFixture(t *testing.T, opts ...func(*Config)) *agentFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent starts containers in mount namespaces of their own")
	}
	requireBusybox(t)
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	client, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// No controller-manager makes the default ServiceAccount, which the
	// ServiceAccount admission plugin wants.
	_, err = client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &Agent{
		cfg: Config{
			NodeName: "node-under-test", NodeIP: netip.MustParseAddr("192.168.77.2"),
			ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local",
			KubernetesServiceIP: netip.MustParseAddr("10.96.0.1"),
			Dir:                 dir, ImageBin: t.TempDir(), KubeBin: t.TempDir(),
			CreatedPathsFile: filepath.Join(dir, "created-paths"),
			StopGrace:        2 * time.Second, MarkerEnv: "STRAIT_NODE_TEST=1", SandboxExecutable: exe,
		},
		log:     slog.New(slog.NewTextHandler(t.Output(), nil)),
		client:  client,
		workers: map[string]*podWorker{},
		ips:     map[netip.Addr]bool{},
	}
	for _, opt := range opts {
		opt(&a.cfg)
	}
	runCtx, cancel := context.WithCancel(ctx)
	a.runPods(runCtx)
	t.Cleanup(func() {
		cancel()
		a.mu.Lock()
		for _, w := range a.workers {
			w.shutdown()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
	return &agentFixture{a: a, client: client, mnt: t.TempDir()}
}

// podDir is where the agent keeps a pod's files (logs, spec, /etc files).
func (f *agentFixture) podDir(name string) string {
	return filepath.Join(f.a.cfg.Dir, "pods", "default_"+name)
}

func (f *agentFixture) create(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	pod.Namespace = "default"
	pod.Spec.NodeName = f.a.cfg.NodeName
	pod.Spec.HostNetwork = !f.podNetwork
	pod.Spec.AutomountServiceAccountToken = ptr.To(false)
	pod.Spec.TerminationGracePeriodSeconds = ptr.To(int64(2))
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitPod polls the pod until cond holds, failing with what it last saw.
func (f *agentFixture) waitPod(t *testing.T, name, what string, timeout time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := f.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s: %s: %v; last status %+v", name, what, err, last.Status)
	}
	return last
}

func condition(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// TestInitContainersAndPodFiles runs a pod with two init containers and two
// app containers for real: the init containers run in order, each to
// success, while the pod is Pending and not Initialized; then the app
// containers start, and see the pod's resolv.conf (dnsPolicy
// ClusterFirstWithHostNet), downward API env and files, and image defaults.
func TestInitContainersAndPodFiles(t *testing.T) {
	f := newAgentFixture(t)
	data := filepath.Join(f.mnt, "data")
	info := filepath.Join(f.mnt, "podinfo")
	mounts := []corev1.VolumeMount{{Name: "data", MountPath: data}}
	env := []corev1.EnvVar{{Name: "DIR", Value: data}}
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "init", Labels: map[string]string{"app": "demo", "tier": "test"}},
		Spec: corev1.PodSpec{
			DNSPolicy: corev1.DNSClusterFirstWithHostNet,
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				}}}},
			},
			InitContainers: []corev1.Container{
				// command with $(VAR) from the container's env
				{Name: "first", Image: "busybox:1.36", Env: env, VolumeMounts: mounts,
					Command: []string{"sh", "-c", "sleep 2; echo first >> $(DIR)/order"}},
				// args only: busybox has no ENTRYPOINT, so args are the command
				{Name: "second", Image: "docker.io/library/busybox", Env: env, VolumeMounts: mounts,
					Args: []string{"/bin/sh", "-c", "echo second >> $DIR/order"}},
			},
			Containers: []corev1.Container{
				{Name: "main", Image: "nicolaka/netshoot:v0.13", VolumeMounts: append(mounts, corev1.VolumeMount{Name: "podinfo", MountPath: info}),
					Env: append(env,
						corev1.EnvVar{Name: "POD_IPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIPs"}}},
						corev1.EnvVar{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}}),
					Command: []string{"/bin/sh", "-c", `cat $DIR/order; cat /etc/resolv.conf; echo "ips=$POD_IPS sa=$SA path=$PATH"; cat ` + info + `/labels; echo; echo done; exec sleep 600`}},
				// neither command nor args: alpine/socat's ENTRYPOINT socat
				// with these args
				{Name: "socat", Image: "alpine/socat", Args: []string{"-u", "EXEC:echo socat-ran", "STDOUT"}},
			},
		},
	})
	p := f.waitPod(t, "init", "Pending and initialising", 30*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodPending && condition(p, corev1.PodInitialized) == corev1.ConditionFalse &&
			len(p.Status.InitContainerStatuses) == 2 && p.Status.InitContainerStatuses[0].State.Running != nil
	})
	if w := p.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("app container while initialising: %+v; want waiting PodInitializing", p.Status.ContainerStatuses[0].State)
	}
	if w := p.Status.InitContainerStatuses[1].State.Waiting; w == nil {
		t.Errorf("second init container started before the first finished: %+v", p.Status.InitContainerStatuses[1].State)
	}
	p = f.waitPod(t, "init", "Running and Initialized", 30*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && condition(p, corev1.PodInitialized) == corev1.ConditionTrue &&
			p.Status.ContainerStatuses[0].State.Running != nil
	})
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 || !cs.Ready {
			t.Errorf("init container %s: %+v ready=%v; want terminated with 0 and ready", cs.Name, cs.State, cs.Ready)
		}
	}
	var log string
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		log = readContainerLog(f.podDir("init"), "main")
		return strings.Contains(log, "done\n"), nil
	}); err != nil {
		t.Fatalf("main container's log: %q", log)
	}
	for _, want := range []string{
		"first\nsecond\n",
		"nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local",
		"options ndots:5\n",
		"ips=192.168.77.2 sa=default path=" + filepath.Join(f.a.cfg.Dir, "images", "nicolaka_netshoot", "bin") + "\n",
		"app=\"demo\"\ntier=\"test\"\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("main container's log lacks %q:\n%s", want, log)
		}
	}
	// The socat container starts after main and runs on its own clock.
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		log = readContainerLog(f.podDir("init"), "socat")
		return strings.Contains(log, "socat-ran\n"), nil
	}); err != nil {
		t.Errorf("socat container's log %q; want its entrypoint run with the args", log)
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err != nil || strings.Contains(string(b), "10.96.0.10") {
		t.Errorf("the pod's resolv.conf leaked into the test's mount namespace: %q %v", b, err)
	}
}

// TestInitFailureFailsPod: with restartPolicy Never an init container that
// fails fails the pod, and the app containers never start.
func TestInitFailureFailsPod(t *testing.T) {
	f := newAgentFixture(t)
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "initfail"},
		Spec: corev1.PodSpec{
			RestartPolicy:  corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: "fails", Image: "busybox", Command: []string{"sh", "-c", "exit 3"}}},
			Containers:     []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sleep", "600"}}},
		},
	})
	p := f.waitPod(t, "initfail", "Failed", 30*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if st := p.Status.InitContainerStatuses[0].State.Terminated; st == nil || st.ExitCode != 3 {
		t.Errorf("init container: %+v; want terminated with 3", p.Status.InitContainerStatuses[0].State)
	}
	if st := p.Status.ContainerStatuses[0].State; st.Running != nil || st.Terminated != nil {
		t.Errorf("app container ran: %+v", st)
	}
	if latestAttempt(f.podDir("initfail"), "main") >= 0 {
		t.Error("app container started after its pod's init container failed")
	}
}

// TestDeleteIgnoringSIGTERM: a pod whose container ignores SIGTERM is killed
// when its grace period is over, and the agent's final delete removes it.
func TestDeleteIgnoringSIGTERM(t *testing.T) {
	f := newAgentFixture(t)
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stubborn"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox",
			Command: []string{"sh", "-c", `trap "echo got TERM" TERM; echo trapped; while true; do sleep 1; done`}}}},
	})
	p := f.waitPod(t, "stubborn", "Running", 30*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	var pid int
	if _, err := fmt.Sscanf(p.Status.ContainerStatuses[0].ContainerID, "strait-sandbox://%d", &pid); err != nil {
		t.Fatalf("container ID %q: %v", p.Status.ContainerStatuses[0].ContainerID, err)
	}
	// The trap must be set before the SIGTERM, or the test proves nothing.
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(readContainerLog(f.podDir("stubborn"), "main"), "trapped"), nil
	}); err != nil {
		t.Fatal("the container never set its trap")
	}
	start := time.Now()
	if err := f.client.CoreV1().Pods("default").Delete(context.Background(), "stubborn", metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(2))}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := f.client.CoreV1().Pods("default").Get(ctx, "stubborn", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("pod still there %s after its deletion", time.Since(start))
	}
	// The container got SIGTERM, lived on, and was killed: what ended it
	// was the grace period running out.
	if log := readContainerLog(f.podDir("stubborn"), "main"); !strings.Contains(log, "got TERM") {
		t.Errorf("the container's log shows no SIGTERM: %q", log)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(stat), ") Z") {
			t.Errorf("container process %d still alive after the pod's deletion", pid)
		}
	}
}

// slowExecEnv, in the container-exec helper's environment (the agent gives
// it the marker variable), makes the helper wait a second before it execs.
const slowExecEnv = "STRAIT_NODE_TEST_SLOW_EXEC"

// TestRunningAfterExec: a container counts as started (its PID recorded
// for exec and logs, the pod Running) only once the container-exec helper
// has become the container's program, with the container's environment
// and mounts, as a CRI runtime's StartContainer returns only after runc's
// init has exec'd. Before, kubectl exec right after the pod turned Running
// could enter the helper's bare namespace: no token file, no
// KUBERNETES_SERVICE_HOST (TestSandboxServiceAccountTokenAndRBAC flaked so).
func TestRunningAfterExec(t *testing.T) {
	f := newAgentFixture(t, func(c *Config) { c.MarkerEnv = slowExecEnv + "=1" })
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "slow-start"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox",
			Command: []string{"sleep", "60"}, Env: []corev1.EnvVar{{Name: "FOO", Value: "bar"}}}}},
	})
	var pid int
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		data, err := os.ReadFile(filepath.Join(f.podDir("slow-start"), "runtime.json"))
		if err != nil {
			return false, nil
		}
		var info RuntimeInfo
		if json.Unmarshal(data, &info) != nil {
			return false, nil
		}
		pid = info.Containers["main"]
		return pid > 0, nil
	})
	if err != nil {
		t.Fatal("no PID recorded for the container")
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	if env := strings.Split(string(environ), "\x00"); !slices.Contains(env, "FOO=bar") {
		t.Errorf("process %d recorded as the container has environment %q: not yet the container's program", pid, env)
	}
	p := f.waitPod(t, "slow-start", "Running", 30*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if s := p.Status.ContainerStatuses[0].State.Running; s == nil {
		t.Errorf("container state %+v, want running", p.Status.ContainerStatuses[0].State)
	}
}

// podNetnsEnv, when set, names the throwaway network namespace that
// TestPodNetwork's body runs in.
const podNetnsEnv = "STRAIT_H_PODS_NETNS"

// TestPodNetwork runs a pod on a pod network for real: the test binary runs
// itself again in a throwaway network namespace (strait-h-pods-<pid>), where
// the agent makes the pod's namespaces (pause, veth) and its /etc files.
// Two containers share the pod's network namespace: a socat server (the
// alpine/socat image's entrypoint with args) answers on localhost, a netshoot
// container reaches it there and sees the pod's hostname, hosts and
// resolv.conf (dnsPolicy ClusterFirst).
func TestPodNetwork(t *testing.T) {
	if os.Getenv(podNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root: makes a network namespace")
		}
		requireBusybox(t)
		ns := fmt.Sprintf("strait-h-pods-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("lo up: %v: %s", err, out)
		}
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestPodNetwork$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), podNetnsEnv+"="+ns)
		out, err := cmd.CombinedOutput()
		t.Logf("in %s:\n%s", ns, out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestPodNetwork") {
			t.Fatalf("TestPodNetwork in %s: %v", ns, err)
		}
		return
	}
	f := newAgentFixture(t)
	f.podNetwork = true
	f.a.podCIDR = netip.MustParsePrefix("10.244.7.0/24")
	f.a.gateway = f.a.podCIDR.Addr().Next()
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "twoc"},
		Spec: corev1.PodSpec{
			Subdomain: "sub",
			Containers: []corev1.Container{
				{Name: "server", Image: "docker.io/alpine/socat:1.8.0.1", Args: []string{"TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:echo hello-from-server"}},
				{Name: "client", Image: "nicolaka/netshoot", Command: []string{"sh", "-c", `hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf
for i in $(seq 100); do out=$(nc -w 1 127.0.0.1 8080 </dev/null) && [ -n "$out" ] && break; sleep 0.1; done
echo "got=$out"; echo done; exec sleep 600`}},
			},
		},
	})
	p := f.waitPod(t, "twoc", "Running with both containers", 30*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 2 &&
			p.Status.ContainerStatuses[0].State.Running != nil && p.Status.ContainerStatuses[1].State.Running != nil
	})
	if p.Status.PodIP != "10.244.7.2" {
		t.Errorf("pod IP %q; want the first after the gateway", p.Status.PodIP)
	}
	var log string
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		log = readContainerLog(f.podDir("twoc"), "client")
		return strings.Contains(log, "done\n"), nil
	}); err != nil {
		t.Fatalf("client container's log: %q", log)
	}
	for _, want := range []string{
		"twoc\ntwoc\n", // hostname(1), then /etc/hostname
		"127.0.0.1\tlocalhost\n",
		"10.244.7.2\ttwoc.sub.default.svc.cluster.local\ttwoc\n",
		"nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
		"got=hello-from-server\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("client container's log lacks %q:\n%s", want, log)
		}
	}
}

// TestSidecar: a native sidecar (an init container with restartPolicy
// Always) starts before the next init container and keeps running beside the
// app container; when the app container finishes a restartPolicy Never pod,
// the pod Succeeds and the sidecar is stopped.
func TestSidecar(t *testing.T) {
	f := newAgentFixture(t)
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sidecar"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{
				{Name: "side", Image: "busybox", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways), Command: []string{"sleep", "600"}},
				{Name: "init", Image: "busybox", Command: []string{"true"}},
			},
			Containers: []corev1.Container{{Name: "app", Image: "busybox", Command: []string{"sh", "-c", "sleep 2"}}},
		},
	})
	p := f.waitPod(t, "sidecar", "Running beside its sidecar", 30*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && condition(p, corev1.PodInitialized) == corev1.ConditionTrue &&
			p.Status.ContainerStatuses[0].State.Running != nil
	})
	if s := p.Status.InitContainerStatuses; s[0].State.Running == nil || s[1].State.Terminated == nil {
		t.Errorf("init statuses %+v; want the sidecar running and the init container finished", s)
	}
	p = f.waitPod(t, "sidecar", "Succeeded", 30*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded && p.Status.InitContainerStatuses[0].State.Terminated != nil
	})
	if p.Status.ContainerStatuses[0].State.Terminated.ExitCode != 0 {
		t.Errorf("app container %+v", p.Status.ContainerStatuses[0].State)
	}
}

// TestNodeResolvConf installs the node's own resolv.conf in a throwaway
// mount and network namespace (ip netns exec makes both): a lookup there
// reads it and fails at once, with no nameserver to wait for, and the
// machine's /etc/resolv.conf stays as it was.
func TestNodeResolvConf(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and mounts in it")
	}
	nslookup := lookHost("nslookup")
	if nslookup == "" {
		t.Fatal("nslookup is not installed (hack/prereqs.sh installs bind9-dnsutils)")
	}
	before, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("strait-h-pods-rc%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", ns, exe, "node-resolv-conf", dir, "/bin/sh", "-c",
		"cat /etc/resolv.conf; "+nslookup+" -timeout=5 -retry=1 kubernetes.default").CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), nodeResolvConf) || !strings.Contains(string(out), "lookup failed") {
		t.Errorf("want the node's resolv.conf and a failed lookup, got:\n%s", out)
	}
	// Refused at once by the loopback default, not waited out: a timeout
	// would print "timed out" or "no servers could be reached".
	if !strings.Contains(string(out), "connection refused") {
		t.Errorf("the lookup was not refused:\n%s", out)
	}
	t.Logf("the lookup failed in %s", took)
	if after, _ := os.ReadFile("/etc/resolv.conf"); string(after) != string(before) {
		t.Errorf("the machine's /etc/resolv.conf changed to %q", after)
	}
}

// readContainerLog returns what a container of a pod has written to its latest
// log, without timestamps; "" when it has none.
func readContainerLog(podDir, container string) string {
	var b strings.Builder
	_ = WriteContainerLog(context.Background(), &b, podDir, container, LogOptions{TailLines: -1})
	return b.String()
}

// TestClaimDir: a pod made again under the same name (a StatefulSet's web-0)
// does not inherit its predecessor's logs; the same pod keeps its own.
func TestClaimDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "default_web-0")
	old := &podWorker{uid: "uid-old", dir: dir}
	if err := old.claimDir(); err != nil {
		t.Fatal(err)
	}
	log := containerLogPath(dir, "web", 0)
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, []byte("2026-11-30T00:00:00Z stdout F old pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := old.claimDir(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(log); err != nil {
		t.Fatalf("the same pod lost its own log: %v", err)
	}
	again := &podWorker{uid: "uid-new", dir: dir}
	if err := again.claimDir(); err != nil {
		t.Fatal(err)
	}
	if got := readContainerLog(dir, "web"); got != "" {
		t.Errorf("the new pod of the same name sees %q", got)
	}
	if uid, _ := os.ReadFile(filepath.Join(dir, "uid")); string(uid) != "uid-new" {
		t.Errorf("uid file %q, want uid-new", uid)
	}
}

// TestStatusReconciled marks a running pod NotReady behind the agent's back,
// as the node lifecycle controller does to every pod of a node whose Lease
// lapsed (MarkPodsNotReady): the agent must set it Ready again, as the
// kubelet's status manager does, or the pod's Services lose it for good.
func TestStatusReconciled(t *testing.T) {
	f := newAgentFixture(t)
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "marked"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox", Command: []string{"sleep", "600"}}}},
	})
	p := f.waitPod(t, "marked", "Ready", 30*time.Second, func(p *corev1.Pod) bool {
		return condition(p, corev1.PodReady) == corev1.ConditionTrue
	})
	for i, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			p.Status.Conditions[i].Status, p.Status.Conditions[i].Reason = corev1.ConditionFalse, "NodeNotReady"
		}
	}
	if _, err := f.client.CoreV1().Pods("default").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitPod(t, "marked", "Ready again after the NotReady mark", 30*time.Second, func(p *corev1.Pod) bool {
		return condition(p, corev1.PodReady) == corev1.ConditionTrue
	})
}

// TestNodeReadyReconciled sets the node's Ready condition Unknown, as the
// node lifecycle controller does when the node's Lease lapses: the next
// heartbeat (every 10 s) sets it True again, not the minute's refresh.
func TestNodeReadyReconciled(t *testing.T) {
	f := newAgentFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes := f.client.CoreV1().Nodes()
	if _, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: f.a.cfg.NodeName}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.a.setReady(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); f.a.heartbeat(ctx) }()
	defer func() { cancel(); <-done }()
	n, err := nodes.Get(ctx, f.a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions[0].Status, n.Status.Conditions[0].Reason = corev1.ConditionUnknown, "NodeStatusUnknown"
	if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*leaseRenew, true, func(ctx context.Context) (bool, error) {
		n, err := nodes.Get(ctx, f.a.cfg.NodeName, metav1.GetOptions{})
		return err == nil && n.Status.Conditions[0].Status == corev1.ConditionTrue, nil
	})
	if err != nil {
		t.Fatalf("the node stayed not Ready after the lifecycle controller's mark: %v", err)
	}
}
