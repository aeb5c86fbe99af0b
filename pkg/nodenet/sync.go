package nodenet

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ErrNoLink is what a handle returns (wrapped) for a device that does not
// exist.
var ErrNoLink = errors.New("no such device")

// The handles below say, per method, what each returns for an entry that
// is missing or already there. The reconcilers list before they write and
// write only what the listing says is missing or stale, so an ESRCH, ENOENT,
// EADDRNOTAVAIL or EEXIST reaching them means someone else changed the entry
// in between: it is returned (wrapped, naming the entry), and the next Apply
// lists again and converges.

// LinkHandle reaches the kernel's links.
type LinkHandle interface {
	// Link returns the named link; found is false, with a nil error, when
	// there is no link of that name. A link of another kind than VXLAN is
	// returned with VNI 0 (SyncLinks then makes it anew).
	Link(name string) (l Link, found bool, err error)
	// AddLink creates l, up, with its MTU and MAC. It fails with EEXIST
	// when a link of that name exists (SyncLinks adds only links that Link
	// did not find).
	AddLink(l Link) error
	// SetLink changes an existing link's MTU and MAC to l's and brings it
	// up, changing nothing that already matches; an error wrapping ErrNoLink
	// when there is no such link.
	SetLink(l Link) error
	// DelLink deletes the named link (and, with it, its addresses, routes
	// and neighbours); an error wrapping ErrNoLink when there is none.
	DelLink(name string) error
}

// AddrHandle reaches the addresses of devices.
type AddrHandle interface {
	// Addrs lists dev's addresses, IPv6 link-local ones left out (none is
	// an empty list); an error wrapping ErrNoLink when dev does not exist,
	// which SyncAddrs and Read take as "nothing to remove".
	Addrs(dev string) ([]Addr, error)
	// AddAddr adds a, or replaces the same address with other settings
	// (no EEXIST). IPv6 addresses are added without duplicate address
	// detection, usable at once as a route's source. An error wrapping
	// ErrNoLink when a.Dev does not exist.
	AddAddr(a Addr) error
	// DelAddr deletes a; EADDRNOTAVAIL when dev does not hold it.
	DelAddr(a Addr) error
}

// RouteHandle reaches the routes of one table at a time.
type RouteHandle interface {
	// Routes lists table's routes, of the node's families; a table that
	// holds nothing (or was never used) is an empty list, not an error.
	Routes(table int) ([]Route, error)
	// ReplaceRoute adds r, or swaps it in for the route to the same
	// destination in the same table in one step (no EEXIST); an error
	// wrapping ErrNoLink when r.Dev does not exist.
	ReplaceRoute(r Route) error
	// DelRoute deletes the route to r's destination in r's table; ESRCH
	// when there is none.
	DelRoute(r Route) error
}

// RuleHandle reaches the policy routing rules.
type RuleHandle interface {
	// Rules lists family f's rules, the kernel's own (local, main,
	// default) and other writers' included: callers keep the priorities
	// they own. EAFNOSUPPORT for a family the kernel lacks, which is why
	// SyncRules lists only FamilyHandle.Families.
	Rules(f Family) ([]Rule, error)
	// AddRule adds r; EEXIST when an identical rule exists (SyncRules adds
	// only rules it did not list).
	AddRule(r Rule) error
	// DelRule deletes one rule matching all of r's selectors; ENOENT when
	// none does.
	DelRule(r Rule) error
}

// NeighHandle reaches the neighbour tables and the VXLAN FDB.
type NeighHandle interface {
	// Neighs lists dev's permanent and proxy entries, of the node's
	// families; an error wrapping ErrNoLink when dev does not exist, which
	// SyncNeighs and Read take as "nothing to remove".
	Neighs(dev string) ([]Neigh, error)
	// SetNeigh adds n, or replaces the entry for its address (no EEXIST);
	// an error wrapping ErrNoLink when n.Dev does not exist.
	SetNeigh(n Neigh) error
	// DelNeigh deletes the entry for n's address; ENOENT when there is
	// none.
	DelNeigh(n Neigh) error
	// FDB lists dev's FDB entries that have a destination (the device's
	// own entries left out); an error wrapping ErrNoLink when dev does not
	// exist.
	FDB(dev string) ([]FDBEntry, error)
	// AppendFDB adds e beside any entries for the same MAC; an e that
	// exists already is left as it is, without an error (bridge fdb
	// append).
	AppendFDB(e FDBEntry) error
	// DelFDB deletes e; ENOENT when there is no such entry.
	DelFDB(e FDBEntry) error
}

// SysctlHandle reads and writes kernel settings by sysctl(8) name.
type SysctlHandle interface {
	// GetSysctl returns the setting's value without the trailing newline;
	// an error wrapping fs.ErrNotExist (ENOENT) for a setting the kernel
	// does not have (a device that does not exist, a family it lacks).
	GetSysctl(key string) (string, error)
	// SetSysctl writes the setting; errors as GetSysctl's.
	SetSysctl(key, value string) error
}

// FilterHandle reaches the packet filter (iptables or ip6tables) a table at a
// time.
type FilterHandle interface {
	// Save returns table's rules as iptables-save -t table prints them; an
	// error when the family's packet filter cannot be reached (ip6tables on
	// a kernel without IPv6).
	Save(f Family, table string) (string, error)
	// Restore commits script (iptables-restore input for one table)
	// atomically, touching no chain the script does not name
	// (iptables-restore --noflush). A line that fails (a -D of a rule that
	// is not there, a -X of a chain still jumped to) fails the whole
	// script, and nothing changes.
	Restore(f Family, script string) error
}

// Kernel is every handle, as an Applier needs them.
type Kernel interface {
	LinkHandle
	AddrHandle
	RouteHandle
	RuleHandle
	NeighHandle
	SysctlHandle
	FilterHandle
	FamilyHandle
}

// TableScope is a routing table a writer owns: all of it, or, with Dev, the
// routes through Dev there (the cable driver's share of GatewayTable).
type TableScope struct {
	// Table is the routing table's number as `ip route show table` takes
	// it (1-252 and above 255; 253-255 are the kernel's default, main and
	// local tables): GatewayTable, RemoteTable, ReturnTable.
	Table int
	// Dev is a device name; "" owns every route of Table.
	Dev string
}

func (t TableScope) owns(r Route) bool {
	return r.Table == t.Table && (t.Dev == "" || r.Dev == t.Dev)
}

// Scope is what one writer owns on a node. Apply changes and Remove deletes
// only what is in the Scope; a State with entries outside it is refused.
type Scope struct {
	// Links are the devices the writer creates and deletes.
	Links []string
	// AddrDevs are devices whose addresses (but IPv6 link-local ones) are
	// the writer's.
	AddrDevs []string
	// Tables are the routing tables, or shares of them, the writer owns.
	Tables []TableScope
	// Priorities are the rule priorities the writer owns, both families.
	Priorities []int
	// NeighDevs are devices whose permanent and proxy neighbours and FDB
	// entries are the writer's.
	NeighDevs []string
	// Chains are the writer's chains (Rules ignored): Apply removes those
	// that a State leaves out, with their jumps.
	Chains []Chain
}

// OutOfScopeError is Apply's error for a State that holds an entry outside
// the Applier's Scope.
type OutOfScopeError struct {
	Entry string
}

func (e *OutOfScopeError) Error() string { return fmt.Sprintf("out of scope: %s", e.Entry) }

// Check returns an *OutOfScopeError for the first entry of s outside sc.
func (sc Scope) Check(s State) error {
	bad := func(what string, x fmt.Stringer) error { return &OutOfScopeError{Entry: what + " " + x.String()} }
	for _, l := range s.Links {
		if !slices.Contains(sc.Links, l.Name) {
			return bad("link", l)
		}
	}
	for _, a := range s.Addrs {
		if !slices.Contains(sc.AddrDevs, a.Dev) {
			return bad("address", a)
		}
	}
	for _, r := range s.Routes {
		if !slices.ContainsFunc(sc.Tables, func(t TableScope) bool { return t.owns(r) }) {
			return bad("route", r)
		}
	}
	for _, r := range s.Rules {
		if !slices.Contains(sc.Priorities, r.Priority) {
			return bad("rule", r)
		}
	}
	for _, n := range s.Neighs {
		if !slices.Contains(sc.NeighDevs, n.Dev) {
			return bad("neighbour", n)
		}
	}
	for _, e := range s.FDB {
		if !slices.Contains(sc.NeighDevs, e.Dev) {
			return bad("FDB entry", e)
		}
	}
	for _, c := range s.Chains {
		if !slices.ContainsFunc(sc.Chains, func(o Chain) bool { return o.key() == c.key() && o.From == c.From && o.Comment == c.Comment }) {
			return &OutOfScopeError{Entry: "chain " + c.key()}
		}
	}
	return nil
}

// SyncLinks makes the links named in owned match want: missing ones are
// created, ones whose VNI, port or local address differ are made anew (the
// kernel cannot change those), MTU and MAC are set in place, and owned links
// that want leaves out are deleted.
func SyncLinks(h LinkHandle, owned []string, want []Link) error {
	for _, w := range want {
		cur, found, err := h.Link(w.Name)
		if err != nil {
			return fmt.Errorf("link %s: %w", w.Name, err)
		}
		switch {
		case !found:
			if err := h.AddLink(w); err != nil {
				return fmt.Errorf("create link %s: %w", w.Name, err)
			}
		case cur.VNI != w.VNI || cur.Port != w.Port || cur.Local != w.Local:
			// Ours by name, but other settings (the node's address moved).
			if err := h.DelLink(w.Name); err != nil {
				return fmt.Errorf("replace link %s: %w", w.Name, err)
			}
			if err := h.AddLink(w); err != nil {
				return fmt.Errorf("create link %s: %w", w.Name, err)
			}
		case cur != w:
			if err := h.SetLink(w); err != nil {
				return fmt.Errorf("set link %s: %w", w.Name, err)
			}
		}
	}
	for _, name := range owned {
		if slices.ContainsFunc(want, func(l Link) bool { return l.Name == name }) {
			continue
		}
		if _, found, err := h.Link(name); err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		} else if found {
			if err := h.DelLink(name); err != nil {
				return fmt.Errorf("delete link %s: %w", name, err)
			}
		}
	}
	return nil
}

// SyncAddrs makes the addresses of the devices in owned match want, adding
// before removing. A device that does not exist holds nothing to remove;
// wanting an address on it is an error.
func SyncAddrs(h AddrHandle, owned []string, want []Addr) error {
	for _, dev := range owned {
		cur, err := h.Addrs(dev)
		if errors.Is(err, ErrNoLink) && !slices.ContainsFunc(want, func(a Addr) bool { return a.Dev == dev }) {
			continue
		}
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", dev, err)
		}
		for _, w := range want {
			if w.Dev == dev && !slices.Contains(cur, w) {
				if err := h.AddAddr(w); err != nil {
					return fmt.Errorf("add address %s: %w", w, err)
				}
			}
		}
		for _, c := range cur {
			if !slices.Contains(want, c) {
				if err := h.DelAddr(c); err != nil {
					return fmt.Errorf("delete address %s: %w", c, err)
				}
			}
		}
	}
	return nil
}

// routeID is what the kernel tells routes of one table apart by (we set
// neither TOS nor metric): a replace swaps the route of the same routeID.
func routeID(r Route) string { return fmt.Sprintf("%d %s", r.Table, r.Dst) }

// SyncRoutes makes the owned tables hold exactly the wanted routes: changed
// and new routes are replaced in (one step each, so a destination is never
// without a route), and only then are stale ones deleted.
func SyncRoutes(h RouteHandle, owned []TableScope, want []Route) error {
	cur, err := ownedRoutes(h, owned)
	if err != nil {
		return err
	}
	keep, err := replaceRoutes(h, cur, want)
	if err != nil {
		return err
	}
	for _, c := range cur {
		if keep[routeID(c)] {
			continue
		}
		if err := h.DelRoute(c); err != nil {
			return fmt.Errorf("delete route %s: %w", c, err)
		}
	}
	return nil
}

// ownedRoutes lists the routes of the owned tables that the scope owns.
func ownedRoutes(h RouteHandle, owned []TableScope) ([]Route, error) {
	var cur []Route
	tables := map[int]bool{}
	for _, t := range owned {
		if tables[t.Table] {
			continue
		}
		tables[t.Table] = true
		rs, err := h.Routes(t.Table)
		if err != nil {
			return nil, fmt.Errorf("routes of table %d: %w", t.Table, err)
		}
		for _, r := range rs {
			if slices.ContainsFunc(owned, func(t TableScope) bool { return t.owns(r) }) {
				cur = append(cur, r)
			}
		}
	}
	return cur, nil
}

// replaceRoutes replaces in the wanted routes that cur lacks and returns
// the routeIDs wanted.
func replaceRoutes(h RouteHandle, cur, want []Route) (map[string]bool, error) {
	keep := map[string]bool{}
	for _, w := range want {
		w.Dst = w.Dst.Masked()
		if keep[routeID(w)] {
			continue // a duplicate in want
		}
		keep[routeID(w)] = true
		if slices.Contains(cur, w) {
			continue
		}
		if err := h.ReplaceRoute(w); err != nil {
			return nil, fmt.Errorf("replace route %s: %w", w, err)
		}
	}
	return keep, nil
}

// AddRoutes is SyncRoutes without the deletions: the first half of a
// change that also moves rules, so that no rule points at a table
// that lacks its route at any instant.
func AddRoutes(h RouteHandle, owned []TableScope, want []Route) error {
	cur, err := ownedRoutes(h, owned)
	if err != nil {
		return err
	}
	_, err = replaceRoutes(h, cur, want)
	return err
}

// SyncRules makes the rules at the owned priorities, of the families fams
// (the node's: FamilyHandle.Families), match want: missing rules are added
// first, stale ones deleted after. A family outside fams is not listed.
func SyncRules(h RuleHandle, fams []Family, owned []int, want []Rule) error {
	norm := func(r Rule) Rule {
		r.Family = r.family()
		r.Dst = r.Dst.Masked()
		return r
	}
	var cur []Rule
	for _, f := range fams {
		rs, err := h.Rules(f)
		if err != nil {
			return fmt.Errorf("list %s rules: %w", f, err)
		}
		for _, r := range rs {
			if slices.Contains(owned, r.Priority) {
				cur = append(cur, norm(r))
			}
		}
	}
	wanted := make([]Rule, 0, len(want))
	for _, w := range want {
		w = norm(w)
		wanted = append(wanted, w)
		if slices.Contains(cur, w) {
			continue
		}
		if err := h.AddRule(w); err != nil {
			return fmt.Errorf("add rule %s: %w", w, err)
		}
		cur = append(cur, w) // a duplicate in want is added once
	}
	for _, c := range cur {
		if slices.Contains(wanted, c) {
			continue
		}
		if err := h.DelRule(c); err != nil {
			return fmt.Errorf("delete rule %s: %w", c, err)
		}
	}
	return nil
}

// SyncNeighs makes the permanent and proxy neighbours and the FDB entries of
// the devices in owned match want and fdb, adding before removing. A device
// that does not exist holds nothing to remove.
func SyncNeighs(h NeighHandle, owned []string, want []Neigh, fdb []FDBEntry) error {
	for _, dev := range owned {
		cur, err := h.Neighs(dev)
		if errors.Is(err, ErrNoLink) {
			if slices.ContainsFunc(want, func(n Neigh) bool { return n.Dev == dev }) ||
				slices.ContainsFunc(fdb, func(e FDBEntry) bool { return e.Dev == dev }) {
				return fmt.Errorf("neighbours of %s: %w", dev, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("neighbours of %s: %w", dev, err)
		}
		curF, err := h.FDB(dev)
		if err != nil {
			return fmt.Errorf("FDB of %s: %w", dev, err)
		}
		for _, w := range want {
			if w.Dev == dev && !slices.Contains(cur, w) {
				if err := h.SetNeigh(w); err != nil {
					return fmt.Errorf("set neighbour %s: %w", w, err)
				}
			}
		}
		for _, w := range fdb {
			if w.Dev == dev && !slices.Contains(curF, w) {
				if err := h.AppendFDB(w); err != nil {
					return fmt.Errorf("add FDB entry %s: %w", w, err)
				}
			}
		}
		for _, c := range cur {
			// A neighbour replaced by SetNeigh (same address, new MAC) is
			// gone already.
			if slices.Contains(want, c) || slices.ContainsFunc(want, func(w Neigh) bool { return w.Dev == c.Dev && w.IP == c.IP && w.Proxy == c.Proxy }) {
				continue
			}
			if err := h.DelNeigh(c); err != nil {
				return fmt.Errorf("delete neighbour %s: %w", c, err)
			}
		}
		for _, c := range curF {
			if slices.Contains(fdb, c) {
				continue
			}
			if err := h.DelFDB(c); err != nil {
				return fmt.Errorf("delete FDB entry %s: %w", c, err)
			}
		}
	}
	return nil
}

// SyncSysctls sets each wanted setting that differs. Settings are not owned:
// forwarding is the node's, and others rely on it, so nothing is reset.
func SyncSysctls(h SysctlHandle, want []Sysctl) error {
	for _, w := range want {
		cur, err := h.GetSysctl(w.Key)
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", w.Key, err)
		}
		if cur == w.Value {
			continue
		}
		if err := h.SetSysctl(w.Key, w.Value); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", w.Key, w.Value, err)
		}
	}
	return nil
}

// savedChain is one of our chains as iptables-save shows it.
type savedChain struct {
	exists bool
	rules  []string // "-s 10.0.0.0/8 -j ACCEPT", without "-A NAME "
	jumps  int      // our jumps to it from its From chain
	// first is whether our first jump runs before every rule of From that
	// is not a jump to a chain of ours (ChainPrefix), and no jump to a chain
	// of ours that ranks before it (see jumpRank) comes after it.
	first bool
	// pos is where a jump to it belongs in From, counted from 1 once its
	// own jumps are gone: right after the last leading jump to a chain of
	// ours that ranks before it, else 1.
	pos int
}

// parseSave reads our chains out of iptables-save output for one table.
func parseSave(save string, owned []Chain) map[string]*savedChain {
	out := map[string]*savedChain{}
	for _, c := range owned {
		out[c.Name] = &savedChain{}
	}
	// foreign are the chains in which a rule other than a jump to one of
	// our chains has been seen so far; lead are the targets of the jumps
	// to our chains that start each chain, before any foreign rule.
	foreign := map[string]bool{}
	lead := map[string][]string{}
	for line := range strings.Lines(save) {
		line = strings.TrimRight(line, "\n")
		if name, ok := strings.CutPrefix(line, ":"); ok {
			name, _, _ = strings.Cut(name, " ")
			if sc := out[name]; sc != nil {
				sc.exists = true
			}
			continue
		}
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			continue
		}
		chain, rule, _ := strings.Cut(rest, " ")
		if sc := out[chain]; sc != nil {
			sc.rules = append(sc.rules, rule)
		}
		for _, c := range owned {
			if chain == c.From && rule == c.jump() {
				sc := out[c.Name]
				if sc.jumps == 0 {
					sc.first = !foreign[chain]
				}
				sc.jumps++
			}
		}
		switch target, ours := jumpsToOurs(rule); {
		case !ours:
			foreign[chain] = true
		case !foreign[chain]:
			lead[chain] = append(lead[chain], target)
		}
	}
	// A jump in the leading block is in place when no jump to a chain of
	// ours that ranks before it comes after it; its place is right after
	// the last such jump. Each writer moving only its own jump by this rule
	// converges to the rank order, whatever order the jumps were inserted
	// in, and a jump left out of order by someone else makes no writer flap.
	for _, c := range owned {
		sc := out[c.Name]
		var others []string
		seenOwn := false
		for _, t := range lead[c.From] {
			if t == c.Name {
				seenOwn = true
				continue
			}
			others = append(others, t)
			if seenOwn && jumpRank(t, c.Name) {
				sc.first = false
			}
		}
		sc.pos = 1
		for i, t := range others {
			if jumpRank(t, c.Name) {
				sc.pos = i + 2
			}
		}
	}
	return out
}

// jumpRank is whether a jump to our chain a belongs before a jump to our
// chain b when both are jumped to from one built-in chain (Globalnet's, the
// gateway's and the route agent's from nat POSTROUTING on a gateway node):
// by JumpRank, then by name, so that the order never depends on which
// writer inserted its jump last and a node's rule set is the same after any
// history of restarts and failovers.
func jumpRank(a, b string) bool {
	if ra, rb := JumpRank(a), JumpRank(b); ra != rb {
		return ra < rb
	}
	return a < b
}

// jumpsToOurs returns the target of rule (iptables-save form) and whether
// it is a chain of ours.
func jumpsToOurs(rule string) (string, bool) {
	args := splitArgs(rule)
	i := slices.Index(args, "-j")
	if i < 0 || i+1 >= len(args) || !strings.HasPrefix(args[i+1], ChainPrefix) {
		return "", false
	}
	return args[i+1], true
}

// SyncChains makes the owned chains match want, one atomic
// iptables-restore --noflush commit per family and table that differs: a
// wanted chain whose rules differ is declared (which empties it) and filled
// in the same commit, so there is no instant with a partial rule set; its
// jump is inserted first in From if missing, and moved first if another
// rule (kube-proxy's, a CNI's) has been inserted above it, so that our
// exemptions run before their masquerade and drops (only jumps to other
// chains of ours, ChainPrefix, may precede it); duplicate jumps go; an owned
// chain that want leaves out loses its jump and goes. A table whose chains
// are all as wanted is not written at all, so counters stay.
func SyncChains(h FilterHandle, owned, want []Chain) error {
	type tableKey struct {
		f     Family
		table string
	}
	groups := map[tableKey][]Chain{}
	var order []tableKey
	for _, c := range slices.Concat(owned, want) {
		k := tableKey{c.Family, c.Table}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		if !slices.ContainsFunc(groups[k], func(o Chain) bool { return o.Name == c.Name }) {
			groups[k] = append(groups[k], c)
		}
	}
	for _, k := range order {
		save, err := h.Save(k.f, k.table)
		if err != nil {
			return fmt.Errorf("save %s %s table: %w", k.f, k.table, err)
		}
		cur := parseSave(save, groups[k])
		var script strings.Builder
		for _, c := range groups[k] {
			sc := cur[c.Name]
			i := slices.IndexFunc(want, func(w Chain) bool { return w.key() == c.key() })
			if i < 0 {
				for range sc.jumps {
					fmt.Fprintf(&script, "-D %s %s\n", c.From, c.jump())
				}
				if sc.exists {
					fmt.Fprintf(&script, "-F %s\n-X %s\n", c.Name, c.Name)
				}
				continue
			}
			w := want[i]
			rules := make([]string, len(w.Rules))
			for j, r := range w.Rules {
				rules[j] = quoteArgs(r)
			}
			if !sc.exists || !slices.Equal(sc.rules, rules) {
				fmt.Fprintf(&script, ":%s - [0:0]\n", w.Name)
				for _, r := range rules {
					fmt.Fprintf(&script, "-A %s %s\n", w.Name, r)
				}
			}
			if sc.jumps == 1 && sc.first {
				continue
			}
			// Missing, duplicated or out of place: the jumps there are go,
			// by their spec (a rule number could name another writer's
			// rule had it inserted one since our save), and one is inserted
			// at its place: first, after only the jumps to our chains that
			// rank before it. Both in this commit, which the kernel takes
			// in one step: no packet sees From without the jump.
			for range sc.jumps {
				fmt.Fprintf(&script, "-D %s %s\n", w.From, w.jump())
			}
			fmt.Fprintf(&script, "-I %s %d %s\n", w.From, sc.pos, w.jump())
		}
		if script.Len() == 0 {
			continue
		}
		if err := h.Restore(k.f, "*"+k.table+"\n"+script.String()+"COMMIT\n"); err != nil {
			return fmt.Errorf("restore %s %s table: %w", k.f, k.table, err)
		}
	}
	return nil
}

// ReadChains returns the owned chains as the packet filter holds them (those
// that exist), for comparing the kernel with a State.
func ReadChains(h FilterHandle, owned []Chain) ([]Chain, error) {
	var out []Chain
	for _, c := range owned {
		save, err := h.Save(c.Family, c.Table)
		if err != nil {
			return nil, fmt.Errorf("save %s %s table: %w", c.Family, c.Table, err)
		}
		sc := parseSave(save, []Chain{c})[c.Name]
		if !sc.exists {
			continue
		}
		got := c
		got.Rules = nil
		for _, r := range sc.rules {
			got.Rules = append(got.Rules, splitArgs(r))
		}
		// Render anomalies visibly: a State cannot hold them otherwise.
		switch {
		case sc.jumps != 1:
			got.Comment = fmt.Sprintf("%s (%d jumps)", c.Comment, sc.jumps)
		case !sc.first:
			got.Comment = c.Comment + " (not first)"
		}
		out = append(out, got)
	}
	return out, nil
}

// splitArgs undoes quoteArgs.
func splitArgs(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, inArg := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && quoted && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case ch == '"':
			quoted, inArg = !quoted, true
		case ch == ' ' && !quoted:
			if inArg {
				out = append(out, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(ch)
			inArg = true
		}
	}
	if inArg {
		out = append(out, cur.String())
	}
	return out
}

// hostPrefix is a as a /32 or /128.
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// HostAddr is a as a /32 or /128 address on dev.
func HostAddr(dev string, a netip.Addr) Addr { return Addr{Dev: dev, Prefix: hostPrefix(a)} }
