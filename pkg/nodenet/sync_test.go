package nodenet_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

// String renders every section sorted, as the ip tools and iptables-save
// would, whatever order the State lists entries in.
func TestStateStringGolden(t *testing.T) {
	s := nodenet.State{
		Sysctls: []nodenet.Sysctl{{Key: "net.ipv6.conf.all.forwarding", Value: "1"}, {Key: "net.ipv4.ip_forward", Value: "1"}},
		FDB:     []nodenet.FDBEntry{{Dev: "ov", MAC: "0a:00:00:00:00:02", Dst: netip.MustParseAddr("192.0.2.2")}},
		Neighs: []nodenet.Neigh{{Dev: "ov", IP: netip.MustParseAddr("fd00::2"), MAC: "0a:00:00:00:00:02"},
			{Dev: "ov", IP: netip.MustParseAddr("10.0.0.9"), Proxy: true}},
		Routes: []nodenet.Route{
			{Table: 151, Dst: netip.MustParsePrefix("fd02::/48"), Via: netip.MustParseAddr("fd00::2"), Dev: "ov", MTU: 1400},
			{Table: 150, Dst: netip.MustParsePrefix("10.2.0.0/16"), Dev: "cable"},
			{Table: 151, Dst: netip.MustParsePrefix("10.3.0.0/16"), Unreachable: true},
		},
		Rules: []nodenet.Rule{{Priority: 152, Family: nodenet.IPv6, IIF: "cable", Table: 152},
			{Priority: 151, Dst: netip.MustParsePrefix("10.3.0.0/16"), Table: 151}},
		Addrs: []nodenet.Addr{nodenet.HostAddr("cable", netip.MustParseAddr("fd02::fffe")), {Dev: "ov", Prefix: netip.MustParsePrefix("240.0.0.1/8")}},
		Links: []nodenet.Link{{Name: "ov", VNI: 7, Port: 4801, Local: netip.MustParseAddr("192.0.2.1"), MTU: 1450, MAC: "0a:00:00:00:00:01"}},
		Chains: []nodenet.Chain{{Family: nodenet.IPv6, Table: "nat", Name: "C", From: "POSTROUTING", Comment: "a writer",
			Rules: [][]string{{"-d", "fd02::/48", "-m", "comment", "--comment", "two words", "-j", "ACCEPT"}}}},
	}
	want := `# ip link
ov: vxlan id 7 local 192.0.2.1 dstport 4801 nolearning mtu 1450 address 0a:00:00:00:00:01 up
# ip addr
inet 240.0.0.1/8 dev ov
inet6 fd02::fffe/128 dev cable
# ip rule
151:	from all to 10.3.0.0/16 lookup 151
-6 152:	from all iif cable lookup 152
# ip route show table all
10.2.0.0/16 dev cable table 150 scope link
unreachable 10.3.0.0/16 table 151
fd02::/48 via fd00::2 dev ov table 151 mtu 1400
# ip neigh
10.0.0.9 dev ov proxy
fd00::2 dev ov lladdr 0a:00:00:00:00:02 PERMANENT
# bridge fdb
0a:00:00:00:00:02 dev ov dst 192.0.2.2 self permanent
# sysctl
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
# ip6tables-save
*nat
:C - [0:0]
-A POSTROUTING -m comment --comment "a writer" -j C
-A C -d fd02::/48 -m comment --comment "two words" -j ACCEPT
COMMIT
`
	if got := s.String(); got != want {
		t.Errorf("String:\n%s\nwant:\n%s", got, want)
	}
}

func chain(rules ...string) nodenet.Chain {
	c := nodenet.Chain{Family: nodenet.IPv4, Table: "filter", Name: "STRAIT-X", From: "FORWARD", Comment: "test"}
	for _, r := range rules {
		c.Rules = append(c.Rules, strings.Fields(r))
	}
	return c
}

// Each reconciler adds before it removes, and changes nothing the second
// time.
func TestSyncMakesBeforeBreaking(t *testing.T) {
	k := &nodenettest.Kernel{Devices: []string{"eth0"}}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	owned := []nodenet.TableScope{{Table: 151}}
	r1 := nodenet.Route{Table: 151, Dst: p("10.2.0.0/16"), Via: a("192.0.2.1"), Dev: "eth0"}
	r2 := nodenet.Route{Table: 151, Dst: p("10.3.0.0/16"), Via: a("192.0.2.1"), Dev: "eth0"}
	steps := []struct {
		name string
		sync func() error
		want string
	}{
		{"routes", func() error { return nodenet.SyncRoutes(k, owned, []nodenet.Route{r1, r2}) }, ""},
		{"a route re-pointed, one gone", func() error {
			r1b := r1
			r1b.Via = a("192.0.2.9")
			return nodenet.SyncRoutes(k, owned, []nodenet.Route{r1b})
		}, "route replace 10.2.0.0/16 via 192.0.2.9 dev eth0 table 151\nroute del 10.3.0.0/16 via 192.0.2.1 dev eth0 table 151"},
		{"rules", func() error {
			return nodenet.SyncRules(k, nodenet.Families, []int{151}, []nodenet.Rule{{Priority: 151, Dst: p("10.2.0.0/16"), Table: 151}})
		}, ""},
		{"a rule's table changed", func() error {
			return nodenet.SyncRules(k, nodenet.Families, []int{151}, []nodenet.Rule{{Priority: 151, Dst: p("10.2.0.0/16"), Table: 152}})
		}, "rule add 151:\tfrom all to 10.2.0.0/16 lookup 152\nrule del 151:\tfrom all to 10.2.0.0/16 lookup 151"},
		{"addresses", func() error {
			return nodenet.SyncAddrs(k, []string{"eth0"}, []nodenet.Addr{{Dev: "eth0", Prefix: p("192.0.2.5/24")}})
		}, ""},
		{"an address moved", func() error {
			return nodenet.SyncAddrs(k, []string{"eth0"}, []nodenet.Addr{{Dev: "eth0", Prefix: p("192.0.2.6/24")}, {Dev: "eth0", Prefix: p("fd00::6/64")}})
		}, "addr replace inet 192.0.2.6/24 dev eth0\naddr replace inet6 fd00::6/64 dev eth0\naddr del inet 192.0.2.5/24 dev eth0"},
		{"neighbours", func() error {
			return nodenet.SyncNeighs(k, []string{"eth0"}, []nodenet.Neigh{{Dev: "eth0", IP: a("192.0.2.7"), MAC: "0a:00:00:00:00:07"}},
				[]nodenet.FDBEntry{{Dev: "eth0", MAC: "0a:00:00:00:00:07", Dst: a("198.51.100.7")}})
		}, ""},
		{"a neighbour moved", func() error {
			return nodenet.SyncNeighs(k, []string{"eth0"}, []nodenet.Neigh{{Dev: "eth0", IP: a("192.0.2.8"), MAC: "0a:00:00:00:00:08"}, {Dev: "eth0", IP: a("fd00::8"), Proxy: true}},
				[]nodenet.FDBEntry{{Dev: "eth0", MAC: "0a:00:00:00:00:08", Dst: a("198.51.100.8")}})
		}, "neigh replace 192.0.2.8 dev eth0 lladdr 0a:00:00:00:00:08 PERMANENT\nneigh replace fd00::8 dev eth0 proxy\n" +
			"fdb append 0a:00:00:00:00:08 dev eth0 dst 198.51.100.8 self permanent\nneigh del 192.0.2.7 dev eth0 lladdr 0a:00:00:00:00:07 PERMANENT\n" +
			"fdb del 0a:00:00:00:00:07 dev eth0 dst 198.51.100.7 self permanent"},
		{"a chain", func() error {
			return nodenet.SyncChains(k, []nodenet.Chain{chain()}, []nodenet.Chain{chain("-s 10.2.0.0/16 -j ACCEPT")})
		}, ""},
		{"a chain's rules swapped in one commit", func() error {
			return nodenet.SyncChains(k, []nodenet.Chain{chain()}, []nodenet.Chain{chain("-d 10.2.0.0/16 -j ACCEPT", "-s 10.2.0.0/16 -j ACCEPT")})
		}, `restore ip filter: :STRAIT-X - [0:0]; -A STRAIT-X -d 10.2.0.0/16 -j ACCEPT; -A STRAIT-X -s 10.2.0.0/16 -j ACCEPT`},
		{"a chain removed with its jump", func() error { return nodenet.SyncChains(k, []nodenet.Chain{chain()}, nil) },
			`restore ip filter: -D FORWARD -m comment --comment test -j STRAIT-X; -F STRAIT-X; -X STRAIT-X`},
	}
	for _, s := range steps {
		k.Log = nil
		if err := s.sync(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want != "" {
			if got := strings.Join(k.Log, "\n"); got != s.want {
				t.Errorf("%s:\n%s\nwant:\n%s", s.name, got, s.want)
			}
		}
		k.Log = nil
		if err := s.sync(); err != nil {
			t.Fatalf("%s again: %v", s.name, err)
		}
		if len(k.Log) != 0 {
			t.Errorf("%s again changed:\n%s", s.name, strings.Join(k.Log, "\n"))
		}
	}
}

// A writer's Applier refuses a State with entries outside its Scope, before
// changing anything, and never removes another writer's entries.
func TestApplierScope(t *testing.T) {
	k := &nodenettest.Kernel{}
	mine := nodenet.Applier{Kernel: k, Scope: nodenet.Scope{Priorities: []int{151}, Tables: []nodenet.TableScope{{Table: 151}}}}
	theirs := nodenet.Applier{Kernel: k, Scope: nodenet.Scope{Priorities: []int{150}}}
	r := nodenet.Rule{Priority: 150, Dst: netip.MustParsePrefix("10.2.0.0/16"), Table: 150}
	var oos *nodenet.OutOfScopeError
	if err := mine.Apply(nodenet.State{Rules: []nodenet.Rule{r}}); !errors.As(err, &oos) {
		t.Errorf("a rule at another writer's priority: %v, want an OutOfScopeError", err)
	}
	if len(k.Log) != 0 {
		t.Errorf("a refused State changed: %q", k.Log)
	}
	if err := theirs.Apply(nodenet.State{Rules: []nodenet.Rule{r}}); err != nil {
		t.Fatal(err)
	}
	if err := mine.Apply(nodenet.State{}); err != nil {
		t.Fatal(err)
	}
	if err := mine.Remove(); err != nil {
		t.Fatal(err)
	}
	if got, _ := theirs.Read(); got.String() != (nodenet.State{Rules: []nodenet.Rule{r}}).String() {
		t.Errorf("the other writer's state:\n%s", got)
	}
}

// When a subnet goes and another comes, no rule points at a table that
// lacks its route at any instant: the new route comes before its rule, and
// the old rule goes before its route.
func TestApplyOrdersRoutesAroundRules(t *testing.T) {
	k := &nodenettest.Kernel{}
	a := nodenet.Applier{Kernel: k, Scope: nodenet.Scope{Priorities: []int{151}, Tables: []nodenet.TableScope{{Table: 151}}}}
	state := func(dst string) nodenet.State {
		d := netip.MustParsePrefix(dst)
		return nodenet.State{Routes: []nodenet.Route{{Table: 151, Dst: d, Unreachable: true}}, Rules: []nodenet.Rule{{Priority: 151, Dst: d, Table: 151}}}
	}
	if err := a.Apply(state("10.2.0.0/16")); err != nil {
		t.Fatal(err)
	}
	k.Log = nil
	if err := a.Apply(state("10.3.0.0/16")); err != nil {
		t.Fatal(err)
	}
	want := "route replace unreachable 10.3.0.0/16 table 151\nrule add 151:\tfrom all to 10.3.0.0/16 lookup 151\n" +
		"rule del 151:\tfrom all to 10.2.0.0/16 lookup 151\nroute del unreachable 10.2.0.0/16 table 151"
	if got := strings.Join(k.Log, "\n"); got != want {
		t.Errorf("order:\n%s\nwant:\n%s", got, want)
	}
}

// Our jump stays first in its built-in chain: a rule inserted above it
// (kube-proxy's, a CNI's) makes the next sync move ours back to rule 1 in
// one commit, duplicates go, the sync after writes nothing, and another
// writer's jump to a chain of ours may stay above it (or the two would take
// turns forever).
func TestSyncChainsKeepsTheJumpFirst(t *testing.T) {
	k := &nodenettest.Kernel{}
	c := chain("-s 10.2.0.0/16 -j ACCEPT")
	owned := []nodenet.Chain{chain()}
	sync := func(name string, want ...string) {
		t.Helper()
		k.Log = nil
		if err := nodenet.SyncChains(k, owned, []nodenet.Chain{c}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := strings.Join(k.Log, "\n"); len(want) > 0 && got != want[0] {
			t.Errorf("%s:\n%s\nwant:\n%s", name, got, want[0])
		}
		k.Log = nil
		if err := nodenet.SyncChains(k, owned, []nodenet.Chain{c}); err != nil {
			t.Fatal(err)
		}
		if len(k.Log) != 0 {
			t.Errorf("%s, again: changed %q", name, k.Log)
		}
		save, _ := k.Save(nodenet.IPv4, "filter")
		if !strings.Contains(save, "-A FORWARD -m comment --comment test -j STRAIT-X\n") || strings.Count(save, "-j STRAIT-X") != 1 {
			t.Errorf("%s: filter table:\n%s", name, save)
		}
	}
	jump := "-A FORWARD -m comment --comment test -j STRAIT-X"
	firstIn := func() string {
		save, _ := k.Save(nodenet.IPv4, "filter")
		for l := range strings.Lines(save) {
			if strings.HasPrefix(l, "-A FORWARD ") {
				return strings.TrimSpace(l)
			}
		}
		return ""
	}
	sync("created")
	if err := k.AddFilterRule(nodenet.IPv4, "filter", "FORWARD", "-j KUBE-FORWARD"); err != nil {
		t.Fatal(err)
	}
	sync("a rule appended below ours", "")
	if err := k.InsertFilterRule(nodenet.IPv4, "filter", "FORWARD", "-j KUBE-FORWARD"); err != nil {
		t.Fatal(err)
	}
	sync("a rule inserted above ours", "restore ip filter: -D FORWARD -m comment --comment test -j STRAIT-X; -I FORWARD 1 -m comment --comment test -j STRAIT-X")
	if got := firstIn(); got != jump {
		t.Errorf("first rule of FORWARD: %q, want ours", got)
	}
	if err := k.AddFilterRule(nodenet.IPv4, "filter", "FORWARD", "-m comment --comment test -j STRAIT-X"); err != nil {
		t.Fatal(err)
	}
	sync("a duplicate jump at the end", "restore ip filter: -D FORWARD -m comment --comment test -j STRAIT-X; -D FORWARD -m comment --comment test -j STRAIT-X; -I FORWARD 1 -m comment --comment test -j STRAIT-X")
	if err := k.InsertFilterRule(nodenet.IPv4, "filter", "FORWARD", `-m comment --comment "another writer" -j STRAIT-A`); err != nil {
		t.Fatal(err)
	}
	sync("another writer's jump to a chain of ours that ranks before it, above it", "")
	if err := k.InsertFilterRule(nodenet.IPv4, "filter", "FORWARD", `-m comment --comment "another writer" -j STRAIT-Y`); err != nil {
		t.Fatal(err)
	}
	// Y's writer would move Y below X by the same rule; X stays put.
	sync("another writer's jump to a chain of ours that ranks after it, above it", "")
	if err := k.InsertFilterRule(nodenet.IPv4, "filter", "FORWARD", "-j CNI-FORWARD"); err != nil {
		t.Fatal(err)
	}
	sync("a foreign rule above both", "restore ip filter: -D FORWARD -m comment --comment test -j STRAIT-X; -I FORWARD 1 -m comment --comment test -j STRAIT-X")
	if got := firstIn(); got != jump {
		t.Errorf("first rule of FORWARD: %q, want ours", got)
	}
}

// Two writers whose chains are both jumped to from one built-in chain (the
// gateway's and the route agent's from nat POSTROUTING on a gateway node)
// end with their jumps in rank order at the top, whatever order they were
// applied, removed and re-applied in and whatever foreign rules were
// inserted meanwhile: a node's rule set does not depend on its history.
func TestSyncChainsOrdersOurJumpsByRank(t *testing.T) {
	mk := func(name string) nodenet.Chain {
		return nodenet.Chain{Family: nodenet.IPv4, Table: "nat", Name: name, From: "POSTROUTING", Comment: name,
			Rules: [][]string{{"-d", "10.2.0.0/16", "-j", "ACCEPT"}}}
	}
	a, b := mk("STRAIT-A"), mk("STRAIT-B")
	want := "-A POSTROUTING -m comment --comment STRAIT-A -j STRAIT-A\n-A POSTROUTING -m comment --comment STRAIT-B -j STRAIT-B\n-A POSTROUTING -j KUBE-POSTROUTING\n"
	type step struct {
		c      nodenet.Chain
		remove bool
	}
	for _, steps := range [][]step{
		{{c: a}, {c: b}},
		{{c: b}, {c: a}},
		{{c: a}, {c: b}, {c: a, remove: true}, {c: a}},
		{{c: b}, {c: a}, {c: b, remove: true}, {c: b}, {c: a}},
	} {
		k := &nodenettest.Kernel{}
		if err := k.AddFilterRule(nodenet.IPv4, "nat", "POSTROUTING", "-j KUBE-POSTROUTING"); err != nil {
			t.Fatal(err)
		}
		apply := func(s step) {
			t.Helper()
			var w []nodenet.Chain
			if !s.remove {
				w = []nodenet.Chain{s.c}
			}
			if err := nodenet.SyncChains(k, []nodenet.Chain{s.c}, w); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range steps {
			apply(s)
		}
		// Both writers apply once more (a resync): this settles the order,
		// and a further round writes nothing.
		apply(step{c: a})
		apply(step{c: b})
		k.Log = nil
		apply(step{c: a})
		apply(step{c: b})
		if len(k.Log) != 0 {
			t.Errorf("%v: settled state rewritten: %q", steps, k.Log)
		}
		save, _ := k.Save(nodenet.IPv4, "nat")
		var got strings.Builder
		for l := range strings.Lines(save) {
			if strings.HasPrefix(l, "-A POSTROUTING ") {
				got.WriteString(l)
			}
		}
		if got.String() != want {
			t.Errorf("%v: POSTROUTING:\n%swant:\n%s", steps, got.String(), want)
		}
	}
}

// On a node without IPv6, states whose IPv6 part is empty chains (the
// gateway's and the route agent's with IPv4 remote subnets) apply, read back
// and remove without touching IPv6; a state wanting IPv6 entries is refused
// before anything changes, with an error naming every one of them.
func TestApplyWithoutIPv6(t *testing.T) {
	k := &nodenettest.Kernel{Absent: []nodenet.Family{nodenet.IPv6}, Devices: []string{nodenet.CableDevice}}
	gateway := &nodenet.Applier{Kernel: k, Scope: gatewayScope()}
	agent := &nodenet.Applier{Kernel: k, Scope: agentScope()}
	gw := gatewayState([]string{"10.2.0.0/16"}, "10.2.255.254")
	if err := gateway.Apply(gw); err != nil {
		t.Fatal(err)
	}
	ra := nodenet.State{
		Rules:  []nodenet.Rule{{Priority: nodenet.RemotePriority, Dst: netip.MustParsePrefix("10.2.0.0/16"), Table: nodenet.RemoteTable}},
		Routes: []nodenet.Route{{Table: nodenet.RemoteTable, Dst: netip.MustParsePrefix("10.2.0.0/16"), Unreachable: true}},
		Chains: chainsFor(nodenet.RouteAgentJumpComment, agentChains, []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}, 1380),
	}
	if err := agent.Apply(ra); err != nil {
		t.Fatal(err)
	}
	k.Log = nil
	if err := gateway.Apply(gw); err != nil {
		t.Fatal(err)
	}
	if err := agent.Apply(ra); err != nil {
		t.Fatal(err)
	}
	if len(k.Log) != 0 {
		t.Errorf("applying again changed:\n%s", strings.Join(k.Log, "\n"))
	}
	without6 := func(s nodenet.State) string {
		s.Chains = slices.DeleteFunc(slices.Clone(s.Chains), func(c nodenet.Chain) bool { return c.Family == nodenet.IPv6 })
		return s.String()
	}
	for _, c := range []struct {
		a    *nodenet.Applier
		want nodenet.State
	}{{gateway, gw}, {agent, ra}} {
		if got, err := c.a.Read(); err != nil {
			t.Fatal(err)
		} else if got.String() != without6(c.want) {
			t.Errorf("read:\n%s\nwant:\n%s", got, without6(c.want))
		}
	}

	k.Log = nil
	rich := agentState(11, []string{"10.2.0.0/16", "fd02::/48"}, 1450)
	err := agent.Apply(rich)
	var missing *nodenet.MissingFamilyError
	if !errors.As(err, &missing) || !slices.Equal(missing.Missing, []nodenet.Family{nodenet.IPv6}) {
		t.Fatalf("a state wanting IPv6: %v, want a MissingFamilyError for inet6", err)
	}
	for _, entry := range []string{"address inet6 fd53::13/64 dev strait-overlay", "route fd02::/48 via fd53::b dev strait-overlay table 151 mtu 1420",
		"rule -6 151:\tfrom all to fd02::/48 lookup 151", "neighbour fd53::b dev strait-overlay", "sysctl net.ipv6.conf.all.forwarding = 1",
		"chain inet6 nat STRAIT-POSTROUTING"} {
		if !strings.Contains(err.Error(), entry) {
			t.Errorf("the error does not name %q: %v", entry, err)
		}
	}
	if strings.Contains(err.Error(), "10.2.0.0/16") {
		t.Errorf("the error names IPv4 entries: %v", err)
	}
	if len(k.Log) != 0 {
		t.Errorf("a refused state changed:\n%s", strings.Join(k.Log, "\n"))
	}

	if err := agent.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := gateway.Remove(); err != nil {
		t.Fatal(err)
	}
	if s := k.State(append(agentScope().Chains, gatewayScope().Chains...)); s.String() != "" {
		t.Errorf("after Remove:\n%s", s)
	}
}

// Globalnet's SNAT chain is jumped to before every other chain of ours in
// nat POSTROUTING (their ACCEPTs would end the chain before it), even
// before one whose name sorts first, whatever order the writers applied
// in; the rest keep their order by name, and a settled node is not
// rewritten.
func TestSyncChainsGlobalnetEgressFirst(t *testing.T) {
	mk := func(name string) nodenet.Chain {
		return nodenet.Chain{Family: nodenet.IPv4, Table: "nat", Name: name, From: "POSTROUTING", Comment: name,
			Rules: [][]string{{"-d", "10.2.0.0/16", "-j", "ACCEPT"}}}
	}
	names := []string{nodenet.NATChain, "STRAIT-A", nodenet.GatewayNATChain, nodenet.GlobalnetEgressChain}
	want := "STRAIT-GN-EGRESS STRAIT-A STRAIT-GW-POSTROUTING STRAIT-POSTROUTING KUBE-POSTROUTING"
	var perms func([]string, int) [][]string
	perms = func(xs []string, k int) [][]string {
		if k == len(xs) {
			return [][]string{slices.Clone(xs)}
		}
		var out [][]string
		for i := k; i < len(xs); i++ {
			xs[k], xs[i] = xs[i], xs[k]
			out = append(out, perms(xs, k+1)...)
			xs[k], xs[i] = xs[i], xs[k]
		}
		return out
	}
	for _, order := range perms(names, 0) {
		k := &nodenettest.Kernel{}
		if err := k.AddFilterRule(nodenet.IPv4, "nat", "POSTROUTING", "-j KUBE-POSTROUTING"); err != nil {
			t.Fatal(err)
		}
		round := func() {
			t.Helper()
			for _, n := range order {
				c := mk(n)
				if err := nodenet.SyncChains(k, []nodenet.Chain{c}, []nodenet.Chain{c}); err != nil {
					t.Fatal(err)
				}
			}
		}
		round()
		settled := false
		for range len(names) {
			k.Log = nil
			round()
			if len(k.Log) == 0 {
				settled = true
				break
			}
		}
		if !settled {
			t.Errorf("%v: never settled, last round wrote %q", order, k.Log)
		}
		save, _ := k.Save(nodenet.IPv4, "nat")
		var got []string
		for l := range strings.Lines(save) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "-A POSTROUTING "); ok {
				got = append(got, rest[strings.LastIndex(rest, " ")+1:])
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("applied in order %v: POSTROUTING jumps to %v, want %s", order, got, want)
		}
	}
}
