package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeServer answers A queries on loopback: NXDOMAIN until the name's
// address is set, then the address.
type fakeServer struct {
	addr    string
	answers atomic.Value // map[string]string, name → address
}

func startFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{addr: pc.LocalAddr().String()}
	f.answers.Store(map[string]string{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		if ip, ok := f.answers.Load().(map[string]string)[q.Name]; ok {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.ParseIP(ip)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f
}

func (f *fakeServer) set(name, ip string) {
	m := map[string]string{}
	for k, v := range f.answers.Load().(map[string]string) {
		m[k] = v
	}
	if ip == "" {
		delete(m, name)
	} else {
		m[name] = ip
	}
	f.answers.Store(m)
}

// runPoll runs poll with a pipe for stdin and returns the writer and a
// channel of its output lines, closed when poll returns.
func runPoll(t *testing.T, args ...string) (io.WriteCloser, <-chan string) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() {
		err := poll(args, inR, outW)
		_ = outW.CloseWithError(err)
	}()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return inW, lines
}

func TestPollFirstAnswer(t *testing.T) {
	f := startFakeServer(t)
	in, lines := runPoll(t, "--server", f.addr, "--interval", "5ms", "--timeout", "2s")
	_, _ = io.WriteString(in, "a.example\nnever.example.\n")
	time.Sleep(100 * time.Millisecond) // asked and denied meanwhile
	set := time.Now()
	f.set("a.example.", "192.0.2.1")
	_ = in.Close()
	got := map[string]firstAnswer{}
	for l := range lines {
		var a firstAnswer
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got[a.Name] = a
	}
	a := got["a.example."]
	if a.TimedOut || len(a.Addrs) != 1 || a.Addrs[0] != "192.0.2.1" {
		t.Fatalf("a.example.: %+v", a)
	}
	if at := time.Unix(0, a.UnixNano); at.Before(set) || at.Sub(set) > 500*time.Millisecond {
		t.Errorf("answered %v after the address was set; want within 500 ms, not before", at.Sub(set))
	}
	if a.Queries < 10 {
		t.Errorf("%d queries in 100 ms at 5 ms; want about 20", a.Queries)
	}
	n := got["never.example."]
	if !n.TimedOut || n.UnixNano != 0 || !strings.HasPrefix(n.LastAnswer, "NXDOMAIN") {
		t.Errorf("never.example.: %+v; want timed out after NXDOMAIN", n)
	}
}

func TestPollWatch(t *testing.T) {
	f := startFakeServer(t)
	f.set("hl.example.", "192.0.2.1")
	in, lines := runPoll(t, "--server", f.addr, "--interval", "5ms", "--watch", "hl.example")
	next := func() answerChange {
		t.Helper()
		select {
		case l := <-lines:
			var c answerChange
			if err := json.Unmarshal([]byte(l), &c); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return c
		case <-time.After(2 * time.Second):
			t.Fatal("no change printed")
		}
		return answerChange{}
	}
	if c := next(); c.Rcode != "NOERROR" || len(c.Addrs) != 1 {
		t.Fatalf("first: %+v", c)
	}
	removed := time.Now()
	f.set("hl.example.", "")
	if c := next(); c.Rcode != "NXDOMAIN" || len(c.Addrs) != 0 || time.Unix(0, c.UnixNano).Before(removed) {
		t.Fatalf("after removal: %+v", c)
	}
	_ = in.Close()
	for range lines { // poll returns once stdin is closed
	}
}

func TestPercentile(t *testing.T) {
	var hundred []float64
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, float64(i))
	}
	for _, tc := range []struct {
		v    []float64
		p    float64
		want float64
	}{
		{hundred, 50, 50}, {hundred, 99, 99}, {hundred, 100, 100},
		{[]float64{1, 2, 3, 4, 5}, 50, 3}, {[]float64{7}, 99, 7}, {nil, 50, 0},
	} {
		if got := percentile(tc.v, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.v), tc.p, got, tc.want)
		}
	}
}
