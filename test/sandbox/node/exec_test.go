package node

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestContainerExecFileMounts runs the container-exec helper (this test
// binary, see TestMain) in a throwaway mount namespace: it bind-mounts a
// pod's hosts and resolv.conf files over /etc's, a file onto a path that does
// not exist yet (made as an empty file and recorded), and a read-only
// directory, then execs the container's program, which sees them all.
func TestContainerExecFileMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: container-exec mounts in a mount namespace of its own")
	}
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hosts := write("hosts", "10.1.2.3\tweb-0.web.ns.svc.cluster.local\tweb-0\n")
	resolv := write("resolv.conf", "nameserver 10.96.0.10\n")
	conf := write("app.yaml", "key: value\n")
	vol := filepath.Join(dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	write("vol/file", "in the volume\n")
	target := filepath.Join(dir, "not", "there", "app.yaml")
	created := filepath.Join(dir, "created-paths")
	spec := ContainerSpec{
		Binary: "/bin/sh",
		Args: []string{"sh", "-c", `cat /etc/hosts /etc/resolv.conf "$1" "$2/file"; if touch "$2/new" 2>/dev/null; then echo writable; fi`,
			"sh", target, filepath.Join(dir, "ro")},
		Env: []string{"PATH=/usr/bin:/bin"},
		Mounts: []Mount{
			{Source: hosts, Target: "/etc/hosts"},
			{Source: resolv, Target: "/etc/resolv.conf"},
			{Source: conf, Target: target},
			{Source: vol, Target: filepath.Join(dir, "ro"), ReadOnly: true},
		},
		CreatedPathsFile: created,
	}
	data, _ := json.Marshal(spec)
	specPath := write("spec.json", string(data))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile("/etc/hosts")
	cmd := exec.Command(exe, "container-exec", "--spec", specPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("container-exec: %v: %s", err, out)
	}
	want := "10.1.2.3\tweb-0.web.ns.svc.cluster.local\tweb-0\nnameserver 10.96.0.10\nkey: value\nin the volume\n"
	if string(out) != want {
		t.Errorf("the container saw\n%s\nwant\n%s", out, want)
	}
	if after, _ := os.ReadFile("/etc/hosts"); string(after) != string(before) {
		t.Error("the machine's /etc/hosts changed: the mount escaped the container's mount namespace")
	}
	rec, _ := os.ReadFile(created)
	wantCreated := []string{filepath.Join(dir, "not"), filepath.Join(dir, "not", "there"), target, filepath.Join(dir, "ro")}
	if got := strings.Fields(string(rec)); strings.Join(got, " ") != strings.Join(wantCreated, " ") {
		t.Errorf("created paths %q; want %q: mount points made, outermost first", got, wantCreated)
	}
}

// TestContainerExecMountOverSources mounts a volume over a directory that
// holds the source of a later mount, as a pod's emptyDir at /work does when
// the sandbox's state directory lies under /work: every source is resolved
// before the first mount, so the later one still finds its source.
func TestContainerExecMountOverSources(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: container-exec mounts in a mount namespace of its own")
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	vol := filepath.Join(state, "pods", "vol")
	empty := filepath.Join(dir, "empty")
	for _, d := range []string{vol, empty} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vol, "file"), []byte("in the volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := ContainerSpec{
		Binary: "/bin/sh",
		Args:   []string{"sh", "-c", `ls "$1"; cat "$2/file"`, "sh", state, filepath.Join(state, "mnt")},
		Env:    []string{"PATH=/usr/bin:/bin"},
		Mounts: []Mount{
			{Source: empty, Target: state},
			{Source: vol, Target: filepath.Join(state, "mnt")},
		},
	}
	data, _ := json.Marshal(spec)
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "container-exec", "--spec", specPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("container-exec: %v: %s", err, out)
	}
	if want := "mnt\nin the volume\n"; string(out) != want {
		t.Errorf("the container saw\n%s\nwant\n%s", out, want)
	}
}
