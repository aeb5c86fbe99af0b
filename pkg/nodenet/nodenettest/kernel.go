// Package nodenettest is a fake of the kernel that nodenet's reconcilers
// reach: links, addresses, routes, rules, neighbours, FDB, sysctls and the
// packet filter held as plain values, with the calls that changed something
// logged in order and the whole rendered as text (a nodenet.State's String).
package nodenettest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"strait.dev/strait/pkg/nodenet"
)

// Kernel is a fake nodenet.Kernel. The zero Kernel is an empty node.
type Kernel struct {
	// Log lists the calls that changed something ("route replace …",
	// "restore ip nat: …"), so that a test can assert that a repeated Apply
	// changed nothing and that additions came before removals.
	Log []string
	// Devices are devices that exist without being ours (the cable device,
	// made by its driver): addresses and neighbours may go on them.
	Devices []string
	// Absent are the address families the node lacks, as on a kernel booted
	// with ipv6.disable=1: Families leaves them out, and every call of such
	// a family fails as the kernel or ip6tables would (EAFNOSUPPORT, no
	// /proc/sys/net/ipv6). The zero Kernel has both.
	Absent []nodenet.Family

	mu      sync.Mutex
	s       nodenet.State
	filters map[string]*table // "4/nat"
}

var _ nodenet.Kernel = (*Kernel)(nil)

type table struct {
	order  []string            // chains in creation order, built-in ones first
	chains map[string][]string // chain -> rules, as iptables-save prints them
}

// Families returns the families not Absent, IPv4 first.
func (k *Kernel) Families() []nodenet.Family {
	var out []nodenet.Family
	for _, f := range nodenet.Families {
		if !slices.Contains(k.Absent, f) {
			out = append(out, f)
		}
	}
	return out
}

// family fails with EAFNOSUPPORT for an Absent family.
func (k *Kernel) family(f nodenet.Family) error {
	if slices.Contains(k.Absent, f) {
		return fmt.Errorf("%s: %w", f, syscall.EAFNOSUPPORT)
	}
	return nil
}

// sysctlFamily fails with ENOENT, as opening /proc/sys would, for a
// setting of an Absent family.
func (k *Kernel) sysctlFamily(key string) error {
	if strings.HasPrefix(key, "net.ipv6.") {
		if err := k.family(nodenet.IPv6); err != nil {
			return fmt.Errorf("open /proc/sys/%s: %w", strings.ReplaceAll(key, ".", "/"), syscall.ENOENT)
		}
	}
	return nil
}

func (k *Kernel) logf(format string, args ...any) {
	k.Log = append(k.Log, fmt.Sprintf(format, args...))
}

func (k *Kernel) hasDev(name string) bool {
	return slices.Contains(k.Devices, name) || slices.ContainsFunc(k.s.Links, func(l nodenet.Link) bool { return l.Name == name })
}

func (k *Kernel) dev(name string) error {
	if !k.hasDev(name) {
		return fmt.Errorf("%s: %w", name, nodenet.ErrNoLink)
	}
	return nil
}

// Link returns the named link.
func (k *Kernel) Link(name string) (nodenet.Link, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.s.Links {
		if l.Name == name {
			return l, true, nil
		}
	}
	return nodenet.Link{}, false, nil
}

// AddLink adds l, or fails with EEXIST.
func (k *Kernel) AddLink(l nodenet.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.family(nodenet.FamilyOf(l.Local)); err != nil {
		return err
	}
	if k.hasDev(l.Name) {
		return syscall.EEXIST
	}
	l.Down = false
	k.s.Links = append(k.s.Links, l)
	k.logf("link add %s", l)
	return nil
}

// SetLink changes the link's MTU and MAC and brings it up.
func (k *Kernel) SetLink(l nodenet.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, c := range k.s.Links {
		if c.Name == l.Name {
			c.MTU, c.MAC, c.Down = l.MTU, l.MAC, false
			k.s.Links[i] = c
			k.logf("link set %s", c)
			return nil
		}
	}
	return fmt.Errorf("%s: %w", l.Name, nodenet.ErrNoLink)
}

// DelLink deletes the link with its addresses, routes and neighbours, as
// the kernel does.
func (k *Kernel) DelLink(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(k.s.Links)
	k.s.Links = slices.DeleteFunc(k.s.Links, func(l nodenet.Link) bool { return l.Name == name })
	if n == len(k.s.Links) {
		return fmt.Errorf("%s: %w", name, nodenet.ErrNoLink)
	}
	k.s.Addrs = slices.DeleteFunc(k.s.Addrs, func(a nodenet.Addr) bool { return a.Dev == name })
	k.s.Routes = slices.DeleteFunc(k.s.Routes, func(r nodenet.Route) bool { return r.Dev == name })
	k.s.Neighs = slices.DeleteFunc(k.s.Neighs, func(x nodenet.Neigh) bool { return x.Dev == name })
	k.s.FDB = slices.DeleteFunc(k.s.FDB, func(x nodenet.FDBEntry) bool { return x.Dev == name })
	k.logf("link del %s", name)
	return nil
}

// Addrs lists dev's addresses.
func (k *Kernel) Addrs(dev string) ([]nodenet.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.dev(dev); err != nil {
		return nil, err
	}
	var out []nodenet.Addr
	for _, a := range k.s.Addrs {
		if a.Dev == dev {
			out = append(out, a)
		}
	}
	return out, nil
}

// AddAddr adds a (replacing the same address with another prefix length).
func (k *Kernel) AddAddr(a nodenet.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.family(nodenet.FamilyOf(a.Prefix.Addr())); err != nil {
		return err
	}
	if err := k.dev(a.Dev); err != nil {
		return err
	}
	k.s.Addrs = slices.DeleteFunc(k.s.Addrs, func(x nodenet.Addr) bool { return x.Dev == a.Dev && x.Prefix.Addr() == a.Prefix.Addr() })
	k.s.Addrs = append(k.s.Addrs, a)
	k.logf("addr replace %s", a)
	return nil
}

// DelAddr deletes a, or fails with EADDRNOTAVAIL as the kernel does.
func (k *Kernel) DelAddr(a nodenet.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.Index(k.s.Addrs, a)
	if i < 0 {
		return syscall.EADDRNOTAVAIL
	}
	k.s.Addrs = slices.Delete(k.s.Addrs, i, i+1)
	k.logf("addr del %s", a)
	return nil
}

// Routes lists table's routes.
func (k *Kernel) Routes(t int) ([]nodenet.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []nodenet.Route
	for _, r := range k.s.Routes {
		if r.Table == t {
			out = append(out, r)
		}
	}
	return out, nil
}

func sameDst(a, b nodenet.Route) bool { return a.Table == b.Table && a.Dst == b.Dst }

// ReplaceRoute swaps r in for the route to the same destination in its
// table, as `ip route replace` does in one step.
func (k *Kernel) ReplaceRoute(r nodenet.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.family(r.Family()); err != nil {
		return err
	}
	if r.Dev != "" {
		if err := k.dev(r.Dev); err != nil {
			return err
		}
	}
	i := slices.IndexFunc(k.s.Routes, func(x nodenet.Route) bool { return sameDst(x, r) })
	if i >= 0 {
		k.s.Routes[i] = r
	} else {
		k.s.Routes = append(k.s.Routes, r)
	}
	k.logf("route replace %s", r)
	return nil
}

// DelRoute deletes the route to r's destination in r's table, or fails with
// ESRCH.
func (k *Kernel) DelRoute(r nodenet.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.IndexFunc(k.s.Routes, func(x nodenet.Route) bool { return sameDst(x, r) })
	if i < 0 {
		return syscall.ESRCH
	}
	k.logf("route del %s", k.s.Routes[i])
	k.s.Routes = slices.Delete(k.s.Routes, i, i+1)
	return nil
}

func ruleFamily(r nodenet.Rule) nodenet.Family {
	if r.Dst.IsValid() {
		return nodenet.FamilyOf(r.Dst.Addr())
	}
	if r.Family == 0 {
		return nodenet.IPv4
	}
	return r.Family
}

// Rules lists family f's rules.
func (k *Kernel) Rules(f nodenet.Family) ([]nodenet.Rule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.family(f); err != nil {
		return nil, err
	}
	var out []nodenet.Rule
	for _, r := range k.s.Rules {
		if ruleFamily(r) == f {
			r.Family = f
			out = append(out, r)
		}
	}
	return out, nil
}

// AddRule adds r, or fails with EEXIST for an identical rule, as the
// kernel does (ip rule add).
func (k *Kernel) AddRule(r nodenet.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	r.Family = ruleFamily(r)
	if err := k.family(r.Family); err != nil {
		return err
	}
	if slices.Contains(k.s.Rules, r) {
		return syscall.EEXIST
	}
	k.s.Rules = append(k.s.Rules, r)
	k.logf("rule add %s", r)
	return nil
}

// DelRule deletes one rule equal to r, or fails with ENOENT.
func (k *Kernel) DelRule(r nodenet.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	r.Family = ruleFamily(r)
	i := slices.Index(k.s.Rules, r)
	if i < 0 {
		return syscall.ENOENT
	}
	k.s.Rules = slices.Delete(k.s.Rules, i, i+1)
	k.logf("rule del %s", r)
	return nil
}

// Neighs lists dev's entries.
func (k *Kernel) Neighs(dev string) ([]nodenet.Neigh, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.dev(dev); err != nil {
		return nil, err
	}
	var out []nodenet.Neigh
	for _, n := range k.s.Neighs {
		if n.Dev == dev {
			out = append(out, n)
		}
	}
	return out, nil
}

// SetNeigh adds n or replaces the entry for its address.
func (k *Kernel) SetNeigh(n nodenet.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.family(nodenet.FamilyOf(n.IP)); err != nil {
		return err
	}
	if err := k.dev(n.Dev); err != nil {
		return err
	}
	k.s.Neighs = slices.DeleteFunc(k.s.Neighs, func(x nodenet.Neigh) bool { return x.Dev == n.Dev && x.IP == n.IP && x.Proxy == n.Proxy })
	k.s.Neighs = append(k.s.Neighs, n)
	k.logf("neigh replace %s", n)
	return nil
}

// DelNeigh deletes the entry for n's address, or fails with ENOENT.
func (k *Kernel) DelNeigh(n nodenet.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.IndexFunc(k.s.Neighs, func(x nodenet.Neigh) bool { return x.Dev == n.Dev && x.IP == n.IP && x.Proxy == n.Proxy })
	if i < 0 {
		return syscall.ENOENT
	}
	k.s.Neighs = slices.Delete(k.s.Neighs, i, i+1)
	k.logf("neigh del %s", n)
	return nil
}

// FDB lists dev's FDB entries.
func (k *Kernel) FDB(dev string) ([]nodenet.FDBEntry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.dev(dev); err != nil {
		return nil, err
	}
	var out []nodenet.FDBEntry
	for _, e := range k.s.FDB {
		if e.Dev == dev {
			out = append(out, e)
		}
	}
	return out, nil
}

// AppendFDB adds e; an existing e stays, without an error, as with the
// kernel (bridge fdb append).
func (k *Kernel) AppendFDB(e nodenet.FDBEntry) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.family(nodenet.FamilyOf(e.Dst)); err != nil {
		return err
	}
	if err := k.dev(e.Dev); err != nil {
		return err
	}
	if slices.Contains(k.s.FDB, e) {
		return nil
	}
	k.s.FDB = append(k.s.FDB, e)
	k.logf("fdb append %s", e)
	return nil
}

// DelFDB deletes e, or fails with ENOENT.
func (k *Kernel) DelFDB(e nodenet.FDBEntry) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.Index(k.s.FDB, e)
	if i < 0 {
		return syscall.ENOENT
	}
	k.s.FDB = slices.Delete(k.s.FDB, i, i+1)
	k.logf("fdb del %s", e)
	return nil
}

// GetSysctl returns the setting, "0" when never set.
func (k *Kernel) GetSysctl(key string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.sysctlFamily(key); err != nil {
		return "", err
	}
	for _, s := range k.s.Sysctls {
		if s.Key == key {
			return s.Value, nil
		}
	}
	return "0", nil
}

// SetSysctl sets the setting.
func (k *Kernel) SetSysctl(key, value string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.sysctlFamily(key); err != nil {
		return err
	}
	k.s.Sysctls = slices.DeleteFunc(k.s.Sysctls, func(s nodenet.Sysctl) bool { return s.Key == key })
	k.s.Sysctls = append(k.s.Sysctls, nodenet.Sysctl{Key: key, Value: value})
	k.logf("sysctl %s=%s", key, value)
	return nil
}

var builtin = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

func (k *Kernel) table(f nodenet.Family, name string) (*table, error) {
	if err := k.family(f); err != nil {
		return nil, fmt.Errorf("can't initialize %s %s table: %w", f, name, err)
	}
	bi, ok := builtin[name]
	if !ok {
		return nil, fmt.Errorf("table %s does not exist", name)
	}
	key := fmt.Sprintf("%d/%s", f, name)
	if k.filters == nil {
		k.filters = map[string]*table{}
	}
	t := k.filters[key]
	if t == nil {
		t = &table{order: slices.Clone(bi), chains: map[string][]string{}}
		k.filters[key] = t
	}
	return t, nil
}

// AddFilterRule adds rule (iptables-save form, without "-A CHAIN ") to the end of
// a chain, creating a user chain if needed, as something other than the code
// under test would (kube-proxy's MASQUERADE). It is not logged.
func (k *Kernel) AddFilterRule(f nodenet.Family, tbl, chain, rule string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, err := k.table(f, tbl)
	if err != nil {
		return err
	}
	if _, ok := t.chains[chain]; !ok && !slices.Contains(t.order, chain) {
		t.order = append(t.order, chain)
	}
	t.chains[chain] = append(t.chains[chain], rule)
	return nil
}

// InsertFilterRule inserts rule (iptables-save form) first in an existing
// chain, as kube-proxy or a CNI inserting its jump above ours would. It is
// not logged.
func (k *Kernel) InsertFilterRule(f nodenet.Family, tbl, chain, rule string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, err := k.table(f, tbl)
	if err != nil {
		return err
	}
	if !slices.Contains(t.order, chain) {
		return fmt.Errorf("chain %s does not exist", chain)
	}
	t.chains[chain] = slices.Insert(t.chains[chain], 0, rule)
	return nil
}

// Save renders the table as iptables-save does, without counters.
func (k *Kernel) Save(f nodenet.Family, name string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, err := k.table(f, name)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", name)
	bi := builtin[name]
	for _, c := range t.order {
		if slices.Contains(bi, c) {
			fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
		} else {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
	}
	for _, c := range t.order {
		for _, r := range t.chains[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String(), nil
}

// Restore applies an iptables-restore --noflush script of one table, all or
// nothing: a declared chain is created or emptied, -A appends, -I CHAIN 1
// inserts first, -D deletes the first equal rule, -F empties, -X deletes an
// empty chain nothing jumps to.
func (k *Kernel) Restore(f nodenet.Family, script string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(script), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "*") || lines[len(lines)-1] != "COMMIT" {
		return fmt.Errorf("restore: want *table ... COMMIT, got %q", script)
	}
	name := lines[0][1:]
	t, err := k.table(f, name)
	if err != nil {
		return err
	}
	// Work on a copy: a failing script changes nothing.
	w := &table{order: slices.Clone(t.order), chains: map[string][]string{}}
	for c, rs := range t.chains {
		w.chains[c] = slices.Clone(rs)
	}
	exists := func(c string) bool { return slices.Contains(w.order, c) }
	for _, l := range lines[1 : len(lines)-1] {
		if c, ok := strings.CutPrefix(l, ":"); ok {
			c, _, _ = strings.Cut(c, " ")
			if !exists(c) {
				w.order = append(w.order, c)
			}
			w.chains[c] = nil
			continue
		}
		op, rest, _ := strings.Cut(l, " ")
		chain, rule, _ := strings.Cut(rest, " ")
		if !exists(chain) {
			return fmt.Errorf("restore: chain %q does not exist (line %q)", chain, l)
		}
		switch op {
		case "-A":
			w.chains[chain] = append(w.chains[chain], rule)
		case "-I":
			pos, r, _ := strings.Cut(rule, " ")
			n, err := strconv.Atoi(pos)
			if err != nil || n < 1 || n > len(w.chains[chain])+1 {
				// iptables-restore refuses a position past the end + 1.
				return fmt.Errorf("restore: bad rule number %q for %s (line %q)", pos, chain, l)
			}
			w.chains[chain] = slices.Insert(w.chains[chain], n-1, r)
		case "-D":
			i := slices.Index(w.chains[chain], rule)
			if i < 0 {
				return fmt.Errorf("restore: no rule %q in %s", rule, chain)
			}
			w.chains[chain] = slices.Delete(w.chains[chain], i, i+1)
		case "-F":
			w.chains[chain] = nil
		case "-X":
			if len(w.chains[chain]) > 0 {
				return fmt.Errorf("restore: chain %s is not empty", chain)
			}
			for _, rs := range w.chains {
				for _, r := range rs {
					if strings.HasSuffix(r, "-j "+chain) {
						return fmt.Errorf("restore: chain %s is jumped to", chain)
					}
				}
			}
			w.order = slices.DeleteFunc(w.order, func(c string) bool { return c == chain })
			delete(w.chains, chain)
		default:
			return fmt.Errorf("restore: %q not faked", l)
		}
	}
	*t = *w
	fam := "ip"
	if f == nodenet.IPv6 {
		fam = "ip6"
	}
	k.logf("restore %s %s: %s", fam, name, strings.Join(lines[1:len(lines)-1], "; "))
	return nil
}

// State returns what the fake holds, its chains read through owned less
// those of an Absent family, as nodenet.Applier.Read reads them.
func (k *Kernel) State(owned []nodenet.Chain) nodenet.State {
	k.mu.Lock()
	s := nodenet.Merge(k.s)
	k.mu.Unlock()
	owned = slices.DeleteFunc(slices.Clone(owned), func(c nodenet.Chain) bool { return slices.Contains(k.Absent, c.Family) })
	cs, err := nodenet.ReadChains(k, owned)
	if err != nil {
		panic(err) // the fake's own Save does not fail for known tables
	}
	s.Chains = cs
	return s
}
