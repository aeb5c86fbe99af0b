package testpod

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The throughput sink protocol: the client sends bytes for as long as it
// likes and half-closes its side; the sink reads everything, then answers
// with the count it received as 8 bytes big endian and closes. Counting at
// the receiver measures what crossed the network, not what the sender's
// socket buffer swallowed.

// DefaultSinkPort is the sink port the commands use (iperf3's).
const DefaultSinkPort = 5201

// DefaultThroughputDuration is how long throughput sends by default: long
// enough for TCP's window to open, short enough for a command to wait on.
const DefaultThroughputDuration = 5 * time.Second

// throughputChunk is the size of each write: large writes keep the
// per-call cost out of the measurement.
const throughputChunk = 256 << 10

// sink reads c to its end and answers with the count read.
func sink(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	_, _ = c.Write(b[:])
}

// ThroughputConfig is one throughput run.
type ThroughputConfig struct {
	// Target is HOST:PORT of a sink.
	Target string
	// Duration is how long to send.
	Duration time.Duration
	// Timeout bounds connecting and the sink's answer after sending.
	Timeout time.Duration
}

// ThroughputReport is the one JSON line throughput prints.
type ThroughputReport struct {
	OK     bool   `json:"ok"`
	Target string `json:"target"`
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	// Bytes is what the sink says it received.
	Bytes int64 `json:"bytes"`
	// Seconds is the time from the connection's start to the sink's answer.
	Seconds float64 `json:"seconds"`
	// Gbps is Bytes in gigabits (10^9 bits) per second of Seconds.
	Gbps  float64 `json:"gbps"`
	Error string  `json:"error,omitempty"`
}

// Validate checks the config without touching the network; its errors are
// *UsageError.
func (c ThroughputConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return usageErrorf("invalid target %q: want HOST:PORT: %w", c.Target, err)
	}
	if c.Duration <= 0 || c.Timeout <= 0 {
		return usageErrorf("duration and timeout must be positive")
	}
	return nil
}

// Throughput sends to a sink for cfg.Duration over one TCP connection and
// reports what arrived.
func Throughput(ctx context.Context, cfg ThroughputConfig) ThroughputReport {
	rep := ThroughputReport{Target: cfg.Target}
	if err := throughput(ctx, cfg, &rep); err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.OK = true
	return rep
}

// RunThroughput is Throughput writing its report as a JSON line; the error
// is non-nil when the run failed.
func RunThroughput(ctx context.Context, cfg ThroughputConfig, w io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rep := Throughput(ctx, cfg)
	if err := writeJSONLine(w, rep); err != nil {
		return err
	}
	if !rep.OK {
		return errors.New(rep.Error)
	}
	return nil
}

func throughput(ctx context.Context, cfg ThroughputConfig, rep *ThroughputReport) error {
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	start := time.Now()
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", cfg.Target)
	if err != nil {
		return err
	}
	defer c.Close()
	rep.Local, rep.Remote = c.LocalAddr().String(), c.RemoteAddr().String()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, throughputChunk)
	fillPattern(buf, 0)
	end := start.Add(cfg.Duration)
	_ = c.SetWriteDeadline(end)
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				break // the duration is over
			}
			return fmt.Errorf("send: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("half-close: %w", err)
	}
	_ = c.SetDeadline(time.Now().Add(cfg.Timeout))
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("read the sink's count (is %s a sink?): %w", cfg.Target, err)
	}
	rep.Bytes = int64(binary.BigEndian.Uint64(b[:]))
	rep.Seconds = time.Since(start).Seconds()
	if rep.Seconds > 0 {
		rep.Gbps = float64(rep.Bytes) * 8 / rep.Seconds / 1e9
	}
	return nil
}
