package testpod

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// UDPSendConfig is one datagram exchange with a server that speaks its own
// protocol (a gateway's NAT discovery, say): the payload goes out as
// given, and the first reply that starts with Expect counts.
type UDPSendConfig struct {
	// Target is HOST:PORT.
	Target string
	// Payload is the datagram to send.
	Payload []byte
	// Expect is the prefix a reply must have; empty takes any reply.
	Expect []byte
	// Count is how many times to send before giving up, a Timeout apart.
	Count int
	// Timeout is how long to wait for a reply to each datagram.
	Timeout time.Duration
}

// UDPSendReport is the one JSON line udp-send prints.
type UDPSendReport struct {
	OK     bool   `json:"ok"`
	Target string `json:"target"`
	Local  string `json:"local,omitempty"`
	// Reply is the reply that counted, hex.
	Reply string `json:"reply,omitempty"`
	// Attempts is how many datagrams were sent.
	Attempts int    `json:"attempts"`
	RTT      string `json:"rtt,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ParseHex reads a hex payload flag ("53544e44 0101", spaces allowed).
func ParseHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		return nil, usageErrorf("invalid hex %q: %w", s, err)
	}
	return b, nil
}

// Validate checks the config; its errors are *UsageError.
func (c UDPSendConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return usageErrorf("invalid target %q: want HOST:PORT: %w", c.Target, err)
	}
	if len(c.Payload) == 0 || c.Count < 1 || c.Timeout <= 0 {
		return usageErrorf("want a payload, a count of at least 1 and a positive timeout")
	}
	return nil
}

// UDPSend sends the payload until a reply with the expected prefix comes.
func UDPSend(ctx context.Context, cfg UDPSendConfig) UDPSendReport {
	rep := UDPSendReport{Target: cfg.Target}
	c, err := (&net.Dialer{}).DialContext(ctx, "udp", cfg.Target)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer c.Close()
	rep.Local = c.LocalAddr().String()
	buf := make([]byte, maxDatagram)
	var last error
	for rep.Attempts < cfg.Count && ctx.Err() == nil {
		rep.Attempts++
		sent := time.Now()
		if _, err := c.Write(cfg.Payload); err != nil {
			last = err
			sleepUntil(ctx, sent.Add(cfg.Timeout))
			continue
		}
		_ = c.SetReadDeadline(sent.Add(cfg.Timeout))
		for {
			n, err := c.Read(buf)
			if err != nil {
				last = err
				break
			}
			if strings.HasPrefix(string(buf[:n]), string(cfg.Expect)) {
				rep.OK, rep.Reply, rep.RTT = true, hex.EncodeToString(buf[:n]), time.Since(sent).String()
				return rep
			}
		}
	}
	if last == nil {
		last = ctx.Err()
	}
	rep.Error = fmt.Sprintf("no reply after %d datagrams: %v", rep.Attempts, last)
	return rep
}

// RunUDPSend is UDPSend writing its report as a JSON line.
func RunUDPSend(ctx context.Context, cfg UDPSendConfig, w io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rep := UDPSend(ctx, cfg)
	if err := writeJSONLine(w, rep); err != nil {
		return err
	}
	if !rep.OK {
		return errors.New(rep.Error)
	}
	return nil
}
