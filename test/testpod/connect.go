package testpod

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Protocols of connect.
const (
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoHTTP = "http"
)

// Defaults of connect.
const (
	// DefaultBytes is the TCP and UDP payload: enough to notice corruption,
	// small enough to fit any MTU so that a plain reachability test is not
	// also a fragmentation test.
	DefaultBytes = 64
	// DefaultTimeout bounds a whole probe (or lookup): long enough for a
	// cross-cluster path with a cold ARP and conntrack, short enough that a
	// test polling for reachability moves on.
	DefaultTimeout = 5 * time.Second
	// DefaultUDPAttempts is how many datagrams a UDP probe sends before it
	// gives up: a lost datagram is not a broken path.
	DefaultUDPAttempts = 3
	// MaxUDPBytes is the largest UDP payload over IPv4 (65535 less the IPv4
	// and UDP headers).
	MaxUDPBytes = 65507
	// maxJSONBody is the largest HTTP body a Report carries decoded.
	maxJSONBody = 64 << 10
	// maxTextBody is the largest non-JSON HTTP body a Report carries.
	maxTextBody = 4 << 10
	// copyChunk is the unit in which TCP payloads are written and checked.
	copyChunk = 32 << 10
)

// ConnectConfig is one probe.
type ConnectConfig struct {
	// Proto is ProtoTCP, ProtoUDP or ProtoHTTP.
	Proto string
	// Target is HOST:PORT for TCP and UDP (an IPv6 host in brackets), a
	// URL for HTTP.
	Target string
	// Bytes is the TCP or UDP payload size; HTTP ignores it.
	Bytes int64
	// Timeout bounds the whole probe.
	Timeout time.Duration
	// Count is how many datagrams UDP tries; others ignore it.
	Count int
}

// Report is the one JSON line connect prints.
type Report struct {
	// OK is true when the payload came back intact (TCP, UDP) or the
	// response had a 2xx status and passed its checks (HTTP).
	OK     bool   `json:"ok"`
	Proto  string `json:"proto"`
	Target string `json:"target"`
	// Local and Remote are the addresses of the connection used, as this
	// end saw them.
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	// Bytes counts what came back: the verified echo, or the HTTP body.
	Bytes int64 `json:"bytes"`
	// RTT is the time from the start of the probe, dialing included, to
	// the verified end of the answer, as a Go duration ("1.234ms").
	RTT string `json:"rtt,omitempty"`
	// Attempts is how many datagrams a UDP probe sent.
	Attempts int `json:"attempts,omitempty"`
	// Status is the HTTP status code.
	Status int `json:"status,omitempty"`
	// Body is the HTTP body when it is JSON of at most 64 KiB.
	Body json.RawMessage `json:"body,omitempty"`
	// Text is the HTTP body when it is not JSON, is UTF-8 and at most
	// maxTextBody bytes (kube-proxy's /proxyMode, say).
	Text string `json:"text,omitempty"`
	// Error says what went wrong when OK is false.
	Error string `json:"error,omitempty"`
}

// Validate checks the config without touching the network; its errors are
// *UsageError.
func (c ConnectConfig) Validate() error {
	switch c.Proto {
	case ProtoTCP, ProtoUDP:
		host, port, err := net.SplitHostPort(c.Target)
		if err != nil {
			return usageErrorf("invalid %s target %q: want HOST:PORT, an IPv6 host in brackets: %w", c.Proto, c.Target, err)
		}
		if host == "" {
			return usageErrorf("invalid %s target %q: missing host", c.Proto, c.Target)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return usageErrorf("invalid %s target %q: port %q is not a number from 1 to 65535", c.Proto, c.Target, port)
		}
		if c.Bytes < 0 {
			return usageErrorf("invalid payload size %d: negative", c.Bytes)
		}
		if c.Proto == ProtoUDP {
			if c.Bytes > MaxUDPBytes {
				return usageErrorf("invalid payload size %d: a UDP datagram holds at most %d bytes", c.Bytes, MaxUDPBytes)
			}
			if c.Count < 1 {
				return usageErrorf("invalid count %d: want at least 1 attempt", c.Count)
			}
		}
	case ProtoHTTP:
		u, err := url.Parse(c.Target)
		if err != nil {
			return usageErrorf("invalid URL %q: %w", c.Target, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return usageErrorf("invalid URL %q: want an http:// or https:// URL", c.Target)
		}
		if u.Host == "" {
			return usageErrorf("invalid URL %q: missing host", c.Target)
		}
	default:
		return usageErrorf("unknown protocol %q: want %s, %s or %s", c.Proto, ProtoTCP, ProtoUDP, ProtoHTTP)
	}
	if c.Timeout <= 0 {
		return usageErrorf("invalid timeout %s: want a positive duration", c.Timeout)
	}
	return nil
}

// Connect runs one probe and reports it. It never fails itself: whatever
// went wrong, an invalid config included, is in Report.Error.
func Connect(ctx context.Context, cfg ConnectConfig) Report {
	rep := Report{Proto: cfg.Proto, Target: cfg.Target}
	if err := cfg.Validate(); err != nil {
		rep.Error = err.Error()
		return rep
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	var err error
	switch cfg.Proto {
	case ProtoTCP:
		err = probeTCP(ctx, cfg, &rep)
	case ProtoUDP:
		err = probeUDP(ctx, cfg, &rep)
	case ProtoHTTP:
		err = probeHTTP(ctx, cfg, &rep)
	}
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.OK = true
	rep.RTT = time.Since(start).Round(time.Microsecond).String()
	return rep
}

// RunConnect runs one probe and writes its report to w as one JSON line.
// It returns a *UsageError for an invalid config (still reported), an error
// wrapping ErrFailed when the report is not ok, and nil otherwise.
func RunConnect(ctx context.Context, cfg ConnectConfig, w io.Writer) error {
	verr := cfg.Validate()
	rep := Connect(ctx, cfg)
	return finish(w, rep, rep.OK, rep.Error, verr)
}

// patternByte is byte i of the TCP and UDP payload. The prime period makes
// a dropped, duplicated or reordered chunk (whose length is usually a power
// of two) show up as a mismatch.
func patternByte(i int64) byte { return byte(i % 251) }

func fillPattern(b []byte, off int64) {
	for j := range b {
		b[j] = patternByte(off + int64(j))
	}
}

// deadlineOnDone makes conn's blocked reads and writes return when ctx
// ends. The returned func stops that.
func deadlineOnDone(ctx context.Context, conn net.Conn) func() bool {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
}

// ctxErr says "timed out" or "canceled" in front of err when err is a
// network deadline, which here only ever comes from the end of ctx:
// "i/o timeout" alone reads like a network fault.
func ctxErr(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("canceled: %w", err)
	}
	return fmt.Errorf("timed out: %w", err)
}

// probeTCP sends the pattern and checks the echo, writing and reading at
// once so that a payload larger than the socket buffers cannot deadlock.
func probeTCP(ctx context.Context, cfg ConnectConfig, rep *Report) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Target)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep.Local, rep.Remote = conn.LocalAddr().String(), conn.RemoteAddr().String()
	defer deadlineOnDone(ctx, conn)()

	wdone := make(chan error, 1)
	go func() {
		buf := make([]byte, copyChunk)
		var off int64
		for off < cfg.Bytes {
			b := buf[:min(cfg.Bytes-off, int64(len(buf)))]
			fillPattern(b, off)
			if _, err := conn.Write(b); err != nil {
				wdone <- fmt.Errorf("send after %d of %d bytes: %w", off, cfg.Bytes, err)
				return
			}
			off += int64(len(b))
		}
		wdone <- nil
	}()

	got, err := readPattern(conn, cfg.Bytes)
	rep.Bytes = got
	if err != nil {
		// The read error says more than the writer's, which mostly
		// follows from the same cause or from this Close.
		_ = conn.Close()
		<-wdone
		return ctxErr(ctx, err)
	}
	return ctxErr(ctx, <-wdone)
}

// readPattern reads n bytes from r and checks them against the pattern. It
// returns how many bytes matched.
func readPattern(r io.Reader, n int64) (int64, error) {
	buf := make([]byte, copyChunk)
	var off int64
	for off < n {
		m, err := r.Read(buf[:min(n-off, int64(len(buf)))])
		for j, b := range buf[:m] {
			if want := patternByte(off + int64(j)); b != want {
				return off + int64(j), fmt.Errorf("echo differs at byte %d: got %#04x, want %#04x", off+int64(j), b, want)
			}
		}
		off += int64(m)
		if err != nil {
			if errors.Is(err, io.EOF) && off < n {
				return off, fmt.Errorf("connection closed after %d of %d bytes", off, n)
			}
			if off < n {
				return off, fmt.Errorf("read echo after %d of %d bytes: %w", off, n, err)
			}
		}
	}
	return off, nil
}

// probeUDP sends the pattern in one datagram until an intact echo comes
// back, splitting what is left of the timeout evenly over the attempts
// left.
func probeUDP(ctx context.Context, cfg ConnectConfig, rep *Report) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", cfg.Target)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep.Local, rep.Remote = conn.LocalAddr().String(), conn.RemoteAddr().String()
	defer context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })()

	payload := make([]byte, cfg.Bytes)
	fillPattern(payload, 0)
	buf := make([]byte, maxDatagram)
	deadline, _ := ctx.Deadline() // Connect always sets one
	var last error
	for i := range cfg.Count {
		if ctx.Err() != nil {
			break
		}
		rep.Attempts = i + 1
		wait := time.Until(deadline) / time.Duration(cfg.Count-i)
		end := time.Now().Add(wait)
		if _, err := conn.Write(payload); err != nil {
			// An ICMP error for an earlier datagram can surface here.
			last = fmt.Errorf("send: %w", err)
			sleepUntil(ctx, end)
			continue
		}
		_ = conn.SetReadDeadline(end)
		if ctx.Err() != nil {
			break // ended while the deadline was being set, which undid the cancellation's
		}
		var mismatch error
		for {
			m, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					switch {
					case mismatch != nil:
						last = mismatch
					case ctx.Err() == nil || last == nil:
						last = fmt.Errorf("no echo within %s", wait.Round(time.Millisecond))
					}
				} else {
					// Typically "connection refused" from an ICMP port
					// unreachable. Wait the attempt out: the port may
					// open, as when a Service gets its first endpoint.
					last = err
					sleepUntil(ctx, end)
				}
				break
			}
			if bytes.Equal(buf[:m], payload) {
				rep.Bytes = int64(m)
				return nil
			}
			// Not our echo, or a damaged one: keep listening this attempt.
			mismatch = datagramMismatch(buf[:m], payload)
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	return fmt.Errorf("no intact echo after %d attempts: %w", rep.Attempts, last)
}

func datagramMismatch(got, want []byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("echo has %d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("echo differs at byte %d: got %#04x, want %#04x", i, got[i], want[i])
		}
	}
	return nil
}

// sleepUntil waits for t or the end of ctx.
func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// probeHTTP fetches the URL over a fresh connection and checks the answer:
// a 2xx status, and for /bytes a body whose length and SHA-256 match what
// the server announced.
func probeHTTP(ctx context.Context, cfg ConnectConfig, rep *Report) error {
	tr := &http.Transport{
		// A probe measures the direct path; a proxy from the environment
		// would hide it.
		Proxy:             nil,
		DialContext:       (&net.Dialer{}).DialContext,
		DisableKeepAlives: true,
		// Count and hash the bytes on the wire, not a decompression of them.
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		defer mu.Unlock()
		rep.Local, rep.Remote = info.Conn.LocalAddr().String(), info.Conn.RemoteAddr().String()
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, cfg.Target, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	rep.Status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if err := readBody(resp, rep); err != nil {
			return err
		}
		return fmt.Errorf("status %s", resp.Status)
	}
	if resp.Request.URL.Path == "/bytes" {
		return verifyBytes(resp, rep)
	}
	return readBody(resp, rep)
}

// readBody reads the whole body, counting it, and keeps it in rep when it
// is small JSON.
func readBody(resp *http.Response, rep *Report) error {
	head, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody+1))
	rep.Bytes = int64(len(head))
	if err == nil {
		var rest int64
		rest, err = io.Copy(io.Discard, resp.Body)
		rep.Bytes += rest
	}
	if err != nil {
		return fmt.Errorf("read body after %d bytes: %w", rep.Bytes, err)
	}
	if len(head) <= maxJSONBody {
		// Compact keeps the report one line, and fails on what is not JSON.
		var body bytes.Buffer
		if json.Compact(&body, head) == nil && body.Len() > 0 {
			rep.Body = body.Bytes()
		} else if len(head) <= maxTextBody && utf8.Valid(head) {
			rep.Text = string(head)
		}
	}
	return nil
}

// verifyBytes checks a /bytes answer against its X-Sha256 and
// Content-Length headers and the n it asked for.
func verifyBytes(resp *http.Response, rep *Report) error {
	want := resp.Header.Get("X-Sha256")
	if want == "" {
		return errors.New("missing X-Sha256 header")
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	rep.Bytes = n
	if err != nil {
		return fmt.Errorf("read body after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("body has %d bytes, Content-Length says %d", n, resp.ContentLength)
	}
	if asked := resp.Request.URL.Query().Get("n"); asked != "" {
		if want, err := strconv.ParseInt(asked, 10, 64); err == nil && n != want {
			return fmt.Errorf("body has %d bytes, asked for %d", n, want)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("body sha256 %s does not match X-Sha256 %s", got, want)
	}
	return nil
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
