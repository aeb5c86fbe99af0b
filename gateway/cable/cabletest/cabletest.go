// Package cabletest builds the throwaway network namespaces that cable
// driver tests run in: two "gateway hosts" joined by a veth underlay, and a
// way to run the test binary itself inside one of them as a helper process
// (a driver works in the namespace of the process that opens it).
package cabletest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Underlay addresses of the two hosts: TEST-NET-1, inside our namespaces only.
const (
	AddrA = "192.0.2.1"
	AddrB = "192.0.2.2"
)

// Run runs a command and fails the test with its output if it fails.
func Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RequireRoot skips the test when it cannot create namespaces.
func RequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, devices and routes")
	}
}

// Pair creates namespaces <prefix>a and <prefix>b joined by a veth pair
// (eth0, AddrA and AddrB /24) and removes them when the test ends. The
// prefix must not be the sandbox's ("strait-").
func Pair(t *testing.T, prefix string) (a, b string) {
	t.Helper()
	a, b = prefix+"a", prefix+"b"
	for _, ns := range []string{a, b} {
		_ = exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
		Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	Run(t, "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	Run(t, "ip", "-n", a, "addr", "add", AddrA+"/24", "dev", "eth0")
	Run(t, "ip", "-n", b, "addr", "add", AddrB+"/24", "dev", "eth0")
	Run(t, "ip", "-n", a, "link", "set", "eth0", "up")
	Run(t, "ip", "-n", b, "link", "set", "eth0", "up")
	return a, b
}

// Helper runs this test binary in namespace ns with env key=JSON(spec) and
// waits until it writes the ready file named by the returned path's content.
// The helper is told where to write by the environment variable key+"_READY".
// It returns the helper's ready message and a function that stops it
// (SIGTERM) and waits for it.
func Helper(t *testing.T, ns, key string, spec any) (ready string, stop func()) {
	t.Helper()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	readyFile := filepath.Join(t.TempDir(), "ready")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), key+"="+string(data), key+"_READY="+readyFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("helper in %s: %s", ns, stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if data, err := os.ReadFile(readyFile); err == nil {
			return string(data), stop
		}
		select {
		case <-exited:
			t.Fatalf("helper in %s exited before it was ready: %s", ns, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper in %s not ready: %s", ns, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HelperMain is what a test's TestMain calls: when the process is a helper
// (key set), it decodes the spec into v, calls body, signals ready with
// body's message, waits for SIGTERM, calls cleanup, and exits.
func HelperMain(key string, v any, body func() (ready string, cleanup func(), err error)) {
	spec := os.Getenv(key)
	if spec == "" {
		return
	}
	if err := json.Unmarshal([]byte(spec), v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	msg, cleanup, err := body()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	if err := os.WriteFile(os.Getenv(key+"_READY"), []byte(msg), 0o644); err != nil {
		os.Exit(1)
	}
	<-sigs
	if cleanup != nil {
		cleanup()
	}
	os.Exit(0)
}
