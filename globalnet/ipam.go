package globalnet

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrPoolExhausted is Allocate's error when the global CIDR has no run of
// free addresses as long as asked for.
var ErrPoolExhausted = errors.New("global CIDR exhausted")

// reservedAddrs is how many addresses at the start of the global CIDR are
// never allotted: the network address, and the one after it, the gateway's
// health-check IP under Globalnet (docs/globalnet.md, "Reserved addresses").
const reservedAddrs = 2

// Pool allots global IPs from one cluster's global CIDR to owners (the
// objects' keys, "GlobalEgressIP/ns/name"): each owner holds one run of
// consecutive addresses. It is plain data: the controller rebuilds it from
// the objects' status at start (Reserve) and keeps it in step as they
// change. Any family; not safe for concurrent use.
type Pool struct {
	cidr netip.Prefix
	// runs are the allotted runs, sorted by first address, disjoint.
	runs []run
}

type run struct {
	owner string
	addrs []netip.Addr // consecutive, ascending
}

func (r run) first() netip.Addr { return r.addrs[0] }
func (r run) last() netip.Addr  { return r.addrs[len(r.addrs)-1] }

// NewPool returns an empty pool over cidr, which must leave room beyond its
// two reserved addresses (an IPv4 /30 at least, an IPv6 /126).
func NewPool(cidr netip.Prefix) (*Pool, error) {
	if !cidr.IsValid() {
		return nil, errors.New("global CIDR: invalid prefix")
	}
	if cidr.Bits() > cidr.Addr().BitLen()-2 {
		return nil, fmt.Errorf("global CIDR %s: too small, at least a /%d", cidr, cidr.Addr().BitLen()-2)
	}
	return &Pool{cidr: cidr.Masked()}, nil
}

// CIDR is the pool's global CIDR.
func (p *Pool) CIDR() netip.Prefix { return p.cidr }

// firstUsable is the first address ever allotted.
func (p *Pool) firstUsable() netip.Addr {
	a := p.cidr.Addr()
	for range reservedAddrs {
		a = a.Next()
	}
	return a
}

// Usable reports whether a may be allotted: inside the CIDR, not reserved.
func (p *Pool) Usable(a netip.Addr) bool {
	return p.cidr.Contains(a) && a.Compare(p.firstUsable()) >= 0
}

// Owned returns owner's addresses, nil if it holds none.
func (p *Pool) Owned(owner string) []netip.Addr {
	if i := p.index(owner); i >= 0 {
		return slices.Clone(p.runs[i].addrs)
	}
	return nil
}

func (p *Pool) index(owner string) int {
	return slices.IndexFunc(p.runs, func(r run) bool { return r.owner == owner })
}

// Reserve records that owner holds addrs (read back from its status). It
// fails, changing nothing, when addrs are empty, not consecutive, not
// usable, or held by another owner; an owner that held other addresses
// holds addrs instead.
func (p *Pool) Reserve(owner string, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return errors.New("no addresses")
	}
	for i, a := range addrs {
		if !p.Usable(a) {
			return fmt.Errorf("%s is not a usable address of %s", a, p.cidr)
		}
		if i > 0 && addrs[i-1].Next() != a {
			return fmt.Errorf("%s does not follow %s: addresses are not consecutive", a, addrs[i-1])
		}
	}
	r := run{owner: owner, addrs: slices.Clone(addrs)}
	for _, o := range p.runs {
		if o.owner != owner && overlaps(o, r) {
			return fmt.Errorf("%s-%s overlaps %s's %s-%s", r.first(), r.last(), o.owner, o.first(), o.last())
		}
	}
	p.Release(owner)
	p.insert(r)
	return nil
}

func overlaps(a, b run) bool {
	return a.first().Compare(b.last()) <= 0 && b.first().Compare(a.last()) <= 0
}

func (p *Pool) insert(r run) {
	i, _ := slices.BinarySearchFunc(p.runs, r.first(), func(x run, a netip.Addr) int { return x.first().Compare(a) })
	p.runs = slices.Insert(p.runs, i, r)
}

// Allocate gives owner n consecutive addresses, the lowest free run, and
// returns them. An owner that holds n addresses already keeps them; one
// that holds another number gets a new run (its old one is freed only when
// the new one is found). A pool without n free consecutive addresses
// returns an error wrapping ErrPoolExhausted and changes nothing.
func (p *Pool) Allocate(owner string, n int) ([]netip.Addr, error) {
	if n < 1 {
		return nil, fmt.Errorf("%d addresses asked for: at least 1", n)
	}
	if cur := p.Owned(owner); len(cur) == n {
		return cur, nil
	}
	start := p.firstUsable()
	for _, r := range p.runs {
		if r.owner != owner {
			if addrs, ok := p.fit(start, n, r.first()); ok {
				return p.take(owner, addrs), nil
			}
			start = r.last().Next()
		}
	}
	if addrs, ok := p.fit(start, n, netip.Addr{}); ok {
		return p.take(owner, addrs), nil
	}
	return nil, fmt.Errorf("%d consecutive addresses in %s (%d held by %d objects): %w", n, p.cidr, p.held(), len(p.runs), ErrPoolExhausted)
}

// fit returns the n addresses from start when they are in the CIDR and all
// before limit (the next run's first address; zero for none).
func (p *Pool) fit(start netip.Addr, n int, limit netip.Addr) ([]netip.Addr, bool) {
	addrs := make([]netip.Addr, 0, n)
	for a := start; len(addrs) < n; a = a.Next() {
		if !a.IsValid() || !p.cidr.Contains(a) || (limit.IsValid() && a.Compare(limit) >= 0) {
			return nil, false
		}
		addrs = append(addrs, a)
	}
	return addrs, true
}

func (p *Pool) take(owner string, addrs []netip.Addr) []netip.Addr {
	p.Release(owner)
	p.insert(run{owner: owner, addrs: addrs})
	return slices.Clone(addrs)
}

func (p *Pool) held() int {
	n := 0
	for _, r := range p.runs {
		n += len(r.addrs)
	}
	return n
}

// Release frees owner's addresses, if any.
func (p *Pool) Release(owner string) {
	p.runs = slices.DeleteFunc(p.runs, func(r run) bool { return r.owner == owner })
}

// Owners returns the owners holding addresses, sorted.
func (p *Pool) Owners() []string {
	out := make([]string, 0, len(p.runs))
	for _, r := range p.runs {
		out = append(out, r.owner)
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
