package health

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func TestDecodeRejectsGarbage(t *testing.T) {
	good := message{kind: kindRequest, seq: 7, sent: 9}.encode()
	if m, err := decode(good); err != nil || m.seq != 7 || m.sent != 9 {
		t.Fatalf("round trip: %+v, %v", m, err)
	}
	bad := [][]byte{nil, []byte("STHC"), append([]byte("XXXX"), good[4:]...), append(append([]byte{}, good...), 0)}
	wrongVersion := append([]byte{}, good...)
	wrongVersion[4] = 9
	wrongKind := append([]byte{}, good...)
	wrongKind[5] = 9
	for _, b := range append(bad, wrongVersion, wrongKind) {
		if _, err := decode(b); err == nil {
			t.Errorf("decoded %q", b)
		}
	}
}

// changes records the statuses OnChange reports, and wakes waitStatus on
// each one.
type changes struct {
	mu      sync.Mutex
	got     []Status
	changed chan struct{} // closed and replaced on each change
}

func (c *changes) add(_ string, r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, r.Status)
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

// last is the latest status and a channel closed on the next change.
func (c *changes) last() (Status, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	if len(c.got) == 0 {
		return "", c.changed
	}
	return c.got[len(c.got)-1], c.changed
}

// waitStatus waits for OnChange to report want. The bound only keeps a
// broken prober from hanging the test; it is not a timing assertion.
func waitStatus(t *testing.T, c *changes, want Status) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		got, next := c.last()
		if got == want {
			return
		}
		select {
		case <-next:
		case <-timeout:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("status %q, want %q (changes %v)", got, want, c.got)
		}
	}
}

func TestProberConnectsMeasuresAndDetectsSilence(t *testing.T) {
	// Two gateways on loopback, each answering the other's probes.
	aConn, bConn := listen(t), listen(t)
	var ch changes
	a := NewProber(aConn, Options{Interval: 20 * time.Millisecond, Failures: 3, OnChange: ch.add})
	b := NewProber(bConn, Options{Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bctx, bcancel := context.WithCancel(ctx)
	go func() { _ = a.Run(ctx) }()
	go func() { _ = b.Run(bctx) }()

	a.SetTargets(map[string]netip.AddrPort{"b": addr(bConn)})
	waitStatus(t, &ch, Connected)
	// Statistics need a few samples; wait for them rather than for a time.
	var r Result
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		r = a.Results()["b"]
		return r.samples >= 2, nil
	}); err != nil {
		t.Fatalf("fewer than 2 RTT samples: %+v", r)
	}
	if r.samples < 2 || r.Last <= 0 || r.Min <= 0 || r.Max < r.Min || r.Average < r.Min || r.Average > r.Max {
		t.Fatalf("RTT statistics %+v", r)
	}

	// Garbage at the prober changes nothing and crashes nothing.
	junk := listen(t)
	defer junk.Close()
	for _, b := range [][]byte{[]byte("hello"), make([]byte, 24), make([]byte, 1500)} {
		_, _ = junk.WriteToUDPAddrPort(b, addr(aConn))
	}

	// b goes silent: a reports an error after the configured misses.
	bcancel()
	waitStatus(t, &ch, Error)
	if msg := a.Results()["b"].Message; msg == "" {
		t.Error("error without a message")
	}

	// A new b at the same address brings the connection back.
	bConn2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr(bConn)))
	if err != nil {
		t.Skipf("could not rebind %s: %v", addr(bConn), err)
	}
	go func() { _ = NewProber(bConn2, Options{Interval: time.Hour}).Run(ctx) }()
	waitStatus(t, &ch, Connected)
	// A sanity bound, not a timing one: loopback RTTs are far below a
	// millisecond, so only a wrong measurement (a stale epoch, the old
	// connection's numbers) comes near a second.
	if got := a.Results()["b"]; got.samples == 0 || got.Max > time.Second {
		t.Errorf("after reconnecting: %+v", got)
	}

	// Removing the target forgets it.
	a.SetTargets(nil)
	if len(a.Results()) != 0 {
		t.Errorf("results after removing every target: %v", a.Results())
	}
}

// A prober that is handing its role over says so in its answers: the
// prober probing it reports the target still connected, and leaving, as a
// change; an old-format answer (flags zero) is not leaving.
func TestProberReportsLeaving(t *testing.T) {
	if m, err := decode(message{kind: kindReply, leaving: true, seq: 1}.encode()); err != nil || !m.leaving {
		t.Fatalf("leaving round trip: %+v, %v", m, err)
	}
	if m, err := decode(message{kind: kindReply, seq: 1}.encode()); err != nil || m.leaving {
		t.Fatalf("not leaving round trip: %+v, %v", m, err)
	}
	a, b, next := proberPair(t)
	if r := next(); r.Status != Connected || r.Leaving {
		t.Fatalf("first change %+v; want connected, not leaving", r)
	}
	b.SetLeaving(true)
	if r := next(); r.Status != Connected || !r.Leaving {
		t.Fatalf("after b said it is leaving: %+v; want connected and leaving", r)
	}
	if r := a.Results()["b"]; r.Status != Connected || !r.Leaving {
		t.Errorf("result %+v; want connected and leaving", r)
	}
}

// A prober whose gateway lost every remote cluster says so in its answers,
// independently of leaving, and stops saying so when it reaches one again;
// each switch is a change.
func TestProberReportsCutOff(t *testing.T) {
	for _, m := range []message{{kind: kindReply, cutOff: true}, {kind: kindReply, leaving: true, cutOff: true}, {kind: kindReply, leaving: true}} {
		if got, err := decode(m.encode()); err != nil || got != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	}
	_, b, next := proberPair(t)
	if r := next(); r.Status != Connected || r.CutOff {
		t.Fatalf("first change %+v; want connected, not cut off", r)
	}
	b.SetCutOff(true)
	if r := next(); r.Status != Connected || !r.CutOff || r.Leaving {
		t.Fatalf("after b said it is cut off: %+v; want connected, cut off, not leaving", r)
	}
	b.SetCutOff(false)
	if r := next(); r.Status != Connected || r.CutOff {
		t.Fatalf("after b reached a remote again: %+v; want connected, not cut off", r)
	}
}

// A prober whose gateway's connections are all in error says so in its
// answers (losing), apart from cut off; each switch is a change.
func TestProberReportsLosing(t *testing.T) {
	for _, m := range []message{{kind: kindReply, losing: true}, {kind: kindReply, losing: true, cutOff: true, leaving: true}} {
		if got, err := decode(m.encode()); err != nil || got != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	}
	_, b, next := proberPair(t)
	if r := next(); r.Status != Connected || r.Losing {
		t.Fatalf("first change %+v; want connected, not losing", r)
	}
	b.SetLosing(true)
	if r := next(); r.Status != Connected || !r.Losing || r.CutOff {
		t.Fatalf("after b said it is losing: %+v; want connected, losing, not cut off", r)
	}
	b.SetLosing(false)
	if r := next(); r.Status != Connected || r.Losing {
		t.Fatalf("after b's connections answered again: %+v; want connected, not losing", r)
	}
}

// proberPair runs prober a probing prober b every 20 ms, and b probing
// nobody, until the test ends; next returns a's next reported change of b.
func proberPair(t *testing.T) (a, b *Prober, next func() Result) {
	aConn, bConn := listen(t), listen(t)
	got := make(chan Result, 16)
	a = NewProber(aConn, Options{Interval: 20 * time.Millisecond, Failures: 3, OnChange: func(_ string, r Result) { got <- r }})
	b = NewProber(bConn, Options{Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = a.Run(ctx) }()
	go func() { _ = b.Run(ctx) }()
	a.SetTargets(map[string]netip.AddrPort{"b": addr(bConn)})
	return a, b, func() Result {
		t.Helper()
		select {
		case r := <-got:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no change reported")
		}
		return Result{}
	}
}
