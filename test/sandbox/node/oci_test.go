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
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/proc"
)

// ociChildEnv marks the test binary that TestOCIContainer runs inside a
// throwaway network namespace (and the mount namespace "ip netns exec" makes),
// where the test may mount cgroup2 over /sys/fs/cgroup as the node agent does;
// its value is the probe program's path.
const ociChildEnv = "STRAIT_OCI_TEST_PROBE"

// TestOCIContainer runs containers from a real image (strait-gateway's OCI
// archive, from make images) under crun through the pod worker, as the
// agent does with runtime oci: the image's entrypoint with the pod's args;
// the pod's command (a probe program from a volume), env, volumes, /etc
// files, working directory, capabilities, read-only root, the pod's network
// and UTS namespaces, exit codes and logs; crun exec into a running
// container; SIGTERM on stop.
func TestOCIContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: crun, overlay mounts and network namespaces")
	}
	if lookHost("crun") == "" {
		t.Skip("crun is not installed (hack/prereqs.sh installs it)")
	}
	images := os.Getenv("STRAIT_IMAGES_DIR")
	if images == "" {
		root, err := kubetest.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		images = filepath.Join(root, "_output", "images")
	}
	if _, err := os.Stat(filepath.Join(images, "strait-gateway.tar")); err != nil {
		t.Skipf("no image archive (run make images IMAGES_ARCH=%s, or set STRAIT_IMAGES_DIR): %v", runtime.GOARCH, err)
	}
	if probe := os.Getenv(ociChildEnv); probe != "" {
		ociContainerTest(t, images, probe)
		return
	}
	probe := filepath.Join(t.TempDir(), "ociprobe")
	build := exec.Command("go", "build", "-o", probe, "./testdata/ociprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v: %s", err, out)
	}
	ns := fmt.Sprintf("strait-h-oci%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestOCIContainer$", "-test.v", "-test.count=1")
	child.Env = append(os.Environ(), ociChildEnv+"="+probe, "STRAIT_IMAGES_DIR="+images)
	out, err := child.CombinedOutput()
	t.Logf("in network namespace %s:\n%s", ns, out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestOCIContainer") {
		t.Fatalf("the test in the namespace did not pass: %v", err)
	}
}

// ociContainerTest is TestOCIContainer's body in its namespaces.
func ociContainerTest(t *testing.T, images, probe string) {
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if err := mountCgroup2(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	rt := &ociRuntime{Crun: lookHost("crun"), Root: filepath.Join(dir, "crun"), Archives: images, Cache: filepath.Join(dir, "cache")}
	a := &Agent{
		cfg: Config{
			NodeName: "n1", NodeIP: netip.MustParseAddr("192.168.77.2"), Dir: dir,
			ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local",
			KubernetesServiceIP: netip.MustParseAddr("10.96.0.1"), MarkerEnv: "STRAIT_NODE_TEST=1",
		},
		log: slog.New(slog.NewTextHandler(t.Output(), nil)), oci: rt,
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "oci", Namespace: "default", UID: "0c1c0c1c-0000-4000-8000-000000000001"}}
	w := newPodWorker(a, pod)
	if err := w.claimDir(); err != nil {
		t.Fatal(err)
	}
	data, probeDir := t.TempDir(), filepath.Dir(probe)
	if err := os.WriteFile(filepath.Join(data, "hello"), []byte("hello from the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.volumes = map[string]string{"data": data, "probe": probeDir}
	etc, err := a.writeEtcFiles(pod, []string{"10.244.1.5"}, w.dir)
	if err != nil {
		t.Fatal(err)
	}
	w.etc = &etc
	// The pod's sandbox: a process holding new network and UTS namespaces.
	pause := exec.Command("unshare", "--net", "--uts", "sh", "-c", "hostname oci-pod && exec sleep 600")
	if err := proc.Start(pause); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(pause, 0) })
	podIP := netip.MustParseAddr("10.244.1.5")
	w.sandbox = &podSandbox{pause: pause, ip: podIP, ips: []netip.Addr{podIP}}
	// The pause process's hostname is set once its shell ran "hostname".
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		out, _ := exec.Command("nsenter", "--target", fmt.Sprint(pause.Process.Pid), "--uts", "hostname").Output()
		return strings.TrimSpace(string(out)) == "oci-pod", nil
	}); err != nil {
		t.Fatal("the pod's UTS namespace has no hostname")
	}
	podNetNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pause.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, c corev1.Container) (*containerState, string) {
		t.Helper()
		cs := &containerState{spec: c}
		w.containers = append(w.containers, cs)
		w.start(ctx, pod, cs)
		if cs.waiting != nil || !cs.running {
			t.Fatalf("container %s did not start: %+v", c.Name, cs.waiting)
		}
		if cs.oci == nil || cs.pid <= 0 {
			<-cs.exited
			t.Fatalf("container %s: crun made no container (pid %d); log:\n%s", c.Name, cs.pid, readContainerLog(w.dir, c.Name))
		}
		return cs, readContainerLog(w.dir, c.Name)
	}
	finish := func(t *testing.T, cs *containerState) (int, string) {
		t.Helper()
		select {
		case <-cs.exited:
		case <-time.After(time.Minute):
			t.Fatalf("container %s still runs", cs.spec.Name)
		}
		return cs.cmd.ProcessState.ExitCode(), readContainerLog(w.dir, cs.spec.Name)
	}

	t.Run("entrypoint", func(t *testing.T) {
		cs, _ := run(t, corev1.Container{Name: "gateway", Image: "strait/strait-gateway:devel", Args: []string{"-help"}})
		code, log := finish(t, cs)
		if code != 0 || !strings.Contains(log, "-cluster-id") {
			t.Errorf("strait-gateway -help: exit %d, log:\n%s", code, log)
		}
		if got := cs.oci.Image.Config.Entrypoint; len(got) != 1 || got[0] != "/strait-gateway" {
			t.Errorf("image entrypoint %q", got)
		}
	})

	t.Run("pod spec", func(t *testing.T) {
		cs, _ := run(t, corev1.Container{
			Name: "probe", Image: "registry.example/strait/strait-gateway:devel",
			Command:    []string{"/probe/ociprobe", "$(GREETING)", "/data/hello", "/etc/resolv.conf"},
			Env:        []corev1.EnvVar{{Name: "GREETING", Value: "hi"}},
			WorkingDir: "/data",
			VolumeMounts: []corev1.VolumeMount{
				{Name: "probe", MountPath: "/probe", ReadOnly: true},
				{Name: "data", MountPath: "/data", ReadOnly: true},
			},
			SecurityContext: &corev1.SecurityContext{
				Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN"}},
				ReadOnlyRootFilesystem: ptr.To(true),
			},
		})
		code, log := finish(t, cs)
		if code != 3 {
			t.Errorf("exit code %d, want the probe's 3", code)
		}
		for _, want := range []string{
			`args=["/probe/ociprobe" "hi" "/data/hello" "/etc/resolv.conf"]`,
			"env.GREETING=hi",
			"env.PATH=" + hostPATH,
			"env.STRAIT_NODE_TEST=1",
			"uid=0 gid=0 pid=1",
			"cwd=/data",
			"netns=" + podNetNS,
			"hostname=oci-pod",
			"CapEff=0000000000001000", // NET_ADMIN (12) alone
			"CapBnd=0000000000001000",
			`file./data/hello="hello from the node"`,
			"nameserver 10.96.0.10",
			"rootwrite=open /probe-write: read-only file system",
			"image=strait-gateway",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("the probe's output lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("exec and stop", func(t *testing.T) {
		cs, _ := run(t, corev1.Container{
			Name: "waiter", Image: "strait/strait-gateway:devel", Command: []string{"/probe/ociprobe", "wait"},
			VolumeMounts:    []corev1.VolumeMount{{Name: "probe", MountPath: "/probe", ReadOnly: true}},
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		})
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			return strings.Contains(readContainerLog(w.dir, "waiter"), "waiting"), nil
		}); err != nil {
			t.Fatalf("the waiter did not start: %s", readContainerLog(w.dir, "waiter"))
		}
		w.writeRuntime(pod)
		var info RuntimeInfo
		if data, err := os.ReadFile(filepath.Join(w.dir, "runtime.json")); err != nil || json.Unmarshal(data, &info) != nil {
			t.Fatalf("runtime.json: %v", err)
		}
		if info.Containers["waiter"] != cs.pid || info.OCIContainers["waiter"] != cs.oci.ID || info.OCIRoot != rt.Root {
			t.Errorf("runtime.json %+v: want the waiter's PID %d and crun ID %s", info, cs.pid, cs.oci.ID)
		}
		out, err := rt.execCommand(cs.oci.ID, []string{"/probe/ociprobe", "/proc/1/cmdline"}).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("crun exec: %v, want exit status 3: %s", err, out)
		}
		for _, want := range []string{
			"netns=" + podNetNS,
			"CapEff=" + fmt.Sprintf("%016x", ownCaps(t)),         // privileged: every capability the agent has
			"rootwrite=<nil>",                                    // a writable layer of its own
			`file./proc/1/cmdline="/probe/ociprobe\x00wait\x00"`, // the container's first process
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("crun exec's output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(string(out), " pid=1\n") {
			t.Errorf("exec ran as the container's first process:\n%s", out)
		}
		w.stopContainer(cs, 30*time.Second)
		code, log := finish(t, cs)
		if code != 0 || !strings.Contains(log, "signal=terminated") {
			t.Errorf("stop: exit %d, want 0 after SIGTERM; log:\n%s", code, log)
		}
		if _, err := os.Stat(filepath.Join(cs.oci.Image.Rootfs, "probe-write")); err == nil {
			t.Error("a container's write reached the unpacked image")
		}
		if _, err := os.Stat(cs.oci.Bundle); err == nil {
			t.Errorf("the bundle %s outlived its container", cs.oci.Bundle)
		}
	})

	// The test workload's image, as the e2e deploy and exec it: its
	// entrypoint serving, and its own strait-testpod (by name, as straitctl
	// execs it), ping and ip exec'd into it (the image's PATH and files
	// alone).
	t.Run("test workload", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(images, "strait-testpod.tar")); err != nil {
			t.Skipf("no test workload image: %v", err)
		}
		if out, err := exec.Command("nsenter", "--target", fmt.Sprint(pause.Process.Pid), "--net", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("loopback up in the pod: %v: %s", err, out)
		}
		cs, _ := run(t, corev1.Container{Name: "testpod", Image: "strait/testpod:e2e", Args: []string{"serve", "--udp-echo", "9001"}})
		defer w.stopContainer(cs, 5*time.Second)
		execIn := func(argv ...string) string {
			t.Helper()
			var out []byte
			var err error
			// The first exec may come before serve listens.
			_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
				out, err = rt.execCommand(cs.oci.ID, argv).CombinedOutput()
				return err == nil, nil
			})
			if err != nil {
				t.Errorf("crun exec %s: %v: %s", strings.Join(argv, " "), err, out)
			}
			return string(out)
		}
		if out := execIn("strait-testpod", "connect", "--udp", "127.0.0.1:9001", "--bytes", "3000"); !strings.Contains(out, `"ok":true`) {
			t.Errorf("strait-testpod connect to its own UDP echo: %s", out)
		}
		if out := execIn("ping", "-c", "1", "-s", "3000", "-W", "2", "127.0.0.1"); !strings.Contains(out, "1 received") {
			t.Errorf("ping in the container: %s", out)
		}
		if out := execIn("ip", "-o", "addr", "show", "dev", "lo"); !strings.Contains(out, "127.0.0.1/8") {
			t.Errorf("ip addr in the container: %s", out)
		}
		if _, err := os.Stat(filepath.Join(binDirOf(t), "strait-testpod")); err != nil {
			t.Logf("not checked that the machine's strait-testpod is out of the container's sight: %v (make build writes it)", err)
		} else if out, err := rt.execCommand(cs.oci.ID, []string{filepath.Join(binDirOf(t), "strait-testpod"), "version"}).CombinedOutput(); err == nil {
			t.Errorf("the machine's strait-testpod ran in the container; its root is not the image: %s", out)
		}
	})
}

// binDirOf is the repository's _output/bin, where make build writes the
// binaries the host runtime maps.
func binDirOf(t *testing.T) string {
	t.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "_output", "bin")
}

// ownCaps is the test process's bounding set, what a privileged container gets.
func ownCaps(t *testing.T) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			var m uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &m); err == nil {
				return m
			}
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return 0
}
