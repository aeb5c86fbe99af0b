package coredns

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// garbage are packets a hostile or broken client sends: each seeds the fuzz
// test, and TestGarbage checks each one's fate.
var garbage = map[string][]byte{
	"empty":     {},
	"truncated": pack(question("web.default.svc.clusterset.local.", dns.TypeA))[:20],
	// The question's name points at itself (offset 12): a compression loop.
	"compression loop": {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
	"zero questions":   pack(&dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}}),
	"two questions": pack(&dns.Msg{MsgHdr: dns.MsgHdr{Id: 8}, Question: []dns.Question{
		{Name: "web.default.svc.clusterset.local.", Qtype: dns.TypeA, Qclass: dns.ClassINET},
		{Name: "db.default.svc.clusterset.local.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}}),
	"chaos class": pack(&dns.Msg{MsgHdr: dns.MsgHdr{Id: 9}, Question: []dns.Question{
		{Name: "web.default.svc.clusterset.local.", Qtype: dns.TypeTXT, Qclass: dns.ClassCHAOS}}}),
	"any": pack(question("db.default.svc.clusterset.local.", dns.TypeANY)),
	// A question followed by junk up to the largest datagram: the junk is
	// ignored.
	"oversized": append(pack(question("web.default.svc.clusterset.local.", dns.TypeA)), make([]byte, 65000)...),
	// A label length of 64 has the bits of an extended label type (RFC 6891).
	"label of 64": append(append([]byte{0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64}, make([]byte, 64)...), 0, 0, 1, 0, 1),
	"root":        pack(question(".", dns.TypeNS)),
}

func question(name string, t uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	return m
}

func pack(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// serve hands a packet to the plugin the way CoreDNS's server does: a
// packet that does not unpack is dropped (false). What the plugin writes
// must pack again.
func serve(t testing.TB, l *Lighthouse, pkt []byte) (rcode int, written *dns.Msg, ok bool) {
	r := new(dns.Msg)
	if err := r.Unpack(pkt); err != nil {
		return 0, nil, false
	}
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, _ = l.ServeDNS(context.Background(), w, r)
	if w.Msg != nil {
		if _, err := w.Msg.Pack(); err != nil {
			t.Fatalf("the answer to %v does not pack: %v", r.Question, err)
		}
	}
	return rcode, w.Msg, true
}

func TestGarbage(t *testing.T) {
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: fixture(t), Next: test.NextHandler(dns.RcodeRefused, nil)}
	for name, want := range map[string]struct {
		dropped bool
		rcode   int
	}{
		"empty":            {dropped: true},
		"truncated":        {dropped: true},
		"compression loop": {dropped: true},
		"zero questions":   {rcode: dns.RcodeFormatError},
		"two questions":    {rcode: dns.RcodeFormatError},
		"chaos class":      {rcode: dns.RcodeRefused},
		"any":              {rcode: dns.RcodeSuccess},
		"oversized":        {rcode: dns.RcodeSuccess},
		"label of 64":      {dropped: true},
		"root":             {rcode: dns.RcodeRefused}, // outside the zone: the next plugin's
	} {
		t.Run(name, func(t *testing.T) {
			rcode, msg, ok := serve(t, l, garbage[name])
			if ok == want.dropped {
				t.Fatalf("unpacked %v, want dropped %v", ok, want.dropped)
			}
			if msg != nil {
				rcode = msg.Rcode
			}
			if ok && rcode != want.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[want.rcode])
			}
		})
	}
}

// FuzzServeDNS: no packet crashes the plugin, and every answer it writes
// packs. Run longer with: go test -fuzz=FuzzServeDNS -fuzztime=60s ./lighthouse/coredns
func FuzzServeDNS(f *testing.F) {
	for _, pkt := range garbage {
		f.Add(pkt)
	}
	for _, name := range []string{
		"web.default.svc.clusterset.local.", "_http._tcp.web.default.svc.clusterset.local.", "db.default.svc.clusterset.local.",
		"db-0.c1.db.default.svc.clusterset.local.", "10-2-0-7.c2.east.db.default.svc.clusterset.local.", "dns-version.clusterset.local.",
		"_._.db.default.svc.clusterset.local.", "svc.clusterset.local.", "clusterset.local.",
	} {
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeANY, dns.TypeSOA, dns.TypeAXFR} {
			f.Add(pack(question(name, t)))
		}
	}
	l := &Lighthouse{Zones: []string{DefaultZone}, TTL: DefaultTTL, Store: fixture(f), Next: test.NextHandler(dns.RcodeRefused, nil)}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		serve(t, l, pkt)
	})
}
