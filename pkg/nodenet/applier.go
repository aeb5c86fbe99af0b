package nodenet

import (
	"errors"
	"fmt"
	"slices"
)

// Applier makes one writer's slice of a node's kernel state match a State.
type Applier struct {
	// Kernel reaches the node: Host() for the current network namespace.
	Kernel Kernel
	// Scope is what the writer owns; Apply touches nothing else.
	Scope Scope
}

// Apply makes the kernel match s within the Applier's Scope, in an order
// that never leaves traffic without its path:
//
//  1. links (addresses, routes and neighbours need them), addresses,
//     neighbours and FDB entries;
//  2. chains (a new subnet is exempt from masquerade before it is routed)
//     and sysctls (forwarding before routes);
//  3. new and changed routes, then rules (added, then stale ones removed),
//     then stale routes (no rule ever points at a table lacking its route).
//
// Every step adds before it removes and leaves alone what already matches,
// so Apply may be called again and again with the same State and then
// changes nothing. Families the node lacks (Kernel.Families) are skipped:
// nothing of theirs is listed or written. Before anything changes, an
// *OutOfScopeError is returned for a State with entries outside the Scope,
// and a *MissingFamilyError for one that wants entries (but empty chains)
// of a family the node lacks; other errors name the step and entry that
// failed, and a later Apply picks up from there.
func (a *Applier) Apply(s State) error {
	return a.apply(nil, s)
}

// ApplyChange is Apply for a State that follows prev, the State the last
// successful Apply or ApplyChange of this Applier put in the kernel: when
// s's chains equal prev's, the packet filter is neither read nor written.
// Its sync is the one costly step, a fork and exec of iptables-save (and
// ip6tables-save) per table, about 50 ms each on a loaded 2-core node,
// while a failover changes only routes and neighbours: the route agent's
// informer events use ApplyChange, so that a new active gateway is routed
// to without waiting for the packet filter. Drift in the chains (another
// writer removing ours) is repaired by the next Apply, which a periodic
// resync calls. Errors are Apply's.
func (a *Applier) ApplyChange(prev, s State) error {
	return a.apply(&prev, s)
}

func (a *Applier) apply(prev *State, s State) error {
	if err := a.Scope.Check(s); err != nil {
		return err
	}
	k := a.Kernel
	fams := k.Families()
	if err := CheckFamilies(s, fams); err != nil {
		return err
	}
	if err := SyncLinks(k, a.Scope.Links, s.Links); err != nil {
		return err
	}
	if err := SyncAddrs(k, a.Scope.AddrDevs, s.Addrs); err != nil {
		return err
	}
	if err := SyncNeighs(k, a.Scope.NeighDevs, s.Neighs, s.FDB); err != nil {
		return err
	}
	if prev == nil || (State{Chains: prev.Chains}).String() != (State{Chains: s.Chains}).String() {
		if err := SyncChains(k, chainsIn(a.Scope.Chains, fams), chainsIn(s.Chains, fams)); err != nil {
			return err
		}
	}
	if err := SyncSysctls(k, s.Sysctls); err != nil {
		return err
	}
	if err := AddRoutes(k, a.Scope.Tables, s.Routes); err != nil {
		return err
	}
	if err := SyncRules(k, fams, a.Scope.Priorities, s.Rules); err != nil {
		return err
	}
	return SyncRoutes(k, a.Scope.Tables, s.Routes)
}

// Remove deletes everything in the Scope: rules first (traffic falls back to
// the main table rather than into an emptied table), then chains, routes,
// neighbours, addresses and links. Sysctls stay. It goes on past errors and
// returns them joined. Families the node lacks hold nothing to remove.
func (a *Applier) Remove() error {
	k := a.Kernel
	fams := k.Families()
	return errors.Join(
		SyncRules(k, fams, a.Scope.Priorities, nil),
		SyncChains(k, chainsIn(a.Scope.Chains, fams), nil),
		SyncRoutes(k, a.Scope.Tables, nil),
		SyncNeighs(k, a.Scope.NeighDevs, nil, nil),
		SyncAddrs(k, a.Scope.AddrDevs, nil),
		SyncLinks(k, a.Scope.Links, nil),
	)
}

// Read returns what the kernel holds within the Scope, as a State, and the
// named sysctls (they are not owned, so the Scope does not list them).
// Read(keys...).String() equals the applied State's String when the kernel
// has converged. Families the node lacks are not read.
func (a *Applier) Read(sysctls ...string) (State, error) {
	k := a.Kernel
	fams := k.Families()
	var s State
	for _, name := range a.Scope.Links {
		l, found, err := k.Link(name)
		if err != nil {
			return State{}, fmt.Errorf("link %s: %w", name, err)
		}
		if found {
			s.Links = append(s.Links, l)
		}
	}
	for _, dev := range a.Scope.AddrDevs {
		as, err := k.Addrs(dev)
		if errors.Is(err, ErrNoLink) {
			continue
		}
		if err != nil {
			return State{}, fmt.Errorf("addresses of %s: %w", dev, err)
		}
		s.Addrs = append(s.Addrs, as...)
	}
	var tables []int
	for _, t := range a.Scope.Tables {
		if slices.Contains(tables, t.Table) {
			continue
		}
		tables = append(tables, t.Table)
		rs, err := k.Routes(t.Table)
		if err != nil {
			return State{}, fmt.Errorf("routes of table %d: %w", t.Table, err)
		}
		for _, r := range rs {
			if slices.ContainsFunc(a.Scope.Tables, func(t TableScope) bool { return t.owns(r) }) {
				s.Routes = append(s.Routes, r)
			}
		}
	}
	for _, f := range fams {
		rs, err := k.Rules(f)
		if err != nil {
			return State{}, fmt.Errorf("list %s rules: %w", f, err)
		}
		for _, r := range rs {
			if slices.Contains(a.Scope.Priorities, r.Priority) {
				s.Rules = append(s.Rules, r)
			}
		}
	}
	for _, dev := range a.Scope.NeighDevs {
		ns, err := k.Neighs(dev)
		if errors.Is(err, ErrNoLink) {
			continue
		}
		if err != nil {
			return State{}, fmt.Errorf("neighbours of %s: %w", dev, err)
		}
		s.Neighs = append(s.Neighs, ns...)
		fdb, err := k.FDB(dev)
		if err != nil {
			return State{}, fmt.Errorf("FDB of %s: %w", dev, err)
		}
		s.FDB = append(s.FDB, fdb...)
	}
	for _, key := range sysctls {
		v, err := k.GetSysctl(key)
		if err != nil {
			return State{}, fmt.Errorf("sysctl %s: %w", key, err)
		}
		s.Sysctls = append(s.Sysctls, Sysctl{Key: key, Value: v})
	}
	cs, err := ReadChains(k, chainsIn(a.Scope.Chains, fams))
	if err != nil {
		return State{}, err
	}
	s.Chains = cs
	return s, nil
}
