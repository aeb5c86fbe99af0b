// Package cidr parses and prints lists of IP prefixes, as flags, annotations
// and manifests carry them: comma-separated, canonical (host bits zero).
package cidr

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseList parses comma-separated prefixes, skipping empty elements, and
// returns them masked to canonical form.
func ParseList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q: want a prefix such as 10.1.0.0/16 or fd00:10:1::/64", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseAll parses each element of a list flag, each of which may itself be
// comma-separated.
func ParseAll(in []string) ([]netip.Prefix, error) {
	return ParseList(strings.Join(in, ","))
}

// Join prints prefixes comma-separated, in canonical form.
func Join(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Masked().String()
	}
	return strings.Join(s, ",")
}
