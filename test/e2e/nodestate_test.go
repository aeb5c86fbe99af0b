package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"strait.dev/strait/gateway"
	"strait.dev/strait/routeagent"
	"strait.dev/strait/test/sandbox"
)

// nodeState is a node's networking as the route agent and the gateway may
// change it, in a stable text form: rules, routes of every table (both
// families), the overlay's static neighbors, VXLAN devices, and the whole
// packet filter as iptables-save and ip6tables-save print it, without
// counters and comments. kube-proxy's chains are included: a restart of
// Strait must not disturb them either.
//
// Comparisons go through canonical, which sorts routes and neighbors.
func nodeState(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-4", "rule"},
		{"-6", "rule"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
		{"neigh", "show", "dev", routeagent.OverlayInterface, "nud", "permanent"},
		{"-o", "-d", "link", "show", "type", "vxlan"},
	} {
		out, _ := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		fmt.Fprintf(&b, "$ ip %s\n%s\n", strings.Join(args, " "), strings.TrimRight(string(out), "\n"))
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command("ip", "netns", "exec", ns, save).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("%s in %s: %v %s", save, ns, err, stderr)
		}
		fmt.Fprintf(&b, "$ %s\n%s", save, withoutCounters(string(out)))
	}
	return b.String()
}

// counters are the packet and byte counts iptables-save prints on each
// chain's line (":KUBE-SERVICES - [0:0]").
var counters = regexp.MustCompile(` \[\d+:\d+\]$`)

// withoutCounters drops iptables-save's comment lines (they hold the date)
// and its chain counters, which traffic changes.
func withoutCounters(save string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(save, "\n"), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, ":") {
			l = counters.ReplaceAllString(l, "")
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// canonical is a nodeState in the form states are compared in. Routes,
// neighbors and devices are sorted: the kernel dumps them in the order of
// its lookup structures or indexes, which says nothing about routing (a
// route's place in the local table follows its address). Rules and packet-filter rules keep
// their order, which is their meaning. With newCable, the cable device is
// rendered without what the kernel picked when it was created
// (withoutCableInstance) before sorting.
func canonical(state string, newCable bool) string {
	var b strings.Builder
	for _, section := range strings.SplitAfter(state, "\n$ ") {
		lines := strings.Split(strings.TrimSuffix(section, "\n$ "), "\n")
		if newCable {
			for i, l := range lines {
				lines[i] = withoutCableInstance(l)
			}
		}
		if h := lines[0]; strings.Contains(h, " route ") || strings.Contains(h, " neigh ") || strings.Contains(h, " link ") {
			sort.Strings(lines[1:])
		}
		sortServiceRules(lines)
		b.WriteString(strings.Join(lines, "\n"))
		if strings.HasSuffix(section, "\n$ ") {
			b.WriteString("\n$ ")
		}
	}
	return b.String()
}

// sortServiceRules sorts, in place, kube-proxy's per-Service rules of
// KUBE-SERVICES (those matching a destination), which kube-proxy writes in
// no fixed order when it syncs: each matches its own ClusterIP and port,
// so their order means nothing. The chain's last rule (to KUBE-NODEPORTS,
// no destination) keeps its place, as does every other rule.
func sortServiceRules(lines []string) {
	var at []int
	var rules []string
	for i, l := range lines {
		if strings.HasPrefix(l, "-A KUBE-SERVICES -d ") {
			at = append(at, i)
			rules = append(rules, l)
		}
	}
	sort.Strings(rules)
	for i, r := range rules {
		lines[at[i]] = r
	}
}

// The parts of a device the kernel picks anew each time the device is
// created: its index, its MAC address (random for the VXLAN cable), and
// the IPv6 link-local address derived from the MAC.
var (
	ifIndex   = regexp.MustCompile(`^\d+: `)
	macAddr   = regexp.MustCompile(`link/ether [0-9a-f:]{17}`)
	linkLocal = regexp.MustCompile(`fe80::[0-9a-f:]+`)
)

// withoutCableInstance renders a line about the gateway's cable device without what
// the kernel picked when it was created. The cable exists only on the
// active gateway: a gateway that goes standby removes it and one that
// becomes active creates it, so after a failover and back the device is
// a new one with the same configuration. Everything else about it (its
// type, VNI, port, MTU, flags) and every other device stay compared as
// they are, so a route agent or a gateway restart that recreates the
// overlay still shows.
func withoutCableInstance(line string) string {
	if !strings.Contains(line, gateway.CableInterface) {
		return line
	}
	line = ifIndex.ReplaceAllString(line, "N: ")
	line = macAddr.ReplaceAllString(line, "link/ether (random)")
	return linkLocal.ReplaceAllString(line, "fe80::(from the MAC)")
}

// nodeStates is the nodeState of every node of some clusters, by node name.
type nodeStates map[string]string

// clusterNodes are the nodes of a cluster in the sandbox TestMain brings
// up: as many as its "up" said (--nodes).
func clusterNodes(cluster string) []string {
	n := 3
	for i, a := range sandboxArgs() {
		if a == "--nodes" && i+1 < len(sandboxArgs()) {
			n, _ = strconv.Atoi(sandboxArgs()[i+1])
		}
	}
	var nodes []string
	for i := 1; i <= n; i++ {
		nodes = append(nodes, fmt.Sprintf("%s-n%d", cluster, i))
	}
	return nodes
}

// takeNodeStates reads the state of every node of the clusters, once the
// kernel has finished duplicate address detection on them: the local
// route of an IPv6 address appears only when its DAD ends, a second or so
// after a device comes up (a cable just created, say), so a state read
// before would differ from the same state read after.
func takeNodeStates(t *testing.T, clusters ...string) nodeStates {
	t.Helper()
	var nodes []string
	for _, c := range clusters {
		nodes = append(nodes, clusterNodes(c)...)
	}
	var tentative string
	if err := poll(30*time.Second, func(context.Context) (bool, error) {
		tentative = ""
		for _, n := range nodes {
			out, _ := exec.Command("ip", "-n", sandbox.NodeNS(n), "-6", "-o", "addr", "show", "tentative").CombinedOutput()
			if len(out) > 0 {
				tentative += n + ": " + string(out)
			}
		}
		return tentative == "", nil
	}); err != nil {
		t.Fatalf("IPv6 addresses still tentative (DAD not done):\n%s", tentative)
	}
	s := nodeStates{}
	for _, n := range nodes {
		s[n] = nodeState(t, sandbox.NodeNS(n))
	}
	return s
}

// diff describes how got differs from want, node by node, as line diffs
// of both rendered by norm; "" when every node is identical.
func (want nodeStates) diff(got nodeStates, norm func(string) string) string {
	var nodes []string
	for n := range want {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var b strings.Builder
	for _, n := range nodes {
		if w, g := norm(want[n]), norm(got[n]); g != w {
			fmt.Fprintf(&b, "--- %s before\n+++ %s now\n%s", n, n, lineDiff(w, g))
		}
	}
	return b.String()
}

// clusters are the clusters whose nodes s holds.
func (want nodeStates) clusters() []string {
	seen := map[string]bool{}
	var cs []string
	for n := range want {
		c := n[:strings.LastIndex(n, "-")]
		if !seen[c] {
			seen[c] = true
			cs = append(cs, c)
		}
	}
	sort.Strings(cs)
	return cs
}

// requireSame checks at once that every node is exactly as in want: for a
// change whose end is known (the route agent reports each state it
// applied), and that must not recreate any device.
func (want nodeStates) requireSame(t *testing.T, after string) {
	t.Helper()
	exact := func(s string) string { return canonical(s, false) }
	if d := want.diff(takeNodeStates(t, want.clusters()...), exact); d != "" {
		t.Fatalf("after %s, nodes differ from before:\n%s", after, d)
	}
}

// waitSame waits until every node is as in want, but for the cable
// device's instance (withoutCableInstance), for a change whose end nothing
// reports: after a gateway restart or failover the gateways, the route
// agents of both clusters and the remote gateway each follow the Lease and
// the Endpoints on their own. Only a state that never comes back fails;
// the bound only keeps a broken data plane from hanging the suite, it is
// not a timing assertion.
func (want nodeStates) waitSame(t *testing.T, after string) {
	t.Helper()
	var d string
	err := poll(60*time.Second, func(context.Context) (bool, error) {
		d = want.diff(takeNodeStates(t, want.clusters()...), func(s string) string { return canonical(s, true) })
		return d == "", nil
	})
	if err != nil {
		t.Fatalf("after %s, nodes differ from before (still after a minute):\n%s", after, d)
	}
}

// lineDiff is a unified-style diff of two texts by lines, with two lines
// of context around each change.
func lineDiff(a, b string) string {
	x := strings.Split(strings.TrimRight(a, "\n"), "\n")
	y := strings.Split(strings.TrimRight(b, "\n"), "\n")
	// lcs[i][j] is the length of the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte // ' ', '-' or '+'
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			lines = append(lines, line{' ', x[i]})
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', x[i]})
			i++
		default:
			lines = append(lines, line{'+', y[j]})
			j++
		}
	}
	const context = 2
	var out strings.Builder
	last := -1 // the last line printed
	for k, l := range lines {
		if l.op == ' ' {
			continue
		}
		from := max(k-context, last+1)
		if last >= 0 && from > last+1 {
			out.WriteString("  ...\n")
		}
		for c := from; c < k; c++ {
			fmt.Fprintf(&out, "  %s\n", lines[c].text)
		}
		fmt.Fprintf(&out, "%c %s\n", l.op, l.text)
		last = k
		// Trailing context, unless another change comes first.
		for c := k + 1; c <= k+context && c < len(lines) && lines[c].op == ' '; c++ {
			fmt.Fprintf(&out, "  %s\n", lines[c].text)
			last = c
		}
	}
	return out.String()
}
