package testpod

import (
	"bytes"
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPingConfigValidate(t *testing.T) {
	good := PingConfig{Target: "127.0.0.1:9001", Interval: DefaultPingInterval, Timeout: DefaultPingTimeout}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", good, err)
	}
	for _, tc := range []struct {
		name    string
		edit    func(*PingConfig)
		wantErr string
	}{
		{"no target", func(c *PingConfig) { c.Target = "" }, "missing target"},
		{"no port", func(c *PingConfig) { c.Target = "localhost" }, "missing port"},
		{"no host", func(c *PingConfig) { c.Target = ":9001" }, "missing host"},
		{"port zero", func(c *PingConfig) { c.Target = "127.0.0.1:0" }, "not a number from 1 to 65535"},
		{"port name", func(c *PingConfig) { c.Target = "127.0.0.1:echo" }, "not a number from 1 to 65535"},
		{"IPv6 without brackets", func(c *PingConfig) { c.Target = "::1:9001" }, "too many colons"},
		{"zero interval", func(c *PingConfig) { c.Interval = 0 }, "invalid interval"},
		{"negative interval", func(c *PingConfig) { c.Interval = -time.Millisecond }, "invalid interval"},
		{"negative duration", func(c *PingConfig) { c.Duration = -time.Second }, "invalid duration"},
		{"zero timeout", func(c *PingConfig) { c.Timeout = 0 }, "invalid timeout"},
		{"negative report interval", func(c *PingConfig) { c.ReportEvery = -time.Second }, "invalid report interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			err := cfg.Validate()
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate(%+v) = %v, want a *UsageError containing %q", cfg, err, tc.wantErr)
			}
			// The report of an invalid config says why, and RunPing
			// returns the usage error after printing it.
			if rep := Ping(context.Background(), cfg); rep.OK || !strings.Contains(rep.Error, tc.wantErr) {
				t.Errorf("Ping reported %+v, want not ok with %q", rep, tc.wantErr)
			}
			var out bytes.Buffer
			if err := RunPing(context.Background(), cfg, &out); !errors.As(err, &ue) || len(jsonLines(t, out.String())) != 1 {
				t.Errorf("RunPing = %v, printed %q; want a *UsageError and one report", err, out.String())
			}
		})
	}
}

// pingCounts is what TestPingStats compares of a report.
type pingCounts struct {
	Sent, Received, Lost, Pending, Late, Duplicates, Ignored, SendErrors int64
	MaxGapMs                                                             float64
	Gaps                                                                 []PingGap
	GapCount                                                             int
}

func counts(r PingReport) pingCounts {
	return pingCounts{
		Sent: r.Sent, Received: r.Received, Lost: r.Lost, Pending: r.Pending, Late: r.Late,
		Duplicates: r.Duplicates, Ignored: r.Ignored, SendErrors: r.SendErrors,
		MaxGapMs: r.MaxGapMs, Gaps: r.Gaps, GapCount: r.GapCount,
	}
}

// datagram is the datagram seq as s sent it.
func (s *pingStats) datagram(seq uint64) []byte {
	b := make([]byte, pingSize)
	s.encode(b, seq, s.sent[seq].at)
	return b
}

// TestPingStats replays runs on the counting alone, with exact times.
func TestPingStats(t *testing.T) {
	const iv = 10 * time.Millisecond
	ms := time.Millisecond
	// steady sends n datagrams every interval from 0 and answers each
	// after 1 ms, except those for which drop says so.
	steady := func(s *pingStats, n int, drop func(seq uint64) bool) {
		for i := range n {
			seq := s.sending(time.Duration(i) * iv)
			if drop == nil || !drop(seq) {
				s.reply(s.datagram(seq), time.Duration(i)*iv+ms)
			}
		}
	}
	for _, tc := range []struct {
		name string
		run  func(s *pingStats)
		end  time.Duration // the report's time; 0 for 2 s, long after the run
		want pingCounts
	}{{
		name: "all answered",
		run:  func(s *pingStats) { steady(s, 100, nil) },
		want: pingCounts{Sent: 100, Received: 100, MaxGapMs: 10, Gaps: []PingGap{}},
	}, {
		name: "a short outage is no gap",
		// Nine in a row lost: the gap is 10 intervals, not more than 10.
		run:  func(s *pingStats) { steady(s, 100, func(seq uint64) bool { return seq >= 20 && seq < 29 }) },
		want: pingCounts{Sent: 100, Received: 91, Lost: 9, MaxGapMs: 100, Gaps: []PingGap{}},
	}, {
		name: "one outage",
		// Replies to 0..19 arrive at 1..191 ms, to 50.. from 501 ms.
		run:  func(s *pingStats) { steady(s, 100, func(seq uint64) bool { return seq >= 20 && seq < 50 }) },
		want: pingCounts{Sent: 100, Received: 70, Lost: 30, MaxGapMs: 310, Gaps: []PingGap{{StartMs: 191, LengthMs: 310}}, GapCount: 1},
	}, {
		name: "two outages",
		run: func(s *pingStats) {
			steady(s, 100, func(seq uint64) bool { return seq >= 10 && seq < 25 || seq >= 60 && seq < 80 })
		},
		want: pingCounts{
			Sent: 100, Received: 65, Lost: 35, MaxGapMs: 210,
			Gaps: []PingGap{{StartMs: 91, LengthMs: 160}, {StartMs: 591, LengthMs: 210}}, GapCount: 2,
		},
	}, {
		name: "a slow start and a silent end are no gaps",
		run:  func(s *pingStats) { steady(s, 100, func(seq uint64) bool { return seq < 30 || seq >= 70 }) },
		want: pingCounts{Sent: 100, Received: 40, Lost: 60, MaxGapMs: 10, Gaps: []PingGap{}},
	}, {
		name: "gaps are measured in arrival order",
		// 1 comes back before 0, then nothing until 2 at 200 ms.
		run: func(s *pingStats) {
			for i := range 3 {
				s.sending(time.Duration(i) * iv)
			}
			s.reply(s.datagram(1), 12*ms)
			s.reply(s.datagram(0), 15*ms)
			s.reply(s.datagram(2), 200*ms)
		},
		want: pingCounts{Sent: 3, Received: 3, MaxGapMs: 185, Gaps: []PingGap{{StartMs: 15, LengthMs: 185}}, GapCount: 1},
	}, {
		name: "duplicates",
		run: func(s *pingStats) {
			steady(s, 10, nil)
			s.reply(s.datagram(3), 101*ms)
			s.reply(s.datagram(3), 102*ms)
			s.reply(s.datagram(9), 103*ms)
		},
		want: pingCounts{Sent: 10, Received: 10, Duplicates: 3, MaxGapMs: 10, Gaps: []PingGap{}},
	}, {
		name: "a late reply is lost, and its copies are duplicates",
		run: func(s *pingStats) {
			s.sending(0)
			s.sending(10 * ms)
			s.reply(s.datagram(1), 11*ms)
			s.reply(s.datagram(0), 1001*ms)
			s.reply(s.datagram(0), 1002*ms)
		},
		want: pingCounts{Sent: 2, Received: 1, Lost: 1, Late: 1, Duplicates: 1, Gaps: []PingGap{}},
	}, {
		name: "strangers are ignored",
		run: func(s *pingStats) {
			s.sending(0)
			good := s.datagram(0)
			otherRun := bytes.Clone(good)
			otherRun[4] ^= 0xff
			unsent := bytes.Clone(good)
			unsent[19] = 1 // sequence number 1
			wrongTime := bytes.Clone(good)
			wrongTime[27] = 1
			for _, b := range [][]byte{nil, []byte("hello"), good[:pingSize-1], append(bytes.Clone(good), 0), otherRun, unsent, wrongTime} {
				s.reply(b, 2*ms)
			}
		},
		want: pingCounts{Sent: 1, Lost: 1, Ignored: 7, Gaps: []PingGap{}},
	}, {
		name: "failed sends are lost",
		run: func(s *pingStats) {
			steady(s, 2, nil)
			s.sendFailed(s.sending(20*ms), errors.New("network is unreachable"))
			s.sendFailed(s.sending(30*ms), errors.New("network is unreachable"))
		},
		want: pingCounts{Sent: 4, Received: 2, Lost: 2, SendErrors: 2, MaxGapMs: 10, Gaps: []PingGap{}},
	}, {
		name: "unanswered datagrams within the timeout are pending",
		run:  func(s *pingStats) { steady(s, 100, func(seq uint64) bool { return seq >= 60 }) },
		end:  1890 * ms, // 89..99 were sent within the last second
		want: pingCounts{Sent: 100, Received: 60, Lost: 29, Pending: 11, MaxGapMs: 10, Gaps: []PingGap{}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPingStats(iv, time.Second)
			s.runID = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
			tc.run(s)
			end := tc.end
			if end == 0 {
				end = 2 * time.Second
			}
			got := counts(s.report(end, end))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("report:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestPingStatsKeepsLongestGaps checks that a flapping path keeps the
// report bounded, and keeps the gaps that matter.
func TestPingStatsKeepsLongestGaps(t *testing.T) {
	s := newPingStats(time.Millisecond, time.Second)
	var at time.Duration
	s.sending(at)
	s.reply(s.datagram(0), at)
	// Gaps of 11..250 ms: the longest 100 are the last 100.
	for i := range 240 {
		at += time.Duration(11+i) * time.Millisecond
		seq := s.sending(at)
		s.reply(s.datagram(seq), at)
	}
	rep := s.report(at, at)
	if rep.GapCount != 240 || len(rep.Gaps) != maxPingGaps {
		t.Fatalf("%d gaps listed of %d, want %d of 240", len(rep.Gaps), rep.GapCount, maxPingGaps)
	}
	for i, g := range rep.Gaps {
		if want := float64(151 + i); g.LengthMs != want {
			t.Fatalf("gap %d is %v ms long, want %v: %v", i, g.LengthMs, want, rep.Gaps)
		}
	}
	if rep.MaxGapMs != 250 {
		t.Errorf("maxGapMs = %v, want 250", rep.MaxGapMs)
	}
}

// fakeEcho answers datagrams on a loopback port as handle says: handle
// gets each datagram and sends what it likes with reply.
func fakeEcho(t *testing.T, handle func(b []byte, reply func([]byte))) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			handle(bytes.Clone(buf[:n]), func(b []byte) { _, _ = pc.WriteTo(b, from) })
		}
	}()
	return pc.LocalAddr().String()
}

func pingSeq(b []byte) uint64 {
	if len(b) != pingSize {
		return 0
	}
	return uint64(b[12])<<56 | uint64(b[13])<<48 | uint64(b[14])<<40 | uint64(b[15])<<32 |
		uint64(b[16])<<24 | uint64(b[17])<<16 | uint64(b[18])<<8 | uint64(b[19])
}

func TestPingLoopback(t *testing.T) {
	ts := startServer(t, ServeConfig{UDPEcho: []string{"127.0.0.1:0"}})
	target := ts.UDPEchoAddrs()[0].String()
	rep := Ping(context.Background(), PingConfig{
		Target: target, Interval: 10 * time.Millisecond, Duration: 300 * time.Millisecond, Timeout: time.Second,
	})
	if !rep.OK || !rep.Final || rep.Error != "" || rep.LastError != "" {
		t.Fatalf("report %+v, want final, ok, no error", rep)
	}
	if rep.Sent < 3 || rep.Received != rep.Sent || rep.Lost != 0 || rep.Pending != 0 ||
		rep.Late+rep.Duplicates+rep.Ignored+rep.SendErrors != 0 {
		t.Errorf("report %+v, want at least 3 sent and all received once", rep)
	}
	// No bound on the gaps: a loaded machine can stall this process for
	// more than ten intervals, which the report rightly lists as a gap
	// (TestPingOutage tests the detector). With nothing lost, the report
	// must only be consistent: each listed gap within the longest, and that
	// below the reply timeout.
	if len(rep.Gaps) != rep.GapCount || rep.MaxGapMs >= 1000 {
		t.Errorf("gaps %v (%d), max %v ms; want as many listed as counted, the longest under the 1 s timeout", rep.Gaps, rep.GapCount, rep.MaxGapMs)
	}
	for _, g := range rep.Gaps {
		if g.LengthMs > rep.MaxGapMs {
			t.Errorf("gap %v longer than maxGapMs %v", g, rep.MaxGapMs)
		}
	}
	if !(0 < rep.RTTP50Ms && rep.RTTP50Ms <= rep.RTTP99Ms && rep.RTTP99Ms <= rep.RTTMaxMs && rep.RTTMaxMs < 1000) {
		t.Errorf("rtt p50 %v, p99 %v, max %v ms; want 0 < p50 <= p99 <= max < timeout", rep.RTTP50Ms, rep.RTTP99Ms, rep.RTTMaxMs)
	}
	if rep.FirstReplyMs == nil || rep.LastReplyMs == nil || *rep.FirstReplyMs > *rep.LastReplyMs || *rep.LastReplyMs > rep.DurationMs+1000 {
		t.Errorf("first reply %v, last %v, duration %v ms: out of order", rep.FirstReplyMs, rep.LastReplyMs, rep.DurationMs)
	}
	if rep.Remote != target || rep.Local == "" {
		t.Errorf("local %q, remote %q; want a local address and remote %s", rep.Local, rep.Remote, target)
	}
	started, err1 := time.Parse(time.RFC3339Nano, rep.StartedAt)
	ended, err2 := time.Parse(time.RFC3339Nano, rep.EndedAt)
	if err1 != nil || err2 != nil || ended.Sub(started) < 300*time.Millisecond {
		t.Errorf("startedAt %q, endedAt %q: want RFC 3339 times at least the duration apart", rep.StartedAt, rep.EndedAt)
	}
}

// TestPingOutage drops the replies of some 300 ms in the middle of a run
// and expects that one gap in the report.
func TestPingOutage(t *testing.T) {
	const first, last = 20, 120 // the replies dropped: 100 at 10 ms, a second
	target := fakeEcho(t, func(b []byte, reply func([]byte)) {
		if seq := pingSeq(b); seq < first || seq >= last {
			reply(b)
		}
	})
	rep := Ping(context.Background(), PingConfig{
		Target: target, Interval: 10 * time.Millisecond, Duration: 2 * time.Second, Timeout: time.Second,
	})
	if !rep.OK || rep.Sent < last+10 {
		t.Fatalf("report %+v, want ok and more than %d sent", rep, last+10)
	}
	if rep.Lost != last-first || rep.Received != rep.Sent-rep.Lost {
		t.Errorf("sent %d, received %d, lost %d; want %d lost", rep.Sent, rep.Received, rep.Lost, last-first)
	}
	// Generous bounds: this checks the detector, not the timing. On a
	// loaded machine the test process itself can stall for a few hundred
	// milliseconds, which the detector rightly reports as a gap too; the
	// outage is the one gap of 800 ms or more, and the longest.
	if rep.GapCount != len(rep.Gaps) || len(rep.Gaps) == 0 {
		t.Fatalf("gaps %v (%d), want the outage's", rep.Gaps, rep.GapCount)
	}
	var outage []PingGap
	for _, g := range rep.Gaps {
		if g.LengthMs >= 800 {
			outage = append(outage, g)
		}
	}
	if len(outage) != 1 {
		t.Fatalf("gaps %v, want exactly one of 800 ms or more", rep.Gaps)
	}
	if g := outage[0]; g.LengthMs >= 3000 || g.StartMs < 100 || rep.MaxGapMs != g.LengthMs {
		t.Errorf("gap %v, max %v ms; want one of 800 ms to 3 s after the first 100 ms, and it the longest", g, rep.MaxGapMs)
	}
	if len(rep.Gaps) > 1 {
		t.Logf("besides the outage, stalls of the loaded machine: %v", rep.Gaps)
	}
}

// TestPingStrangers answers with more than the echo and expects the extra
// datagrams to be told apart.
func TestPingStrangers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle func(b []byte, reply func([]byte))
		check  func(rep PingReport) bool
	}{{
		name: "garbage and other runs' replies",
		handle: func(b []byte, reply func([]byte)) {
			otherRun := bytes.Clone(b)
			otherRun[8] ^= 0x01
			reply([]byte("garbage"))
			reply(otherRun)
			reply(b[:len(b)-1])
			reply(b)
		},
		check: func(rep PingReport) bool {
			return rep.Received == rep.Sent && rep.Ignored == 3*rep.Sent && rep.Duplicates == 0
		},
	}, {
		name: "every reply twice",
		handle: func(b []byte, reply func([]byte)) {
			reply(b)
			reply(b)
		},
		check: func(rep PingReport) bool {
			// Ping stops listening once every datagram is answered, which
			// can be between the two copies of the last reply.
			return rep.Received == rep.Sent && rep.Duplicates >= rep.Sent-1 && rep.Duplicates <= rep.Sent && rep.Ignored == 0
		},
	}, {
		name: "one reply too late",
		handle: func(b []byte, reply func([]byte)) {
			if pingSeq(b) == 3 {
				time.AfterFunc(300*time.Millisecond, func() { reply(b) })
				return
			}
			reply(b)
		},
		check: func(rep PingReport) bool {
			return rep.Received == rep.Sent-1 && rep.Lost == 1 && rep.Late == 1
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Ping(context.Background(), PingConfig{
				Target: fakeEcho(t, tc.handle), Interval: 10 * time.Millisecond,
				Duration: 500 * time.Millisecond, Timeout: 100 * time.Millisecond,
			})
			if !rep.OK || rep.Sent < 5 || !tc.check(rep) {
				t.Errorf("unexpected report %+v", rep)
			}
		})
	}
}

// TestPingUntilCanceled is the pod's case: no duration, stopped by
// SIGTERM, and the report still printed.
func TestPingUntilCanceled(t *testing.T) {
	ts := startServer(t, ServeConfig{UDPEcho: []string{"127.0.0.1:0"}})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	var out bytes.Buffer
	err := RunPing(ctx, PingConfig{
		Target: ts.UDPEchoAddrs()[0].String(), Interval: 10 * time.Millisecond,
		Timeout: time.Second, ReportEvery: 50 * time.Millisecond,
	}, &out)
	if err != nil {
		t.Fatalf("RunPing: %v\n%s", err, out.String())
	}
	lines := jsonLines(t, out.String())
	if len(lines) < 2 {
		t.Fatalf("%d report lines, want intermediate ones and a final one:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		if final := i == len(lines)-1; l["final"] != final || l["ok"] != true {
			t.Errorf("line %d of %d is %v, want ok and final=%v", i+1, len(lines), l, final)
		}
	}
	if rep := lines[len(lines)-1]; rep["lost"] != float64(0) || rep["received"] != rep["sent"] {
		t.Errorf("final report %v, want all received", rep)
	}
}

// TestPingNoEcho sends to a port where nothing listens: the ICMP errors do
// not stop the run, and the report fails.
func TestPingNoEcho(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := pc.LocalAddr().String()
	_ = pc.Close()
	var out bytes.Buffer
	err = RunPing(context.Background(), PingConfig{
		Target: target, Interval: 10 * time.Millisecond, Duration: 200 * time.Millisecond, Timeout: 100 * time.Millisecond,
	}, &out)
	if !errors.Is(err, ErrFailed) {
		t.Errorf("RunPing = %v, want ErrFailed", err)
	}
	lines := jsonLines(t, out.String())
	if len(lines) != 1 {
		t.Fatalf("%d report lines, want 1:\n%s", len(lines), out.String())
	}
	rep := lines[0]
	// At least two sent: the refusal of the first does not stop the run.
	// How many more fit in 200 ms depends on the machine's load.
	if rep["ok"] != false || rep["received"] != float64(0) || rep["lost"] != rep["sent"] || rep["sent"].(float64) < 2 ||
		!strings.Contains(rep["error"].(string), "connection refused") {
		t.Errorf("report %v, want not ok, all of at least 2 lost, and connection refused", rep)
	}
}
