package routeagent

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
)

// restores counts the packet-filter commits and route and rule changes.
type restores struct {
	nodenet.Kernel
	n []string
}

func (r *restores) Restore(f nodenet.Family, s string) error {
	r.n = append(r.n, s)
	return r.Kernel.Restore(f, s)
}

func (r *restores) ReplaceRoute(x nodenet.Route) error {
	r.n = append(r.n, "route "+x.String())
	return r.Kernel.ReplaceRoute(x)
}

func (r *restores) AddRule(x nodenet.Rule) error {
	r.n = append(r.n, "rule "+x.String())
	return r.Kernel.AddRule(x)
}

// The agent's real states in a throwaway namespace: the kernel reads back
// as computed (so the chains are written in iptables' own normal form),
// applying the same state again (a restart) changes nothing, and Cleanup
// leaves nothing of ours.
func TestAgentStatesInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a throwaway network namespace (nodenet-test-routeagent)")
	}
	const ns = "nodenet-test-routeagent"
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	sh("ip", "-n", ns, "addr", "add", "192.168.1.11/24", "dev", "eth0")
	sh("ip", "-n", ns, "link", "set", "eth0", "up")
	host, closeFn, err := nodenet.HostAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	k := &restores{Kernel: host}
	a := &nodenet.Applier{Kernel: k, Scope: Scope()}
	for _, f := range []Facts{facts(n1, "n2", "10.2.0.0/16", "10.102.0.0/16"), facts(n1, "", "10.2.0.0/16"), facts(n1, "n1", "10.2.0.0/16", "10.3.0.0/16")} {
		s := applyReadBack(t, a, f)
		k.n = nil
		if err := a.Apply(s); err != nil {
			t.Fatal(err)
		}
		if len(k.n) != 0 {
			t.Errorf("applying the same state again rewrote:\n%s", strings.Join(k.n, "\n"))
		}
	}
	if err := Cleanup(host); err != nil {
		t.Fatal(err)
	}
	got, err := a.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != "" {
		t.Errorf("after Cleanup:\n%s", got)
	}
}
