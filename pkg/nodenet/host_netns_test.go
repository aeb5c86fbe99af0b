package nodenet_test

import (
	"net/netip"
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
)

// An IPv6 address Apply adds is usable at once as a route's source: it is
// added without duplicate address detection (nodad), during which the
// kernel would refuse the route.
func TestIPv6AddrUsableAsSourceAtOnce(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "nodad")
	// DAD on, as on a node; a veth with its peer up has carrier, so DAD runs.
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=1", "net.ipv6.conf.default.accept_dad=1")
	run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	run(t, "ip", "-n", ns, "link", "set", "eth0p", "up")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	k := hostAt(t, ns)
	src := netip.MustParseAddr("fd53::13")
	if err := k.AddAddr(nodenet.HostAddr("eth0", src)); err != nil {
		t.Fatal(err)
	}
	if err := k.ReplaceRoute(nodenet.Route{Table: 151, Dst: netip.MustParsePrefix("fd02::/48"), Dev: "eth0", Src: src}); err != nil {
		t.Errorf("route with the new address as source: %v", err)
	}
	if out := run(t, "ip", "-n", ns, "-6", "addr", "show", "dev", "eth0"); !strings.Contains(out, "fd53::13/128 scope global nodad") {
		t.Errorf("address not added with nodad:\n%s", out)
	}
}

// Our jump is moved back to rule 1 of its built-in chain when kube-proxy or
// a CNI inserted a rule above it, duplicates go, in one commit, and the
// sync after writes nothing: against the real iptables, both families.
func TestJumpStaysFirstInNetns(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "jumpfirst")
	k := &counting{Kernel: hostAt(t, ns)}
	for _, f := range k.Families() {
		ipt := "iptables"
		src := "10.2.0.0/16"
		if f == nodenet.IPv6 {
			ipt, src = "ip6tables", "fd02::/48"
		}
		c := nodenet.Chain{Family: f, Table: "nat", Name: "STRAIT-X", From: "POSTROUTING", Comment: "strait test",
			Rules: [][]string{{"-s", src, "-m", "comment", "--comment", nodenet.NoMasqueradeComment, "-j", "ACCEPT"}}}
		owned := []nodenet.Chain{c}
		owned[0].Rules = nil
		sync := func() {
			t.Helper()
			if err := nodenet.SyncChains(k, owned, []nodenet.Chain{c}); err != nil {
				t.Fatal(err)
			}
		}
		rules := func() []string {
			t.Helper()
			var out []string
			for l := range strings.Lines(run(t, "ip", "netns", "exec", ns, ipt, "-t", "nat", "-S", "POSTROUTING")) {
				if strings.HasPrefix(l, "-A ") {
					out = append(out, strings.TrimSpace(l))
				}
			}
			return out
		}
		jump := `-A POSTROUTING -m comment --comment "strait test" -j STRAIT-X`
		sync()
		run(t, "ip", "netns", "exec", ns, ipt, "-t", "nat", "-I", "POSTROUTING", "1", "-j", "MASQUERADE")
		run(t, "ip", "netns", "exec", ns, ipt, "-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "strait test", "-j", "STRAIT-X")
		if got := rules(); len(got) != 3 || got[0] == jump {
			t.Fatalf("%s: the case needs a foreign rule above ours and a duplicate: %q", f, got)
		}
		k.changes.Store(0)
		sync()
		if n := k.changes.Load(); n != 1 {
			t.Errorf("%s: moving the jump took %d commits, want 1:\n%s", f, n, strings.Join(k.log, "\n"))
		}
		if got, want := rules(), []string{jump, "-A POSTROUTING -j MASQUERADE"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: POSTROUTING:\n%s\nwant:\n%s", f, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		k.changes.Store(0)
		k.log = nil
		sync()
		if n := k.changes.Load(); n != 0 {
			t.Errorf("%s: syncing again wrote:\n%s", f, strings.Join(k.log, "\n"))
		}
		if err := nodenet.SyncChains(k, owned, nil); err != nil {
			t.Fatal(err)
		}
		if got := rules(); strings.Join(got, "\n") != "-A POSTROUTING -j MASQUERADE" {
			t.Errorf("%s: POSTROUTING after removal: %q", f, got)
		}
	}
}
