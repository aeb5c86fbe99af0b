package nodenet_test

import (
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
)

// Leftovers lists exactly what of Strait's a real node holds, among
// entries of others that it must leave out, and nothing on a clean node.
func TestLeftoversInNetns(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "leftovers")
	k := hostAt(t, ns)
	if got, err := nodenet.Leftovers(k); err != nil || got != nil {
		t.Fatalf("clean node: Leftovers = %q, %v; want nothing", got, err)
	}

	// Strait's: a link, a rule, a route in its table, chains in filter
	// (IPv4) and nat (IPv6).
	run(t, "ip", "-n", ns, "link", "add", nodenet.OverlayDevice, "type", "vxlan", "id", "4100", "dstport", "4801")
	run(t, "ip", "-n", ns, "link", "set", nodenet.OverlayDevice, "up")
	run(t, "ip", "-n", ns, "rule", "add", "to", "10.2.0.0/16", "lookup", "151", "pref", "151")
	run(t, "ip", "-n", ns, "route", "add", "10.2.0.0/16", "dev", nodenet.OverlayDevice, "table", "151")
	run(t, "ip", "netns", "exec", ns, "iptables", "-t", "filter", "-N", "STRAIT-FORWARD")
	run(t, "ip", "netns", "exec", ns, "ip6tables", "-t", "nat", "-N", "STRAIT-POSTROUTING")
	// Others': a link, a rule and a route of another table, a chain.
	run(t, "ip", "-n", ns, "link", "add", "cni0", "type", "veth", "peer", "name", "cni0p")
	run(t, "ip", "-n", ns, "link", "set", "cni0", "up")
	run(t, "ip", "-n", ns, "rule", "add", "to", "10.9.0.0/16", "lookup", "100", "pref", "200")
	run(t, "ip", "-n", ns, "route", "add", "10.9.0.0/16", "dev", "cni0", "table", "100")
	run(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-N", "KUBE-POSTROUTING")

	got, err := nodenet.Leftovers(k)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1 route in table 151: 10.2.0.0/16 dev strait-overlay table 151 scope link",
		"chain filter STRAIT-FORWARD",
		"chain nat STRAIT-POSTROUTING (ip6)",
		"link strait-overlay",
		"rule 151: from all to 10.2.0.0/16 lookup 151",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Leftovers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
