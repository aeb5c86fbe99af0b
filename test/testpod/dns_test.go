package testpod

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// DNS wire constants the fake server needs (RFC 1035, RFC 2782).
const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
	dnsTypeSRV  = 33

	rcodeServFail = 2
	rcodeNXDomain = 3
)

// fakeRecord is one answer of the fake DNS server.
type fakeRecord struct {
	qtype uint16
	rdata []byte
}

// fakeZone maps a lower-case absolute name to its records. A name that is
// present with no records of the type asked answers NODATA; an absent
// name answers NXDOMAIN; a name starting "servfail." answers SERVFAIL.
type fakeZone map[string][]fakeRecord

// startFakeDNS serves zone over UDP on a loopback port. It understands
// just enough of the protocol for Go's resolver: one question, answers
// with a compressed owner name.
func startFakeDNS(t *testing.T, zone fakeZone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := zone.answer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func (z fakeZone) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// The question: labels up to the root, then type and class.
	var labels []string
	off := 12
	for off < len(q) && q[off] != 0 {
		l := int(q[off])
		if off+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[off+1:off+1+l]))
		off += 1 + l
	}
	off++ // the root label
	if off+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off:])
	question := q[12 : off+4]
	name := strings.ToLower(strings.Join(labels, ".")) + "."

	var rcode byte
	var answers []fakeRecord
	records, known := z[name]
	switch {
	case strings.HasPrefix(name, "servfail."):
		rcode = rcodeServFail
	case !known:
		rcode = rcodeNXDomain
	}
	for _, r := range records {
		if r.qtype == qtype {
			answers = append(answers, r)
		}
	}

	var b bytes.Buffer
	b.Write(q[0:2])                      // ID
	b.WriteByte(0x80 | 0x04 | q[2]&0x01) // QR, AA, RD as asked
	b.WriteByte(0x80 | rcode)            // RA
	_ = binary.Write(&b, binary.BigEndian, [4]uint16{1, uint16(len(answers)), 0, 0})
	b.Write(question)
	for _, r := range answers {
		_ = binary.Write(&b, binary.BigEndian, struct {
			Name, Type, Class uint16
			TTL               uint32
			Len               uint16
		}{0xc00c, r.qtype, 1, 30, uint16(len(r.rdata))})
		b.Write(r.rdata)
	}
	return b.Bytes()
}

func aRecord(s string) fakeRecord {
	a := netip.MustParseAddr(s)
	if a.Is4() {
		return fakeRecord{dnsTypeA, a.AsSlice()}
	}
	return fakeRecord{dnsTypeAAAA, a.AsSlice()}
}

func srvRecord(priority, weight, port uint16, target string) fakeRecord {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, [3]uint16{priority, weight, port})
	for l := range strings.SplitSeq(strings.TrimSuffix(target, "."), ".") {
		b.WriteByte(byte(len(l)))
		b.WriteString(l)
	}
	b.WriteByte(0)
	return fakeRecord{dnsTypeSRV, b.Bytes()}
}

func TestResolveLocalhost(t *testing.T) {
	for _, typ := range []string{"", TypeA} {
		rep := Resolve(context.Background(), DNSConfig{Name: "localhost", Type: typ, Timeout: 5 * time.Second})
		if !rep.OK || !slices.Contains(rep.Addresses, "127.0.0.1") || rep.NotFound || rep.Error != "" {
			t.Errorf("localhost type %q: %+v; want ok with 127.0.0.1", typ, rep)
		}
		if typ == TypeA && slices.ContainsFunc(rep.Addresses, func(a string) bool { return strings.Contains(a, ":") }) {
			t.Errorf("localhost type A: %v has IPv6 addresses", rep.Addresses)
		}
	}
}

func TestResolveServer(t *testing.T) {
	server := startFakeDNS(t, fakeZone{
		"svc.example.test.":    {aRecord("10.1.2.3"), aRecord("fd00::1:2:3"), aRecord("10.1.2.4")},
		"v4only.example.test.": {aRecord("10.9.9.9")},
		"_http._tcp.svc.example.test.": {
			srvRecord(10, 60, 8080, "svc.example.test."),
		},
	})
	for _, tc := range []struct {
		name, typ string
		addrs     []string // compared as sets: Go sorts by RFC 6724
		srv       []SRV
		notFound  bool
	}{
		{name: "svc.example.test.", addrs: []string{"10.1.2.3", "10.1.2.4", "fd00::1:2:3"}},
		{name: "SVC.example.test.", typ: "a", addrs: []string{"10.1.2.3", "10.1.2.4"}},
		{name: "svc.example.test.", typ: TypeAAAA, addrs: []string{"fd00::1:2:3"}},
		{name: "_http._tcp.svc.example.test.", typ: TypeSRV, srv: []SRV{{Target: "svc.example.test.", Port: 8080, Priority: 10, Weight: 60}}},
		{name: "v4only.example.test.", typ: TypeAAAA, notFound: true},
		{name: "svc.example.test.", typ: TypeSRV, notFound: true},
		{name: "missing.example.test.", notFound: true},
		{name: "_http._tcp.missing.example.test.", typ: TypeSRV, notFound: true},
		// A failed lookup is not a missing name.
		{name: "servfail.example.test.", notFound: false},
	} {
		var out bytes.Buffer
		err := RunDNS(context.Background(), DNSConfig{Name: tc.name, Type: tc.typ, Server: server, Timeout: 5 * time.Second}, &out)
		lines := jsonLines(t, out.String())
		if len(lines) != 1 {
			t.Fatalf("%s %s: %d report lines, want 1:\n%s", tc.name, tc.typ, len(lines), out.String())
		}
		rep := Resolve(context.Background(), DNSConfig{Name: tc.name, Type: tc.typ, Server: server, Timeout: 5 * time.Second})
		wantOK := len(tc.addrs)+len(tc.srv) > 0
		slices.Sort(rep.Addresses)
		if rep.OK != wantOK || rep.NotFound != tc.notFound || rep.Server != server ||
			!slices.Equal(rep.Addresses, tc.addrs) && len(tc.addrs)+len(rep.Addresses) > 0 ||
			!slices.Equal(rep.SRV, tc.srv) && len(tc.srv)+len(rep.SRV) > 0 {
			t.Errorf("%s %s: %+v; want ok=%v, notFound=%v, addresses %v, srv %v", tc.name, tc.typ, rep, wantOK, tc.notFound, tc.addrs, tc.srv)
		}
		if wantOK != (err == nil) || (!wantOK && !errors.Is(err, ErrFailed)) {
			t.Errorf("%s %s: RunDNS = %v, want ok=%v (ErrFailed when not)", tc.name, tc.typ, err, wantOK)
		}
		if !wantOK && strings.Contains(rep.Error, " on ") && !strings.Contains(rep.Error, server) {
			t.Errorf("%s %s: error %q names a server other than %s", tc.name, tc.typ, rep.Error, server)
		}
	}
}

// TestResolveTimeout checks that a server that never answers is a
// failure but not a missing name: a test asserting that a name is gone
// must not pass on a dead server.
func TestResolveTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	rep := Resolve(context.Background(), DNSConfig{Name: "svc.example.test.", Server: pc.LocalAddr().String(), Timeout: 300 * time.Millisecond})
	if rep.OK || rep.NotFound || rep.Error == "" {
		t.Errorf("lookup against a silent server: %+v; want not ok, not notFound, an error", rep)
	}
}

func TestDNSConfigValidate(t *testing.T) {
	base := DNSConfig{Name: "svc.example.test", Timeout: time.Second}
	for _, tc := range []struct {
		name  string
		edit  func(*DNSConfig)
		valid bool
	}{
		{"base", func(*DNSConfig) {}, true},
		{"type a", func(c *DNSConfig) { c.Type = "a" }, true},
		{"type SRV", func(c *DNSConfig) { c.Type = "SRV" }, true},
		{"server ip", func(c *DNSConfig) { c.Server = "10.96.0.10" }, true},
		{"server ip:port", func(c *DNSConfig) { c.Server = "10.96.0.10:5353" }, true},
		{"server ipv6", func(c *DNSConfig) { c.Server = "fd00::a" }, true},
		{"server [ipv6]", func(c *DNSConfig) { c.Server = "[fd00::a]" }, true},
		{"server [ipv6]:port", func(c *DNSConfig) { c.Server = "[fd00::a]:53" }, true},

		{"no name", func(c *DNSConfig) { c.Name = "" }, false},
		{"type MX", func(c *DNSConfig) { c.Type = "MX" }, false},
		{"server name", func(c *DNSConfig) { c.Server = "dns.google" }, false},
		{"server bad port", func(c *DNSConfig) { c.Server = "10.96.0.10:99999" }, false},
		{"server ipv6:port without brackets", func(c *DNSConfig) { c.Server = "fd00::a:53:x" }, false},
		{"no timeout", func(c *DNSConfig) { c.Timeout = 0 }, false},
	} {
		cfg := base
		tc.edit(&cfg)
		err := cfg.Validate()
		var ue *UsageError
		switch {
		case tc.valid && err != nil:
			t.Errorf("%s: Validate = %v, want nil", tc.name, err)
		case !tc.valid && !errors.As(err, &ue):
			t.Errorf("%s: Validate = %v, want a *UsageError", tc.name, err)
		case !tc.valid:
			var out bytes.Buffer
			if err := RunDNS(context.Background(), cfg, &out); !errors.As(err, &ue) {
				t.Errorf("%s: RunDNS = %v, want a *UsageError", tc.name, err)
			}
			if lines := jsonLines(t, out.String()); len(lines) != 1 || lines[0]["ok"] != false {
				t.Errorf("%s: RunDNS printed %q, want one not-ok report", tc.name, out.String())
			}
		}
	}
}
