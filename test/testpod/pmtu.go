package testpod

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Defaults and limits of the path MTU probe.
const (
	// DefaultPMTUMin is the smallest IP packet the probe tries, in bytes:
	// 576, what every IPv4 host must accept (RFC 791) and below IPv6's
	// minimum link MTU of 1280 (RFC 8200), so a path that does not carry
	// it is broken, not narrow.
	DefaultPMTUMin = 576
	// DefaultPMTUCount is how many datagrams of one size are sent before
	// the size counts as not crossing: one loss is not a narrow path.
	DefaultPMTUCount = 3
	// DefaultPMTUTimeout is how long the probe waits for each echo.
	DefaultPMTUTimeout = 500 * time.Millisecond
	// udpIPv4Overhead and udpIPv6Overhead are the IP and UDP headers of a
	// datagram: an IP packet of N bytes carries N minus these of payload.
	udpIPv4Overhead = 20 + 8
	udpIPv6Overhead = 40 + 8
	// pmtuTag is the probe datagram's header: magic, 8 bytes of run ID,
	// and the size, so that an echo of an earlier size never counts.
	pmtuMagic = "STMT"
	// maxIPPacket is the largest IPv4 packet (a 16-bit total length).
	maxIPPacket = 65535
	pmtuTag     = len(pmtuMagic) + 8 + 4
)

// PMTUConfig is a search for the largest IP packet that crosses a path with
// the Don't Fragment bit set (IPv6 packets are never fragmented on the way)
// and comes back from a UDP echo: what a TCP segment of that size meets.
// Sizes are whole IP packets in bytes, headers included, as MTUs are.
type PMTUConfig struct {
	// Target is HOST:PORT of a UDP echo (serve --udp-echo).
	Target string
	// Max is the size the path should carry, tried first: a path that
	// carries it ends the probe.
	Max int
	// Min is the smallest size tried (DefaultPMTUMin).
	Min int
	// Count is how many datagrams of a size are sent before it counts as
	// not crossing.
	Count int
	// Timeout is how long to wait for each echo.
	Timeout time.Duration
}

// PMTUReport is the one JSON line pmtu prints.
type PMTUReport struct {
	// OK is true when a packet of Max bytes came back.
	OK     bool   `json:"ok"`
	Target string `json:"target"`
	Local  string `json:"local,omitempty"`
	Max    int    `json:"max"`
	// Largest is the largest size that came back, in bytes; 0 when not
	// even Min did.
	Largest int `json:"largest"`
	// Smallest is the smallest size that did not come back, 0 when Max
	// did: the path's MTU is at least Largest and below Smallest.
	Smallest int `json:"smallest,omitempty"`
	// LocalMTU is set when the sender's own kernel refused a size
	// (EMSGSIZE): the MTU it holds for the route, in bytes. The path is
	// then narrower on this host, and says so itself (ICMP "fragmentation
	// needed" or a route's or device's MTU), unlike a link that drops
	// what it cannot carry.
	LocalMTU int `json:"localMTU,omitempty"`
	// Datagrams is how many probe datagrams were sent.
	Datagrams int    `json:"datagrams"`
	Error     string `json:"error,omitempty"`
}

// Validate checks the config; its errors are *UsageError.
func (c PMTUConfig) Validate() error {
	ap, err := netip.ParseAddrPort(c.Target)
	if err != nil {
		return usageErrorf("invalid target %q: want IP:PORT: %w", c.Target, err)
	}
	over := udpIPv4Overhead
	if !ap.Addr().Unmap().Is4() {
		over = udpIPv6Overhead
	}
	if c.Min < over+pmtuTag || c.Max < c.Min || c.Max > maxIPPacket {
		return usageErrorf("want %d <= min (%d) <= max (%d) <= %d", over+pmtuTag, c.Min, c.Max, maxIPPacket)
	}
	if c.Count < 1 || c.Timeout <= 0 {
		return usageErrorf("want a count of at least 1 and a positive timeout")
	}
	return nil
}

// PMTU tries Max, then Min, then bisects between the largest size that came
// back and the smallest that did not, to the byte. A size counts as
// crossing when its echo comes back unchanged within Timeout, at one of
// Count tries. A size the local kernel refuses with EMSGSIZE does not cross.
func PMTU(ctx context.Context, cfg PMTUConfig) PMTUReport {
	rep := PMTUReport{Target: cfg.Target, Max: cfg.Max}
	ap, err := netip.ParseAddrPort(cfg.Target)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	over := udpIPv4Overhead
	if ap.Addr().Is6() {
		over = udpIPv6Overhead
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer c.Close()
	rep.Local = c.LocalAddr().String()
	if err := dontFragment(c, ap.Addr().Is6()); err != nil {
		rep.Error = "set Don't Fragment: " + err.Error()
		return rep
	}
	var run [8]byte
	_, _ = rand.Read(run[:])
	p := &pmtuProber{c: c, cfg: cfg, over: over, run: run[:], rep: &rep, buf: make([]byte, maxDatagram)}
	if p.try(ctx, cfg.Max) {
		rep.OK, rep.Largest = true, cfg.Max
		return rep
	}
	hi := cfg.Max // the smallest size known not to cross
	if !p.try(ctx, cfg.Min) {
		rep.Smallest = cfg.Min
		rep.Error = fmt.Sprintf("not even %d-byte packets came back: %v", cfg.Min, p.last)
		return rep
	}
	lo := cfg.Min // the largest size known to cross
	for hi-lo > 1 && ctx.Err() == nil {
		mid := lo + (hi-lo)/2
		if p.try(ctx, mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	rep.Largest, rep.Smallest = lo, hi
	rep.Error = fmt.Sprintf("packets of %d bytes and more did not come back, %d-byte ones did: %v", hi, lo, p.last)
	return rep
}

type pmtuProber struct {
	c    *net.UDPConn
	cfg  PMTUConfig
	over int
	run  []byte
	rep  *PMTUReport
	buf  []byte
	last error
}

// try sends datagrams making IP packets of size bytes until one comes back.
func (p *pmtuProber) try(ctx context.Context, size int) bool {
	msg := make([]byte, size-p.over)
	copy(msg, pmtuMagic)
	copy(msg[len(pmtuMagic):], p.run)
	binary.BigEndian.PutUint32(msg[len(pmtuMagic)+8:], uint32(size))
	for range p.cfg.Count {
		if ctx.Err() != nil {
			p.last = ctx.Err()
			return false
		}
		p.rep.Datagrams++
		sent := time.Now()
		if _, err := p.c.Write(msg); err != nil {
			if p.tooBig(err) {
				return false
			}
			sleepUntil(ctx, sent.Add(p.cfg.Timeout))
			continue
		}
		_ = p.c.SetReadDeadline(sent.Add(p.cfg.Timeout))
		for {
			n, err := p.c.Read(p.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					p.last = fmt.Errorf("no echo of %d bytes within %s", size, p.cfg.Timeout)
					break
				}
				// An ICMP error queued on the socket ("message too
				// long" after a router's fragmentation needed): this
				// size does not cross.
				if p.tooBig(err) {
					return false
				}
				sleepUntil(ctx, sent.Add(p.cfg.Timeout))
				break
			}
			if bytes.Equal(p.buf[:n], msg) {
				return true
			}
		}
	}
	return false
}

// tooBig records err as the last error and reports whether it is
// EMSGSIZE, the kernel refusing the size on its side; then LocalMTU takes
// the MTU the kernel holds for the route.
func (p *pmtuProber) tooBig(err error) bool {
	p.last = err
	if !errors.Is(err, syscall.EMSGSIZE) {
		return false
	}
	p.rep.LocalMTU = localMTU(p.c)
	return true
}

// RunPMTU is PMTU writing its report as a JSON line; a report that is not
// OK returns an error wrapping ErrFailed.
func RunPMTU(ctx context.Context, cfg PMTUConfig, w io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return finish(w, PMTUReport{Target: cfg.Target, Max: cfg.Max, Error: err.Error()}, false, "", err)
	}
	rep := PMTU(ctx, cfg)
	return finish(w, rep, rep.OK, rep.Error, nil)
}
