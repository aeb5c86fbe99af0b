package nodenet_test

import (
	"net/netip"
	"os/exec"
	"strconv"
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

// An IPv6 route's MTU holds for forwarded packets: the route is locked
// ("mtu lock"). IPv6 forwarding checks an unlocked route's packets
// against the device's MTU first, and the route's only when it comes to
// fragment them: a router whose route to fd02::/48 says 1430 over a
// device of 1450 answered a forwarded 1500-byte packet with a Packet Too
// Big of 1450, and the next one, of 1450 bytes, with one of 1430. Seen in
// the dual-stack sandbox: pods' datagrams left the nodes at the overlay's
// 1450 toward a 1430-byte cable, and each sender needed two Packet Too
// Bigs (docs/dataplane.md). Locked, the first answer says 1430. A route
// read back unlocked reads as the device's MTU, so a sync locks it.
func TestIPv6RouteMTUHoldsWhenForwarding(t *testing.T) {
	requireRoot(t)
	s, r := newNetns(t, "mtu6-s"), newNetns(t, "mtu6-r")
	for _, ns := range []string{s, r} {
		// No duplicate address detection: the addresses work at once.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	}
	veth(t, s, "eth0", "fd01::1/64", r, "eth0", "fd01::2/64")
	run(t, "ip", "-n", s, "-6", "route", "add", "default", "via", "fd01::2")
	run(t, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	run(t, "ip", "-n", r, "link", "add", "ov", "mtu", "1450", "type", "veth", "peer", "name", "ovp", "mtu", "1450")
	run(t, "ip", "-n", r, "link", "set", "ovp", "up")
	run(t, "ip", "-n", r, "link", "set", "ov", "up")
	k := hostAt(t, r)
	dst := netip.MustParsePrefix("fd02::/48")

	run(t, "ip", "-n", r, "-6", "route", "add", dst.String(), "dev", "ov", "table", "151", "mtu", "1430")
	if routes, err := k.Routes(151); err != nil || len(routes) != 1 || routes[0].MTU != 0 {
		t.Errorf("an unlocked IPv6 route MTU read back as %+v (%v), want MTU 0: the device's holds", routes, err)
	}
	want := nodenet.Route{Table: 151, Dst: dst, Dev: "ov", MTU: 1430}
	if err := k.ReplaceRoute(want); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "-n", r, "-6", "route", "show", "table", "151"); !strings.Contains(out, "mtu lock 1430") {
		t.Errorf("route not locked:\n%s", out)
	}
	if routes, err := k.Routes(151); err != nil || len(routes) != 1 || routes[0] != want {
		t.Errorf("routes read back %+v (%v), want %+v", routes, err, want)
	}
	run(t, "ip", "-n", r, "-6", "rule", "add", "to", dst.String(), "lookup", "151", "priority", "151")
	// R reachable first: a new veth's carrier can take a second to come
	// (the kernel's link watch), and neighbour discovery with it.
	run(t, "ip", "netns", "exec", s, "ping", "-6", "-c", "1", "-w", "10", "fd01::2")
	before := snmp6(t, r, "Icmp6OutPktTooBigs")
	// 1452 bytes of data: a 1500-byte packet, over the device's 1450 and
	// the route's 1430. No echo comes back either way.
	out, _ := exec.Command("ip", "netns", "exec", s, "ping", "-6", "-c", "1", "-W", "1", "-M", "do", "-s", "1452", "fd02::5").CombinedOutput()
	if after := snmp6(t, r, "Icmp6OutPktTooBigs"); after != before+1 {
		t.Errorf("the router sent %d Packet Too Bigs for one 1500-byte packet, want 1; ping:\n%s", after-before, out)
	}
	// What S learnt from it.
	if got := run(t, "ip", "-n", s, "-6", "route", "get", "fd02::5"); !strings.Contains(got, " mtu 1430 ") {
		t.Errorf("after a 1500-byte packet, S's route to fd02::5 is not of MTU 1430: the router's Packet Too Big said otherwise:\n%s", got)
	}
}

// snmp6 is a counter of /proc/net/snmp6 in namespace ns.
func snmp6(t *testing.T, ns, name string) int {
	t.Helper()
	for _, l := range strings.Split(run(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s in %s's /proc/net/snmp6", name, ns)
	return 0
}
