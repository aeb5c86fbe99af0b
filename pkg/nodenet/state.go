// Package nodenet is the one model of the part of a node's kernel
// networking that Strait owns, and the reconcilers that make the kernel match
// it.
//
// A writer (the gateway, the route agent, later Globalnet) computes its slice
// of a node's state as a State value and applies it with an Applier whose
// Scope names the devices, routing tables, rule priorities and chains it
// owns. Entries outside the Scope are never touched, so writers on the same
// node never remove each other's entries.
//
// Every reconciler is make-before-break and idempotent: new routes, rules,
// addresses and neighbours go in before stale ones come out, a chain's rules
// are swapped in one atomic iptables-restore commit, and applying the same
// State again changes nothing (no rewrite; counters and flows stay).
//
// The kernel is reached through one narrow handle per subsystem (Links,
// Addrs, Routes, Rules, Neighs, Sysctls, Filter), gathered in Kernel; Host
// and HostAt give the real ones and nodenettest.Kernel a fake that renders
// what it holds as a State.
package nodenet

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Family is an address family: IPv4 or IPv6.
type Family uint8

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// Families are both address families, IPv4 first.
var Families = []Family{IPv4, IPv6}

// FamilyOf returns a's family.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	if f == IPv6 {
		return "inet6"
	}
	return "inet"
}

// State is the part of one node's kernel networking that one writer (or,
// merged, all of them) wants. The zero State is "nothing of ours". Slices are
// unordered; String sorts.
type State struct {
	Links   []Link
	Addrs   []Addr
	Routes  []Route
	Rules   []Rule
	Neighs  []Neigh
	FDB     []FDBEntry
	Sysctls []Sysctl
	Chains  []Chain
}

// Link is a VXLAN device of ours (the only kind Strait creates itself; the
// cable device is its driver's). It is always up, with learning off.
type Link struct {
	Name  string
	VNI   int
	Port  int        // UDP destination port
	Local netip.Addr // underlay source address
	MTU   int        // bytes
	MAC   string     // lower-case, colon-separated
	// Down is set only by a Kernel's Link, for a link that is down; Apply
	// brings links up.
	Down bool
}

// Addr is an address with its prefix length on a device.
type Addr struct {
	Dev    string
	Prefix netip.Prefix // not masked: 240.168.1.13/8
}

// Route is a route in one of our tables. A route with Via is a gateway
// route, one with only Dev is link-scoped, an Unreachable one has neither.
type Route struct {
	Table       int
	Dst         netip.Prefix // masked
	Unreachable bool
	Via         netip.Addr
	Dev         string
	Src         netip.Addr
	// MTU is the largest packet the route carries, in bytes; 0 for the
	// device's. An IPv6 route's is locked ("mtu lock"), as IPv6
	// forwarding honours no other; one read back unlocked reads as 0.
	MTU int
}

// Family returns the route's family.
func (r Route) Family() Family { return FamilyOf(r.Dst.Addr()) }

// Rule is a policy routing rule: at Priority, packets to Dst, or arriving on
// IIF, look up Table.
type Rule struct {
	// Priority is the rule's preference, as `ip rule` prints it (lower
	// runs first; the kernel's rule for the main table is at 32766):
	// GatewayPriority, RemotePriority, ReturnPriority.
	Priority int
	// Family matters only for IIF rules; a Dst rule's family is Dst's.
	Family Family
	Dst    netip.Prefix // masked; zero with IIF
	IIF    string       // input device name; "" with Dst
	// Table is the routing table's number, as TableScope.Table.
	Table int
}

func (r Rule) family() Family {
	if r.Dst.IsValid() {
		return FamilyOf(r.Dst.Addr())
	}
	if r.Family == 0 {
		return IPv4
	}
	return r.Family
}

// Neigh is a permanent neighbour entry (ARP or NDP) on one of our devices,
// or, with Proxy, an address the node answers for on Dev (no MAC then).
type Neigh struct {
	Dev   string
	IP    netip.Addr
	MAC   string
	Proxy bool
}

// FDBEntry is a VXLAN forwarding entry: frames for MAC on Dev go to the
// underlay address Dst.
type FDBEntry struct {
	Dev string
	MAC string
	Dst netip.Addr
}

// Sysctl is one kernel setting, named as sysctl(8) names it
// ("net.ipv4.ip_forward").
type Sysctl struct {
	Key   string
	Value string
}

// Chain is one packet-filter chain of ours, jumped to once from the
// built-in chain From of the same table.
type Chain struct {
	Family Family
	Table  string // nat, filter, mangle
	// Name is the chain's name: ChainPrefix and at most 28 bytes in all
	// (iptables' limit), e.g. NATChain.
	Name string
	// From is the built-in chain of Table that jumps to Name, the jump
	// kept first there (POSTROUTING, FORWARD).
	From string
	// Comment marks the jump (the writer's, e.g. RouteAgentJumpComment).
	Comment string
	// Rules are the chain's rules in order, each as iptables arguments in
	// the normal form iptables-save prints (-s 10.0.0.0/8, not -s 10/8),
	// so that an applied chain compares equal and is left alone.
	Rules [][]string
}

// jump is the jump rule from c.From, in iptables-save's form.
func (c Chain) jump() string {
	return quoteArgs([]string{"-m", "comment", "--comment", c.Comment, "-j", c.Name})
}

func (c Chain) key() string { return fmt.Sprintf("%d/%s/%s", c.Family, c.Table, c.Name) }

// Merge returns the union of states (for rendering one node's whole state).
func Merge(states ...State) State {
	var out State
	for _, s := range states {
		out.Links = append(out.Links, s.Links...)
		out.Addrs = append(out.Addrs, s.Addrs...)
		out.Routes = append(out.Routes, s.Routes...)
		out.Rules = append(out.Rules, s.Rules...)
		out.Neighs = append(out.Neighs, s.Neighs...)
		out.FDB = append(out.FDB, s.FDB...)
		out.Sysctls = append(out.Sysctls, s.Sysctls...)
		out.Chains = append(out.Chains, s.Chains...)
	}
	return out
}

// Line renderings, shared by String, the reconcilers' keys and the fakes'.

func (l Link) String() string {
	state := "up"
	if l.Down {
		state = "down"
	}
	return fmt.Sprintf("%s: vxlan id %d local %s dstport %d nolearning mtu %d address %s %s", l.Name, l.VNI, l.Local, l.Port, l.MTU, l.MAC, state)
}

func (a Addr) String() string {
	return fmt.Sprintf("%s %s dev %s", FamilyOf(a.Prefix.Addr()), a.Prefix, a.Dev)
}

// String renders the route as `ip route show table all` does.
func (r Route) String() string {
	var b strings.Builder
	if r.Unreachable {
		fmt.Fprintf(&b, "unreachable %s", r.Dst)
	} else {
		b.WriteString(r.Dst.String())
		if r.Via.IsValid() {
			fmt.Fprintf(&b, " via %s", r.Via)
		}
		if r.Dev != "" {
			fmt.Fprintf(&b, " dev %s", r.Dev)
		}
	}
	fmt.Fprintf(&b, " table %d", r.Table)
	if !r.Unreachable && !r.Via.IsValid() {
		b.WriteString(" scope link")
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", r.MTU)
	}
	return b.String()
}

// String renders the rule as `ip rule` (or `ip -6 rule`) does.
func (r Rule) String() string {
	fam := ""
	if r.family() == IPv6 {
		fam = "-6 "
	}
	if r.IIF != "" {
		return fmt.Sprintf("%s%d:\tfrom all iif %s lookup %d", fam, r.Priority, r.IIF, r.Table)
	}
	return fmt.Sprintf("%s%d:\tfrom all to %s lookup %d", fam, r.Priority, r.Dst, r.Table)
}

// String renders the entry as `ip neigh` or `ip neigh show proxy` does.
func (n Neigh) String() string {
	if n.Proxy {
		return fmt.Sprintf("%s dev %s proxy", n.IP, n.Dev)
	}
	return fmt.Sprintf("%s dev %s lladdr %s PERMANENT", n.IP, n.Dev, n.MAC)
}

// String renders the entry as `bridge fdb` does.
func (f FDBEntry) String() string {
	return fmt.Sprintf("%s dev %s dst %s self permanent", f.MAC, f.Dev, f.Dst)
}

func (s Sysctl) String() string { return s.Key + " = " + s.Value }

// String renders the state section by section, each sorted, in the shapes of
// `ip link`, `ip addr`, `ip rule`, `ip route show table all`, `ip neigh`,
// `bridge fdb`, `sysctl` and `iptables-save`/`ip6tables-save` (our chains
// and their jumps only, without counters). Empty sections are left out.
func (s State) String() string {
	var b strings.Builder
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		slices.Sort(lines)
		lines = slices.Compact(lines)
		fmt.Fprintf(&b, "# %s\n", title)
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	section("ip link", render(s.Links))
	section("ip addr", render(s.Addrs))
	rules := slices.Clone(s.Rules)
	slices.SortFunc(rules, func(a, b Rule) int {
		return cmp.Or(cmp.Compare(a.family(), b.family()), cmp.Compare(a.Priority, b.Priority), strings.Compare(a.String(), b.String()))
	})
	if len(rules) > 0 {
		b.WriteString("# ip rule\n")
		for _, r := range slices.CompactFunc(rules, func(a, b Rule) bool { return a.String() == b.String() }) {
			fmt.Fprintln(&b, r)
		}
	}
	routes := slices.Clone(s.Routes)
	slices.SortFunc(routes, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Family(), b.Family()), cmp.Compare(a.Table, b.Table), strings.Compare(a.String(), b.String()))
	})
	if len(routes) > 0 {
		b.WriteString("# ip route show table all\n")
		for _, r := range slices.CompactFunc(routes, func(a, b Route) bool { return a.String() == b.String() }) {
			fmt.Fprintln(&b, r)
		}
	}
	section("ip neigh", render(s.Neighs))
	section("bridge fdb", render(s.FDB))
	section("sysctl", render(s.Sysctls))
	for _, f := range Families {
		title := "iptables-save"
		if f == IPv6 {
			title = "ip6tables-save"
		}
		if txt := saveText(s.Chains, f); txt != "" {
			fmt.Fprintf(&b, "# %s\n%s", title, txt)
		}
	}
	return b.String()
}

func render[T fmt.Stringer](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
}

// saveText renders family f's chains as iptables-save does, table by table:
// the chain declarations, the jumps, then each chain's rules in order.
func saveText(chains []Chain, f Family) string {
	byTable := map[string][]Chain{}
	for _, c := range chains {
		if c.Family == f {
			byTable[c.Table] = append(byTable[c.Table], c)
		}
	}
	tables := make([]string, 0, len(byTable))
	for t := range byTable {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	var b strings.Builder
	for _, t := range tables {
		cs := byTable[t]
		slices.SortFunc(cs, func(a, b Chain) int { return strings.Compare(a.Name, b.Name) })
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range cs {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c.Name)
		}
		for _, c := range cs {
			fmt.Fprintf(&b, "-A %s %s\n", c.From, c.jump())
		}
		for _, c := range cs {
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "-A %s %s\n", c.Name, quoteArgs(r))
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// quoteArgs writes a rule as iptables-save prints it: arguments joined by
// spaces, double-quoted when they hold a space.
func quoteArgs(rule []string) string {
	out := make([]string, len(rule))
	for i, a := range rule {
		if strings.ContainsAny(a, " \t\"") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
