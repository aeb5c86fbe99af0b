package globalnet

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, x := range s {
		out[i] = netip.MustParseAddr(x)
	}
	return out
}

func str(as []netip.Addr) string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return strings.Join(out, ",")
}

func newPool(t *testing.T, cidr string) *Pool {
	t.Helper()
	p, err := NewPool(netip.MustParsePrefix(cidr))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The network address and the health-check IP after it are never allotted;
// runs are consecutive and the lowest free; a freed run is reused.
func TestAllocate(t *testing.T) {
	for _, cidr := range []string{"242.1.0.0/16", "fd42::/64"} {
		p := newPool(t, cidr)
		base := p.CIDR().Addr()
		at := func(i int) netip.Addr {
			a := base
			for range i {
				a = a.Next()
			}
			return a
		}
		span := func(from, n int) string {
			var as []netip.Addr
			for i := range n {
				as = append(as, at(from+i))
			}
			return str(as)
		}
		must := func(owner string, n int) string {
			t.Helper()
			got, err := p.Allocate(owner, n)
			if err != nil {
				t.Fatalf("%s: allocate %d for %s: %v", cidr, n, owner, err)
			}
			return str(got)
		}
		if got, want := must("cluster", 8), span(2, 8); got != want {
			t.Errorf("%s: cluster got %s, want %s", cidr, got, want)
		}
		if got, want := must("a", 1), span(10, 1); got != want {
			t.Errorf("%s: a got %s, want %s", cidr, got, want)
		}
		if got, want := must("b", 3), span(11, 3); got != want {
			t.Errorf("%s: b got %s, want %s", cidr, got, want)
		}
		if got, want := must("a", 1), span(10, 1); got != want {
			t.Errorf("%s: a again got %s, want its own %s", cidr, got, want)
		}
		p.Release("a")
		if got, want := must("c", 2), span(14, 2); got != want {
			t.Errorf("%s: c (2, the 1-address gap too small) got %s, want %s", cidr, got, want)
		}
		if got, want := must("d", 1), span(10, 1); got != want {
			t.Errorf("%s: d got %s, want the freed %s", cidr, got, want)
		}
		// Growing moves to a run that fits; the old one is free after.
		if got, want := must("d", 2), span(16, 2); got != want {
			t.Errorf("%s: d grown got %s, want %s", cidr, got, want)
		}
		if got, want := must("e", 1), span(10, 1); got != want {
			t.Errorf("%s: e got %s, want the freed %s", cidr, got, want)
		}
	}
}

// A small pool runs out with ErrPoolExhausted, changing nothing, and the
// others keep theirs.
func TestAllocateExhausted(t *testing.T) {
	p := newPool(t, "242.1.0.0/28") // 16 addresses, 14 usable
	if _, err := p.Allocate("cluster", 8); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Allocate("a", 4); err != nil {
		t.Fatal(err)
	}
	_, err := p.Allocate("big", 3)
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("3 more of 2 free: %v, want ErrPoolExhausted", err)
	}
	if !strings.Contains(err.Error(), "242.1.0.0/28") {
		t.Errorf("error does not name the CIDR: %v", err)
	}
	if got := p.Owned("big"); got != nil {
		t.Errorf("exhausted owner holds %s", str(got))
	}
	if got := str(p.Owned("a")); got != "242.1.0.10,242.1.0.11,242.1.0.12,242.1.0.13" {
		t.Errorf("a holds %s after another's exhaustion", got)
	}
	if got, err := p.Allocate("small", 2); err != nil || str(got) != "242.1.0.14,242.1.0.15" {
		t.Errorf("the last two: %s, %v", str(got), err)
	}
	if _, err := p.Allocate("one", 1); !errors.Is(err, ErrPoolExhausted) {
		t.Errorf("full pool: %v", err)
	}
}

// Rebuilding from status keeps every address, refuses reserved, foreign,
// non-consecutive and doubly claimed ones, and allots around the kept ones.
func TestReserve(t *testing.T) {
	p := newPool(t, "242.1.0.0/16")
	if err := p.Reserve("b", addrs("242.1.0.5", "242.1.0.6")); err != nil {
		t.Fatal(err)
	}
	if err := p.Reserve("a", addrs("242.1.0.2")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		as   []netip.Addr
		want string
	}{
		{addrs("242.1.0.0"), "not a usable address"},
		{addrs("242.1.0.1"), "not a usable address"},
		{addrs("242.2.0.9"), "not a usable address"},
		{addrs("242.1.0.8", "242.1.0.10"), "not consecutive"},
		{addrs("242.1.0.4", "242.1.0.5"), "overlaps b's"},
		{nil, "no addresses"},
	} {
		err := p.Reserve("x", tc.as)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reserve %s: %v, want %q", str(tc.as), err, tc.want)
		}
	}
	if got := p.Owned("x"); got != nil {
		t.Errorf("refused reservations left %s", str(got))
	}
	got, err := p.Allocate("c", 2)
	if err != nil || str(got) != "242.1.0.3,242.1.0.4" {
		t.Errorf("c: %s, %v; want the gap 242.1.0.3-4", str(got), err)
	}
	got, err = p.Allocate("d", 1)
	if err != nil || str(got) != "242.1.0.7" {
		t.Errorf("d: %s, %v", str(got), err)
	}
	if fmt.Sprint(p.Owners()) != "[a b c d]" {
		t.Errorf("owners %v", p.Owners())
	}
}

func TestNewPool(t *testing.T) {
	for cidr, ok := range map[string]bool{"242.0.0.0/8": true, "242.1.0.0/30": true, "242.1.0.0/31": false, "fd00::/127": false} {
		_, err := NewPool(netip.MustParsePrefix(cidr))
		if (err == nil) != ok {
			t.Errorf("%s: %v", cidr, err)
		}
	}
}
