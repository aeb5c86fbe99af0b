package nodenet_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
)

// requireRoot skips a test that needs to create network namespaces.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates throwaway network namespaces (nodenet-test-*) with devices, routes and iptables rules")
	}
	for _, bin := range []string{"ip", "iptables-restore", "ip6tables-restore", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (iproute2, iptables packages): %v", bin, err)
		}
	}
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates network namespace nodenet-test-<suffix> with lo up and
// removes it when the test ends.
func newNetns(t *testing.T, suffix string) string {
	t.Helper()
	name := "nodenet-test-" + suffix
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// hostAt is the real Kernel of namespace name, closed when the test ends.
func hostAt(t *testing.T, name string) nodenet.Kernel {
	t.Helper()
	k, closeFn, err := nodenet.HostAt(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return k
}

// veth joins namespace a's device da to b's db, addressed and up.
func veth(t *testing.T, a, da, addrA, b, db, addrB string) {
	t.Helper()
	run(t, "ip", "-n", a, "link", "add", da, "type", "veth", "peer", "name", db, "netns", b)
	run(t, "ip", "-n", a, "addr", "add", addrA, "dev", da)
	run(t, "ip", "-n", b, "addr", "add", addrB, "dev", db)
	run(t, "ip", "-n", a, "link", "set", da, "up")
	run(t, "ip", "-n", b, "link", "set", db, "up")
}
