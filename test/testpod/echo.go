package testpod

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"time"
)

// Backoff after a failed accept or read (out of file descriptors, say), as
// net/http does: long enough not to spin, short enough to recover quickly.
const (
	minRetryBackoff = 5 * time.Millisecond
	maxRetryBackoff = time.Second
)

// maxDatagram is the buffer for one UDP datagram: the largest UDP payload
// over IPv6 (65535 - 8) is 65527, larger than IPv4's MaxUDPBytes.
const maxDatagram = 65535

// acceptEcho accepts TCP connections on ln until it is closed, echoing each
// in its own goroutine.
func (s *Server) acceptEcho(ln net.Listener) {
	s.accept(ln, "tcp-echo", func(c net.Conn) {
		// Copy until the client closes (or half-closes) its side; a
		// reset is just as much an end, so the error is not interesting.
		_, _ = io.Copy(c, c)
	})
}

// accept accepts TCP connections on ln until it is closed, handling each in
// its own goroutine, tracked for the shutdown.
func (s *Server) accept(ln net.Listener, proto string, handle func(net.Conn)) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, minRetryBackoff), maxRetryBackoff)
			s.log.Warn("accept failed", "proto", proto, "addr", ln.Addr().String(), "err", err, "retryIn", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			defer c.Close()
			handle(c)
		}()
	}
}

// echoUDP answers every datagram on c with the same bytes, from the
// address it was sent to, until c is closed.
func (s *Server) echoUDP(c *net.UDPConn) {
	buf := make([]byte, maxDatagram)
	oob := make([]byte, oobSize)
	var backoff time.Duration
	for {
		n, from, reply, err := readDatagram(c, buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, minRetryBackoff), maxRetryBackoff)
			s.log.Warn("read failed", "proto", "udp-echo", "addr", c.LocalAddr().String(), "err", err, "retryIn", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if err := writeDatagram(c, buf[:n], reply, from); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("echo failed", "proto", "udp-echo", "to", from.String(), "err", err)
		}
	}
}

// writeDatagram sends b to to, with the control message from readDatagram
// that picks the source address. Should the kernel refuse that source (a
// directed broadcast is no source), it lets routing choose instead.
func writeDatagram(c *net.UDPConn, b, reply []byte, to netip.AddrPort) error {
	_, _, err := c.WriteMsgUDPAddrPort(b, reply, to)
	if err != nil && reply != nil && !errors.Is(err, net.ErrClosed) {
		_, _, err = c.WriteMsgUDPAddrPort(b, nil, to)
	}
	return err
}
