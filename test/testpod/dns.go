package testpod

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DNS record types dns looks up. The empty type asks for A and AAAA.
const (
	TypeA    = "A"
	TypeAAAA = "AAAA"
	TypeSRV  = "SRV"
)

// dnsPort is the port of a --server given without one.
const dnsPort = 53

// DNSConfig is one lookup.
type DNSConfig struct {
	// Name is looked up as Go's resolver would: a name without a trailing
	// dot goes through the search list of /etc/resolv.conf, as in a pod.
	Name string
	// Type is TypeA, TypeAAAA, TypeSRV (any case), or empty for A and AAAA.
	Type string
	// Server is "IP" or "IP:PORT" of a DNS server to ask instead of those
	// in /etc/resolv.conf (/etc/hosts is still read first).
	Server string
	// Timeout bounds the lookup.
	Timeout time.Duration
}

// SRV is one SRV record.
type SRV struct {
	Target   string `json:"target"`
	Port     uint16 `json:"port"`
	Priority uint16 `json:"priority"`
	Weight   uint16 `json:"weight"`
}

// DNSReport is the one JSON line dns prints.
type DNSReport struct {
	// OK is true when the name has records of the type asked for.
	OK   bool   `json:"ok"`
	Name string `json:"name"`
	// Type is the record type asked for, empty for A and AAAA.
	Type string `json:"type,omitempty"`
	// Server is the server asked, when one was given.
	Server string `json:"server,omitempty"`
	// Addresses are the A and AAAA answers, in resolver order.
	Addresses []string `json:"addresses"`
	// SRV are the SRV answers, in resolver order (by priority, then
	// randomised by weight).
	SRV []SRV `json:"srv"`
	// NotFound is true when the name or the records do not exist, as
	// opposed to the lookup failing (a timeout, a refused query): a test
	// asserting a name is gone checks this, not just OK.
	NotFound bool `json:"notFound,omitempty"`
	// Error says what went wrong when OK is false.
	Error string `json:"error,omitempty"`
}

// Validate checks the config; its errors are *UsageError.
func (c DNSConfig) Validate() error {
	if c.Name == "" {
		return usageErrorf("missing name to look up")
	}
	switch strings.ToUpper(c.Type) {
	case "", TypeA, TypeAAAA, TypeSRV:
	default:
		return usageErrorf("unknown record type %q: want %s, %s or %s", c.Type, TypeA, TypeAAAA, TypeSRV)
	}
	if c.Server != "" {
		if _, err := serverAddr(c.Server); err != nil {
			return err
		}
	}
	if c.Timeout <= 0 {
		return usageErrorf("invalid timeout %s: want a positive duration", c.Timeout)
	}
	return nil
}

// serverAddr parses "IP" or "IP:PORT" (an IPv6 address with a port in
// brackets).
func serverAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a, dnsPort), nil
	}
	return netip.AddrPort{}, usageErrorf("invalid DNS server %q: want IP or IP:PORT", s)
}

// Resolve runs one lookup and reports it. It never fails itself: whatever
// went wrong, an invalid config included, is in DNSReport.Error.
func Resolve(ctx context.Context, cfg DNSConfig) DNSReport {
	rep := DNSReport{
		Name:      cfg.Name,
		Type:      strings.ToUpper(cfg.Type),
		Addresses: []string{},
		SRV:       []SRV{},
	}
	if err := cfg.Validate(); err != nil {
		rep.Error = err.Error()
		return rep
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	r := &net.Resolver{}
	if cfg.Server != "" {
		server, _ := serverAddr(cfg.Server) // validated
		rep.Server = server.String()
		r = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server.String())
			},
		}
	}

	var err error
	switch rep.Type {
	case TypeSRV:
		var srvs []*net.SRV
		_, srvs, err = r.LookupSRV(ctx, "", "", cfg.Name)
		for _, s := range srvs {
			rep.SRV = append(rep.SRV, SRV{Target: s.Target, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
		}
	default:
		network := "ip"
		switch rep.Type {
		case TypeA:
			network = "ip4"
		case TypeAAAA:
			network = "ip6"
		}
		var addrs []netip.Addr
		addrs, err = r.LookupNetIP(ctx, network, cfg.Name)
		for _, a := range addrs {
			rep.Addresses = append(rep.Addresses, a.Unmap().String())
		}
	}
	var dnsErr *net.DNSError
	var addrErr *net.AddrError
	switch {
	case errors.As(err, &dnsErr):
		if rep.Server != "" {
			// Go names the server of resolv.conf it would have asked, not
			// the one Dial went to.
			dnsErr.Server = rep.Server
		}
		rep.Error = err.Error()
		rep.NotFound = dnsErr.IsNotFound
	case errors.As(err, &addrErr):
		// The name exists (in /etc/hosts, say, or as an IP literal) but
		// not with an address of the family asked for.
		rep.Error = err.Error()
		rep.NotFound = true
	case err != nil:
		rep.Error = err.Error()
	case len(rep.Addresses) == 0 && len(rep.SRV) == 0:
		rep.Error = fmt.Sprintf("no %s records for %s", cmp.Or(rep.Type, "A or AAAA"), cfg.Name)
		rep.NotFound = true
	default:
		rep.OK = true
	}
	return rep
}

// RunDNS runs one lookup and writes its report to w as one JSON line. It
// returns a *UsageError for an invalid config (still reported), an error
// wrapping ErrFailed when the report is not ok, and nil otherwise.
func RunDNS(ctx context.Context, cfg DNSConfig, w io.Writer) error {
	verr := cfg.Validate()
	rep := Resolve(ctx, cfg)
	return finish(w, rep, rep.OK, rep.Error, verr)
}
