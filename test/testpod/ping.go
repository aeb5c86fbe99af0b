package testpod

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Defaults and limits of ping.
const (
	// DefaultPingInterval is the time between datagrams: 100 a second
	// resolves an outage to about 10 ms, at some 3 KB/s of traffic that
	// no path notices.
	DefaultPingInterval = 10 * time.Millisecond
	// DefaultPingTimeout is how late a reply may be and still count: a
	// data plane answers in milliseconds, and a reply a second late says
	// the path was broken for that second (a queue draining after an
	// outage), not that it worked.
	DefaultPingTimeout = time.Second
	// pingGapFactor makes a gap worth listing: at least ten intervals
	// without a reply, which one lost datagram or a scheduler hiccup does
	// not make, and a failover does.
	pingGapFactor = 10
	// maxPingGaps bounds the listed gaps, so that a run with a flapping
	// path still prints a line of a sane size; the longest are kept.
	maxPingGaps = 100
)

// Wire format of a ping datagram, echoed back unchanged: magic, the run's
// ID, the sequence number and the send time as nanoseconds since the start
// of the run, big endian.
const (
	pingMagic = "STPG"
	pingSize  = len(pingMagic) + 8 + 8 + 8
)

// PingConfig is one continuous UDP probe.
type PingConfig struct {
	// Target is HOST:PORT of a UDP echo (an IPv6 host in brackets). A name
	// is resolved once: the run measures one path.
	Target string
	// Interval is the time between datagrams.
	Interval time.Duration
	// Duration is how long to send; 0 sends until the context ends.
	Duration time.Duration
	// Timeout is how late a reply may come and still count as received;
	// later ones count as lost (and as Late). It is also how long Ping
	// waits for replies after it stops sending.
	Timeout time.Duration
	// ReportEvery is how often RunPing writes an intermediate report; 0
	// writes only the final one. Ping ignores it.
	ReportEvery time.Duration
}

// PingGap is a stretch without replies longer than ten intervals.
type PingGap struct {
	// StartMs is when the last reply before the gap arrived, in
	// milliseconds since the start of the run.
	StartMs float64 `json:"startMs"`
	// LengthMs is the time from that reply to the next one.
	LengthMs float64 `json:"lengthMs"`
}

// PingReport is the JSON line ping prints: once at the end, and every
// ReportEvery before that with Final false.
//
// Gaps are measured between consecutive replies, in the order and at the
// time they arrived; only replies that count as received (on time, not
// duplicates) count. The stretch from the start to the first reply is
// FirstReplyMs instead, and the one from the last reply to the end of
// sending is DurationMs less LastReplyMs: folding them into MaxGapMs would
// make a slow first reply (ARP, a cold conntrack entry) or the moment of
// SIGTERM look like an outage.
type PingReport struct {
	// OK is true when at least one reply came back.
	OK bool `json:"ok"`
	// Final is true on the report of the finished run, false on the
	// intermediate ones.
	Final  bool   `json:"final"`
	Target string `json:"target"`
	// Local and Remote are the addresses of the one socket used for the
	// whole run, as this end saw them.
	Local      string  `json:"local,omitempty"`
	Remote     string  `json:"remote,omitempty"`
	IntervalMs float64 `json:"intervalMs"`
	// Sent counts datagrams, those whose send failed included.
	Sent int64 `json:"sent"`
	// Received counts datagrams whose first reply came within the
	// timeout.
	Received int64 `json:"received"`
	// Lost is Sent less Received less Pending: no reply, a reply too
	// late, or a failed send.
	Lost int64 `json:"lost"`
	// Pending counts datagrams still within the timeout without a reply;
	// only intermediate reports have any.
	Pending int64 `json:"pending,omitempty"`
	// Late counts datagrams whose first reply came after the timeout.
	Late int64 `json:"late"`
	// Duplicates counts further replies to a datagram already answered.
	Duplicates int64 `json:"duplicates"`
	// Ignored counts datagrams that are no reply of this run: another
	// run's, or garbage.
	Ignored int64 `json:"ignored"`
	// SendErrors counts sends the kernel refused (no route, an ICMP error
	// reported back): during a failover the network is briefly broken.
	SendErrors int64 `json:"sendErrors"`
	// RTTP50Ms, RTTP99Ms and RTTMaxMs are round-trip times of the received
	// replies in milliseconds (nearest rank).
	RTTP50Ms float64 `json:"rttP50Ms"`
	RTTP99Ms float64 `json:"rttP99Ms"`
	RTTMaxMs float64 `json:"rttMaxMs"`
	// FirstReplyMs and LastReplyMs are when the first and the last
	// received reply arrived, in milliseconds since the start; null
	// without one.
	FirstReplyMs *float64 `json:"firstReplyMs"`
	LastReplyMs  *float64 `json:"lastReplyMs"`
	// MaxGapMs is the longest time between two consecutive received
	// replies; 0 with fewer than two.
	MaxGapMs float64 `json:"maxGapMs"`
	// Gaps are the stretches between consecutive received replies longer
	// than ten intervals, by start: the longest 100 of GapCount.
	Gaps     []PingGap `json:"gaps"`
	GapCount int       `json:"gapCount"`
	// DurationMs is the time from the start to when sending stopped (the
	// report's time, for an intermediate one). Replies to the last
	// datagrams are still waited for after that, up to the timeout.
	DurationMs float64 `json:"durationMs"`
	StartedAt  string  `json:"startedAt,omitempty"`
	EndedAt    string  `json:"endedAt,omitempty"`
	// LastError is the latest send or receive error, which does not stop
	// the run.
	LastError string `json:"lastError,omitempty"`
	// Error says what went wrong when OK is false.
	Error string `json:"error,omitempty"`
}

// Validate checks the config without touching the network; its errors are
// *UsageError.
func (c PingConfig) Validate() error {
	if c.Target == "" {
		return usageErrorf("missing target: want HOST:PORT of a UDP echo")
	}
	host, port, err := net.SplitHostPort(c.Target)
	if err != nil {
		return usageErrorf("invalid udp target %q: want HOST:PORT, an IPv6 host in brackets: %w", c.Target, err)
	}
	if host == "" {
		return usageErrorf("invalid udp target %q: missing host", c.Target)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return usageErrorf("invalid udp target %q: port %q is not a number from 1 to 65535", c.Target, port)
	}
	if c.Interval <= 0 {
		return usageErrorf("invalid interval %s: want a positive duration", c.Interval)
	}
	if c.Duration < 0 {
		return usageErrorf("invalid duration %s: want 0 (until stopped) or a positive duration", c.Duration)
	}
	if c.Timeout <= 0 {
		return usageErrorf("invalid timeout %s: want a positive duration", c.Timeout)
	}
	if c.ReportEvery < 0 {
		return usageErrorf("invalid report interval %s: want 0 (final report only) or a positive duration", c.ReportEvery)
	}
	return nil
}

// Ping sends a datagram every Interval over one connected UDP socket, so
// that the source port stays the same for the whole run, until Duration
// has passed or ctx ends. It then waits up to Timeout for the replies
// still outstanding and reports. Send and receive errors do not stop it.
// It never fails itself: whatever went wrong, an invalid config included,
// is in PingReport.Error.
//
// It keeps some 24 bytes per datagram sent (about 9 MB an hour at the
// default interval), for exact duplicate counts and percentiles.
func Ping(ctx context.Context, cfg PingConfig) PingReport {
	return ping(ctx, cfg, nil)
}

// RunPing runs Ping and writes its report to w as one JSON line, preceded
// by an intermediate report every cfg.ReportEvery. It returns a
// *UsageError for an invalid config (still reported), an error wrapping
// ErrFailed when no reply came back, and nil otherwise.
func RunPing(ctx context.Context, cfg PingConfig, w io.Writer) error {
	verr := cfg.Validate()
	var werr error
	rep := ping(ctx, cfg, func(r PingReport) {
		if werr == nil {
			werr = writeJSONLine(w, r)
		}
	})
	if werr != nil {
		return fmt.Errorf("write report: %w", werr)
	}
	return finish(w, rep, rep.OK, rep.Error, verr)
}

// ping is Ping, calling progress (when not nil) every cfg.ReportEvery from
// the calling goroutine.
func ping(ctx context.Context, cfg PingConfig, progress func(PingReport)) PingReport {
	rep := PingReport{Target: cfg.Target, Gaps: []PingGap{}}
	if err := cfg.Validate(); err != nil {
		rep.Error = err.Error()
		return rep
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", cfg.Target)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer conn.Close()

	st := newPingStats(cfg.Interval, cfg.Timeout)
	_, _ = rand.Read(st.runID[:]) // never fails, as documented
	var mu sync.Mutex             // guards st
	replied := make(chan struct{}, 1)
	start := time.Now()

	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		buf := make([]byte, pingSize+1) // one more shows a longer datagram
		var backoff time.Duration
		for {
			n, err := conn.Read(buf)
			at := time.Since(start)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			mu.Lock()
			if err != nil {
				st.lastErr = fmt.Errorf("receive: %w", err)
			} else {
				st.reply(buf[:n], at)
			}
			mu.Unlock()
			select {
			case replied <- struct{}{}: // the drain below rechecks
			default:
			}
			if err != nil && !networkDown(err) {
				// Not the ICMP error of a broken path, which comes once
				// per datagram: do not spin on it.
				backoff = min(max(2*backoff, minRetryBackoff), maxRetryBackoff)
				time.Sleep(backoff)
				continue
			}
			backoff = 0
		}
	}()

	buf := make([]byte, pingSize)
	send := func() {
		at := time.Since(start)
		mu.Lock()
		seq := st.sending(at)
		mu.Unlock()
		st.encode(buf, seq, at)
		if _, err := conn.Write(buf); err != nil {
			mu.Lock()
			st.sendFailed(seq, err)
			mu.Unlock()
		}
	}

	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var end, report <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	if cfg.ReportEvery > 0 && progress != nil {
		t := time.NewTicker(cfg.ReportEvery)
		defer t.Stop()
		report = t.C
	}
	send()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-tick.C:
			send()
		case <-report:
			now := time.Since(start)
			mu.Lock()
			r := st.report(now, now)
			mu.Unlock()
			fillPingReport(&r, cfg, conn, start, now)
			progress(r)
		}
	}
	stopped := time.Since(start)

	// Wait out the replies in flight, so that the last datagrams are not
	// counted lost for having been sent just before the end. Polling
	// notices when the unanswered ones run out of time.
	poll := time.NewTicker(cfg.Interval)
	defer poll.Stop()
	pending := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return st.pending(time.Since(start))
	}
	for pending() > 0 {
		select {
		case <-replied:
		case <-poll.C:
		}
	}
	_ = conn.Close()
	<-recvDone

	rep = st.report(stopped, time.Since(start))
	fillPingReport(&rep, cfg, conn, start, stopped)
	rep.Final = true
	return rep
}

// fillPingReport sets the fields of r that come from the run rather than
// the counts.
func fillPingReport(r *PingReport, cfg PingConfig, conn net.Conn, start time.Time, end time.Duration) {
	r.Target = cfg.Target
	r.Local, r.Remote = conn.LocalAddr().String(), conn.RemoteAddr().String()
	r.StartedAt = start.UTC().Format(time.RFC3339Nano)
	r.EndedAt = start.Add(end).UTC().Format(time.RFC3339Nano)
}

// networkDown reports whether err is what a broken path does to a UDP
// socket: the kernel has no route, or an ICMP error came back for an
// earlier datagram. A failover causes these for a moment.
func networkDown(err error) bool {
	for _, e := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ENETUNREACH, syscall.EHOSTUNREACH,
		syscall.ENETDOWN, syscall.EHOSTDOWN,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Per-datagram states.
const (
	pingOutstanding uint8 = iota
	pingSendFailed
	pingReceived
	pingLate
)

// pingSent is what ping remembers of a datagram.
type pingSent struct {
	at    time.Duration // since the start
	state uint8
}

// pingGap is a PingGap in durations.
type pingGap struct{ start, length time.Duration }

// pingStats counts a run. It only does arithmetic on the times it is
// given, so tests can replay any sequence of events.
type pingStats struct {
	interval, timeout time.Duration
	runID             [8]byte

	sent       []pingSent // by sequence number
	received   int64
	late       int64
	duplicates int64
	ignored    int64
	sendErrors int64
	lastErr    error

	rtts     []time.Duration // of received replies
	first    time.Duration   // arrival of the first received reply
	last     time.Duration   // arrival of the latest received reply
	maxGap   time.Duration
	gaps     []pingGap // the longest maxPingGaps, by start
	gapCount int
}

func newPingStats(interval, timeout time.Duration) *pingStats {
	return &pingStats{interval: interval, timeout: timeout}
}

// sending records a datagram about to be sent at at and returns its
// sequence number. It comes before the send so that a quick reply finds
// it.
func (s *pingStats) sending(at time.Duration) uint64 {
	s.sent = append(s.sent, pingSent{at: at})
	return uint64(len(s.sent) - 1)
}

// sendFailed records that the datagram seq was not sent.
func (s *pingStats) sendFailed(seq uint64, err error) {
	s.sendErrors++
	s.lastErr = fmt.Errorf("send: %w", err)
	if p := &s.sent[seq]; p.state == pingOutstanding {
		p.state = pingSendFailed
	}
}

// encode writes datagram seq sent at at into b, of pingSize bytes.
func (s *pingStats) encode(b []byte, seq uint64, at time.Duration) {
	copy(b, pingMagic)
	copy(b[4:12], s.runID[:])
	binary.BigEndian.PutUint64(b[12:20], seq)
	binary.BigEndian.PutUint64(b[20:28], uint64(at))
}

// reply records datagram b, which arrived at at.
func (s *pingStats) reply(b []byte, at time.Duration) {
	if len(b) != pingSize || string(b[:4]) != pingMagic || [8]byte(b[4:12]) != s.runID {
		s.ignored++
		return
	}
	seq := binary.BigEndian.Uint64(b[12:20])
	sentAt := time.Duration(binary.BigEndian.Uint64(b[20:28]))
	if seq >= uint64(len(s.sent)) || s.sent[seq].at != sentAt {
		s.ignored++ // our ID, but not a datagram we sent
		return
	}
	p := &s.sent[seq]
	if p.state == pingReceived || p.state == pingLate {
		s.duplicates++
		return
	}
	// A reply to a send that reported an error counts too: the error was
	// an earlier datagram's, and this one got through after all.
	rtt := at - sentAt
	if rtt > s.timeout {
		p.state = pingLate
		s.late++
		return
	}
	p.state = pingReceived
	if s.received == 0 {
		s.first = at
	} else {
		s.gap(s.last, at-s.last)
	}
	s.received++
	s.last = at
	s.rtts = append(s.rtts, rtt)
}

// gap records the time between two consecutive received replies.
func (s *pingStats) gap(start, length time.Duration) {
	s.maxGap = max(s.maxGap, length)
	if length <= pingGapFactor*s.interval {
		return
	}
	s.gapCount++
	if len(s.gaps) == maxPingGaps {
		shortest := 0
		for i, g := range s.gaps {
			if g.length < s.gaps[shortest].length {
				shortest = i
			}
		}
		if s.gaps[shortest].length >= length {
			return
		}
		s.gaps = slices.Delete(s.gaps, shortest, shortest+1)
	}
	// Replies arrive in order, so appending keeps the gaps by start.
	s.gaps = append(s.gaps, pingGap{start: start, length: length})
}

// report returns the counts of a run that stopped sending at end, as of
// now.
func (s *pingStats) report(end, now time.Duration) PingReport {
	r := PingReport{
		OK:         s.received > 0,
		IntervalMs: ms(s.interval),
		Sent:       int64(len(s.sent)),
		Received:   s.received,
		Late:       s.late,
		Duplicates: s.duplicates,
		Ignored:    s.ignored,
		SendErrors: s.sendErrors,
		MaxGapMs:   ms(s.maxGap),
		Gaps:       make([]PingGap, len(s.gaps)),
		GapCount:   s.gapCount,
		DurationMs: ms(end),
	}
	r.Pending = s.pending(now)
	r.Lost = r.Sent - r.Received - r.Pending
	if len(s.rtts) > 0 {
		sorted := slices.Sorted(slices.Values(s.rtts))
		r.RTTP50Ms = ms(percentile(sorted, 50))
		r.RTTP99Ms = ms(percentile(sorted, 99))
		r.RTTMaxMs = ms(sorted[len(sorted)-1])
		first, last := ms(s.first), ms(s.last)
		r.FirstReplyMs, r.LastReplyMs = &first, &last
	}
	for i, g := range s.gaps {
		r.Gaps[i] = PingGap{StartMs: ms(g.start), LengthMs: ms(g.length)}
	}
	if s.lastErr != nil {
		r.LastError = s.lastErr.Error()
	}
	if !r.OK {
		r.Error = fmt.Sprintf("no reply to %d datagrams", r.Sent)
		if s.lastErr != nil {
			r.Error += ": " + r.LastError
		}
	}
	return r
}

// pending counts the datagrams without a reply that may still get one in
// time at now.
func (s *pingStats) pending(now time.Duration) int64 {
	var n int64
	// Only the newest datagrams can still be in flight.
	for i := len(s.sent) - 1; i >= 0 && now-s.sent[i].at <= s.timeout; i-- {
		if s.sent[i].state == pingOutstanding {
			n++
		}
	}
	return n
}

// percentile returns the nearest-rank pth percentile of sorted, which is
// not empty.
func percentile(sorted []time.Duration, p int) time.Duration {
	return sorted[max((p*len(sorted)+99)/100-1, 0)]
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}
