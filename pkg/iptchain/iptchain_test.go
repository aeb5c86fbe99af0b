package iptchain

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netns"
)

// counting wraps the real iptables and counts rewrites of a chain.
type counting struct {
	*iptables.IPTables
	clears int
}

func (c *counting) ClearChain(table, chain string) error {
	c.clears++
	return c.IPTables.ClearChain(table, chain)
}

var _ IPTables = (*counting)(nil)

// inThrowawayNetns runs the test body on a thread in a new network
// namespace: the iptables commands go-iptables runs inherit it.
func inThrowawayNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and runs iptables in it")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = netns.Set(orig)
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
}

// Real iptables, its own normal form: Ensure writes the chain once, then
// finds it equal and leaves it (and its counters) alone; a change rewrites
// it; Remove leaves nothing.
func TestEnsureIsIdempotentOnRealIPTables(t *testing.T) {
	inThrowawayNetns(t)
	ipt, err := iptables.New()
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{IPTables: ipt}
	chain := Chain{Table: "nat", Name: "STRAIT-TEST", From: "POSTROUTING", Comment: "strait test", Rules: [][]string{
		{"-d", "10.2.0.0/16", "-m", "comment", "--comment", "strait: two words", "-j", "ACCEPT"},
		{"-s", "10.2.0.0/16", "-j", "ACCEPT"},
	}}
	for range 3 {
		if err := Ensure(c, chain); err != nil {
			t.Fatal(err)
		}
	}
	if c.clears != 1 {
		t.Errorf("chain rewritten %d times over three identical calls, want 1 (the first)", c.clears)
	}
	rules, _ := ipt.List("nat", "POSTROUTING")
	if n := strings.Count(strings.Join(rules, "\n"), "-j STRAIT-TEST"); n != 1 {
		t.Errorf("%d jumps to the chain, want 1:\n%s", n, strings.Join(rules, "\n"))
	}
	chain.Rules = chain.Rules[:1]
	if err := Ensure(c, chain); err != nil {
		t.Fatal(err)
	}
	if got, _ := ipt.List("nat", "STRAIT-TEST"); len(got) != 2 || c.clears != 2 {
		t.Errorf("after dropping a rule: %q (%d rewrites)", got, c.clears)
	}
	if err := Remove(c, chain); err != nil {
		t.Fatal(err)
	}
	if ok, _ := ipt.ChainExists("nat", "STRAIT-TEST"); ok {
		t.Error("chain still there after Remove")
	}
	if rules, _ := ipt.List("nat", "POSTROUTING"); strings.Contains(strings.Join(rules, "\n"), "STRAIT-TEST") {
		t.Error("jump still there after Remove")
	}
}
