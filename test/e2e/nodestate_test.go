package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"strait.dev/strait/routeagent"
	"strait.dev/strait/test/sandbox"
)

// nodeState is a node's networking as the route agent and the gateway may
// change it, in a stable text form: rules, routes of every table (both
// families), the overlay's static neighbors, VXLAN devices, and the whole
// packet filter as iptables-save and ip6tables-save print it, without
// counters and comments. kube-proxy's chains are included: a restart of
// Strait must not disturb them either.
func nodeState(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-4", "rule"},
		{"-6", "rule"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
		{"neigh", "show", "dev", routeagent.OverlayInterface, "nud", "permanent"},
		{"-d", "link", "show", "type", "vxlan"},
	} {
		out, _ := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command("ip", "netns", "exec", ns, save).Output()
		if err != nil {
			t.Fatalf("%s in %s: %v", save, ns, err)
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

// nodeStates is the nodeState of every node of some clusters, by node name.
type nodeStates map[string]string

// clusterNodes are the nodes of a cluster in the sandbox TestMain brings up.
func clusterNodes(cluster string) []string {
	var nodes []string
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, fmt.Sprintf("%s-n%d", cluster, i))
	}
	return nodes
}

// takeNodeStates reads the state of every node of the clusters.
func takeNodeStates(t *testing.T, clusters ...string) nodeStates {
	t.Helper()
	s := nodeStates{}
	for _, c := range clusters {
		for _, n := range clusterNodes(c) {
			s[n] = nodeState(t, sandbox.NodeNS(n))
		}
	}
	return s
}

// diff describes how got differs from want, node by node, as line diffs;
// "" when every node is identical.
func (want nodeStates) diff(got nodeStates) string {
	var nodes []string
	for n := range want {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var b strings.Builder
	for _, n := range nodes {
		if got[n] != want[n] {
			fmt.Fprintf(&b, "--- %s before\n+++ %s now\n%s", n, n, lineDiff(want[n], got[n]))
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

// requireSame checks at once that every node is as in want: for a change
// whose end is known (the route agent reports each state it applied).
func (want nodeStates) requireSame(t *testing.T, after string) {
	t.Helper()
	if d := want.diff(takeNodeStates(t, want.clusters()...)); d != "" {
		t.Fatalf("after %s, nodes differ from before:\n%s", after, d)
	}
}

// waitSame waits until every node is as in want, for a change whose end
// nothing reports: after a gateway restart or failover the gateways, the
// route agents of both clusters and the remote gateway each follow the
// Lease and the Endpoints on their own. Only a state that never comes
// back fails; the bound only keeps a broken data plane from hanging the
// suite, it is not a timing assertion.
func (want nodeStates) waitSame(t *testing.T, after string) {
	t.Helper()
	var d string
	err := poll(60*time.Second, func(context.Context) (bool, error) {
		d = want.diff(takeNodeStates(t, want.clusters()...))
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
