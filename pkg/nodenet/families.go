package nodenet

import (
	"fmt"
	"slices"
	"strings"
)

// FamilyHandle reports the address families a node has.
type FamilyHandle interface {
	// Families returns the node's address families, IPv4 first. A family
	// is missing when the kernel lacks it (booted with ipv6.disable=1) or
	// its packet-filter tools are missing (no ip6tables): the reconcilers
	// then neither list nor write anything of that family.
	Families() []Family
}

// MissingFamilyError is Apply's error, before anything changes, for a State
// that wants entries of an address family the node lacks. Empty chains of a
// missing family are not wanted entries: a writer keeps one chain per
// family, empty while it has nothing of that family.
type MissingFamilyError struct {
	// Missing are the wanted families the node lacks.
	Missing []Family
	// Entries name the wanted entries of those families, as String renders
	// them ("route unreachable fd02::/48 table 151").
	Entries []string
}

func (e *MissingFamilyError) Error() string {
	fams := make([]string, len(e.Missing))
	for i, f := range e.Missing {
		fams[i] = f.String()
	}
	return fmt.Sprintf("node has no %s, but the state wants: %s", strings.Join(fams, " or "), strings.Join(e.Entries, "; "))
}

// family returns the setting's family, false for a setting of no family.
func (s Sysctl) family() (Family, bool) {
	switch {
	case strings.HasPrefix(s.Key, "net.ipv4."):
		return IPv4, true
	case strings.HasPrefix(s.Key, "net.ipv6."):
		return IPv6, true
	}
	return 0, false
}

// CheckFamilies returns a *MissingFamilyError naming every entry of s of a
// family not in fams (the node's, FamilyHandle.Families), nil if there is
// none.
func CheckFamilies(s State, fams []Family) error {
	e := &MissingFamilyError{}
	note := func(f Family, what string, x fmt.Stringer) {
		if slices.Contains(fams, f) {
			return
		}
		if !slices.Contains(e.Missing, f) {
			e.Missing = append(e.Missing, f)
		}
		e.Entries = append(e.Entries, what+" "+x.String())
	}
	for _, l := range s.Links {
		note(FamilyOf(l.Local), "link", l)
	}
	for _, a := range s.Addrs {
		note(FamilyOf(a.Prefix.Addr()), "address", a)
	}
	for _, r := range s.Routes {
		note(r.Family(), "route", r)
	}
	for _, r := range s.Rules {
		note(r.family(), "rule", r)
	}
	for _, n := range s.Neighs {
		note(FamilyOf(n.IP), "neighbour", n)
	}
	for _, x := range s.FDB {
		note(FamilyOf(x.Dst), "FDB entry", x)
	}
	for _, x := range s.Sysctls {
		if f, ok := x.family(); ok {
			note(f, "sysctl", x)
		}
	}
	for _, c := range s.Chains {
		if len(c.Rules) > 0 {
			note(c.Family, "chain", stringer(fmt.Sprintf("%s %s %s", c.Family, c.Table, c.Name)))
		}
	}
	if len(e.Entries) == 0 {
		return nil
	}
	slices.Sort(e.Missing)
	return e
}

type stringer string

func (s stringer) String() string { return string(s) }

// chainsIn returns the chains of cs whose family is in fams.
func chainsIn(cs []Chain, fams []Family) []Chain {
	return slices.DeleteFunc(slices.Clone(cs), func(c Chain) bool { return !slices.Contains(fams, c.Family) })
}
