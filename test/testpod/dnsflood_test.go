package testpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// refusingDNS serves DNS on one loopback port over UDP and TCP, answering
// every query it can parse with REFUSED, until the test ends. It returns
// the address and a count of the queries it answered.
func refusingDNS(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var answered atomic.Int64
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		answered.Add(1)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		_ = w.WriteMsg(m)
	})
	// Whatever parses reaches the handler: the default would answer some
	// of the flood itself (FORMERR, NOTIMP) and ignore responses.
	accept := func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }

	var ln net.Listener
	var pc net.PacketConn
	for attempt := 0; pc == nil; attempt++ {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		// The same port for UDP, which another test may hold.
		if pc, err = net.ListenPacket("udp", ln.Addr().String()); err != nil {
			ln.Close()
			if attempt == 10 {
				t.Fatal(err)
			}
		}
	}
	for _, s := range []*dns.Server{
		{Listener: ln, Handler: handler, MsgAcceptFunc: accept},
		{PacketConn: pc, Handler: handler, MsgAcceptFunc: accept},
	} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() {
			if err := s.Shutdown(); err != nil {
				t.Errorf("shut down the DNS server: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("DNS server: %v", err)
			}
		})
	}
	return pc.LocalAddr().String(), &answered
}

// runFlood runs RunDNSFlood and decodes its one report line, failing the
// test if it does not end within a bound far above its expected time.
func runFlood(t *testing.T, cfg DNSFloodConfig) (DNSFloodReport, error) {
	t.Helper()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- RunDNSFlood(context.Background(), cfg, &out) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("dns-flood against %s still running after 30s", cfg.Server)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("dns-flood printed %d lines, want 1:\n%s", n, out.String())
	}
	var rep DNSFloodReport
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
		t.Fatalf("report %q: %v", out.String(), jerr)
	}
	return rep, err
}

func TestDNSFlood(t *testing.T) {
	server, answered := refusingDNS(t)
	const count = 2000
	rep, err := runFlood(t, DNSFloodConfig{Server: server, Count: count, Timeout: time.Second, Seed: 7})
	if err != nil || !rep.OK || rep.Error != "" {
		t.Fatalf("flood of a working server: %v\n%+v", err, rep)
	}
	sum := 0
	for cat, n := range rep.Sent {
		if !slices.Contains(FloodCategories(), cat) {
			t.Errorf("sent %d packets of unknown category %q", n, cat)
		}
		sum += n
	}
	wantTCP := count / floodTCPEvery
	switch {
	case sum != count || rep.Failed != 0:
		t.Errorf("sent %d and failed %d packets, want %d sent: %v", sum, rep.Failed, count, rep.Sent)
	case rep.UDP+rep.TCP != count || rep.TCP != wantTCP:
		t.Errorf("%d over UDP and %d over TCP, want %d and %d", rep.UDP, rep.TCP, count-wantTCP, wantTCP)
	case rep.TCPShortPrefix != wantTCP/floodShortEvery:
		t.Errorf("%d TCP packets with a short prefix, want %d", rep.TCPShortPrefix, wantTCP/floodShortEvery)
	case len(rep.Sent) != len(floodCategories):
		t.Errorf("sent %d categories, want all %d: %v", len(rep.Sent), len(floodCategories), rep.Sent)
	}
	for net, a := range map[string]FloodAnswer{"udp": rep.Final.UDP, "tcp": rep.Final.TCP} {
		if !a.Answered || a.Rcode != "REFUSED" {
			t.Errorf("final question over %s: %+v, want answered REFUSED", net, a)
		}
	}
	// The flood reached the server and it answered some of it: a flood
	// that sends nothing must not pass.
	if rep.UDPReplies == 0 || rep.UDPReplyRcodes["REFUSED"] == 0 || answered.Load() < 2+int64(rep.UDPReplyRcodes["REFUSED"]) {
		t.Errorf("%d UDP replies %v, server answered %d queries; want REFUSED replies to the flood and the server to have answered them and the final questions",
			rep.UDPReplies, rep.UDPReplyRcodes, answered.Load())
	}
}

// TestDNSFloodClosedPort checks that a flood of a port nothing listens on
// fails, and promptly, rather than passing on packets that went nowhere.
func TestDNSFloodClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := ln.Addr().String()
	ln.Close()
	rep, err := runFlood(t, DNSFloodConfig{Server: server, Count: 300, Timeout: 500 * time.Millisecond, Seed: 1})
	if !errors.Is(err, ErrFailed) || rep.OK {
		t.Errorf("flood of a closed port: %v, ok=%v; want ErrFailed and not ok", err, rep.OK)
	}
	if rep.Final.UDP.Answered || rep.Final.TCP.Answered || rep.Final.UDP.Error == "" || rep.Final.TCP.Error == "" {
		t.Errorf("final question against a closed port: %+v, want no answer and an error over both", rep.Final)
	}
	// Every TCP packet finds the port closed; UDP ones fail once ICMP
	// port unreachable comes back.
	sum := 0
	for _, n := range rep.Sent {
		sum += n
	}
	if rep.TCP != 0 || rep.Failed < 300/floodTCPEvery || sum+rep.Failed != 300 || rep.ErrorCount == 0 || len(rep.Errors) == 0 {
		t.Errorf("sent %d (%d over TCP), failed %d, errors %d %q; want no TCP packet sent, %d in all, and the errors listed",
			sum, rep.TCP, rep.Failed, rep.ErrorCount, rep.Errors, 300)
	}
}

// TestFloodPackets checks the packets themselves: a seed replays them,
// another seed does not, and each category is what its name says to a
// parser.
func TestFloodPackets(t *testing.T) {
	round := func(seed uint64, tcp bool) map[string][]byte {
		g := newFloodGen(seed)
		pkts := map[string][]byte{}
		for range floodCategories {
			cat, b := g.next(tcp)
			pkts[cat] = b
		}
		return pkts
	}
	a, b, c := round(3, false), round(3, false), round(4, false)
	if len(a) != len(floodCategories) {
		t.Fatalf("one round gave %d categories, want %d", len(a), len(floodCategories))
	}
	differ := 0
	for cat := range a {
		if !bytes.Equal(a[cat], b[cat]) {
			t.Errorf("%s: seed 3 gave %x, then %x", cat, a[cat], b[cat])
		}
		if !bytes.Equal(a[cat], c[cat]) {
			differ++
		}
	}
	if differ < len(floodCategories)/2 {
		t.Errorf("seeds 3 and 4 gave %d different packets of %d, want most", differ, len(floodCategories))
	}

	// The dns package is lenient with a message that ends where a
	// question should be (truncated, question-missing): it returns the
	// questions it has. Those are checked by their bytes instead.
	malformed := []string{"empty", "pointer-loop", "pointer-past-end", "label-64", "label-past-end"}
	lenient := []string{"random", "truncated", "question-missing"}
	for seed := range uint64(20) {
		for cat, pkt := range round(seed, seed%2 == 0) {
			var m dns.Msg
			err := m.Unpack(pkt)
			switch {
			case cat == "empty" && len(pkt) != 0, cat == "huge" && len(pkt) != floodHugeSize:
				t.Errorf("%s: %d bytes", cat, len(pkt))
			case cat == "question-missing" && (len(pkt) != 12 || pkt[4] != 0 || pkt[5] != 1):
				t.Errorf("seed %d %s: %x, want a header with qdcount 1 and nothing else", seed, cat, pkt)
			case cat == "truncated" && (len(pkt) == 0 || err == nil && len(m.Question) > 0):
				t.Errorf("seed %d %s: %x, want a query cut short", seed, cat, pkt)
			case slices.Contains(lenient, cat):
			case slices.Contains(malformed, cat) && err == nil:
				t.Errorf("seed %d %s: %x parses as %v, want an error", seed, cat, pkt, m.Question)
			case !slices.Contains(malformed, cat) && err != nil:
				t.Errorf("seed %d %s: %x does not parse: %v", seed, cat, pkt, err)
			case cat == "random-labels" && (len(m.Question) != 1 || !strings.HasSuffix(m.Question[0].Name, ".clusterset.local.")):
				t.Errorf("seed %d %s: question %v, want one under clusterset.local", seed, cat, m.Question)
			case cat == "two-questions" && len(m.Question) != 2, cat == "no-question" && len(m.Question) != 0:
				t.Errorf("seed %d %s: %d questions", seed, cat, len(m.Question))
			case cat == "edns-version-1" && (m.IsEdns0() == nil || m.IsEdns0().Version() != 1):
				t.Errorf("seed %d %s: no EDNS0 version 1: %v", seed, cat, m.Extra)
			case cat == "edns-size-0" && (m.IsEdns0() == nil || m.IsEdns0().UDPSize() != 0):
				t.Errorf("seed %d %s: no EDNS0 size 0: %v", seed, cat, m.Extra)
			case cat == "opcode-update" && m.Opcode != dns.OpcodeUpdate, cat == "response" && !m.Response:
				t.Errorf("seed %d %s: header %v", seed, cat, m.MsgHdr)
			}
		}
	}
}

func TestDNSFloodConfigValidate(t *testing.T) {
	base := DNSFloodConfig{Server: "10.96.0.10", Count: 1, Timeout: time.Second}
	for _, tc := range []struct {
		name  string
		edit  func(*DNSFloodConfig)
		valid bool
	}{
		{"base", func(*DNSFloodConfig) {}, true},
		{"port", func(c *DNSFloodConfig) { c.Server = "10.96.0.10:5353" }, true},
		{"ipv6", func(c *DNSFloodConfig) { c.Server = "[fd00::a]:53" }, true},
		{"rate", func(c *DNSFloodConfig) { c.Rate = 1000 }, true},
		{"no server", func(c *DNSFloodConfig) { c.Server = "" }, false},
		{"server name", func(c *DNSFloodConfig) { c.Server = "kube-dns" }, false},
		{"no count", func(c *DNSFloodConfig) { c.Count = 0 }, false},
		{"negative rate", func(c *DNSFloodConfig) { c.Rate = -1 }, false},
		{"no timeout", func(c *DNSFloodConfig) { c.Timeout = 0 }, false},
	} {
		cfg := base
		tc.edit(&cfg)
		err := cfg.Validate()
		var ue *UsageError
		if tc.valid && err != nil || !tc.valid && !errors.As(err, &ue) {
			t.Errorf("%s: Validate = %v, want valid=%v (a *UsageError when not)", tc.name, err, tc.valid)
		}
	}
}
