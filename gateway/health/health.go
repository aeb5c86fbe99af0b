// Package health measures the connections between gateways: every active
// gateway answers probes on a UDP port and sends probes to each remote
// gateway's health-check address through the cable, keeping per-connection
// state (connected, connecting, error) and round-trip times.
//
// The wire format is small and versioned: 24 bytes, magic "STHC", a version
// byte, a kind byte (request or reply), a flags byte, a reserved byte, a
// 64-bit sequence number and the sender's 64-bit monotonic send time, echoed
// in the reply. Two flags are set in replies: "leaving" (bit 0) by a gateway
// that is handing its role over (a clean stop): the standbys that hear it
// take over at once; "cut off" (bit 1) by an active gateway that has lost
// every remote cluster: a standby that reaches them takes over
// (docs/gateway-failover.md). Senders that predate a flag send zero there,
// and receivers that predate it ignore it. Two more kinds measure the path
// MTU (pmtu.go): a path MTU probe (kind 3), the same 24 bytes padded with
// zeros to the size probed, and its answer (kind 4), 24 bytes echoing the
// probe's sequence number and send time; gateways that predate them drop
// the probes unanswered, and the search then reports no figure. Anything
// else that arrives is dropped.
package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	magic       = "STHC"
	version     = 1
	kindRequest = 1
	kindReply   = 2
	// kindPMTURequest is a path MTU probe, padded to the size probed.
	kindPMTURequest = 3
	// kindPMTUReply answers a path MTU probe (24 bytes).
	kindPMTUReply = 4
	messageBytes  = 24
	// flagLeaving, in a reply: the sender is handing its role over.
	flagLeaving = 1
	// flagCutOff, in a reply: the sender, an active gateway, has lost every
	// remote cluster.
	flagCutOff = 2
	// flagLosing, in a reply: every connection of the sender, an active
	// gateway, is in error by its own probes now (it says flagCutOff too
	// once that has lasted long enough).
	flagLosing = 4
)

// DefaultPort is the UDP port gateways answer health probes on.
const DefaultPort = 4491

type message struct {
	kind    byte
	leaving bool // flagLeaving
	cutOff  bool // flagCutOff
	losing  bool // flagLosing
	seq     uint64
	sent    uint64 // sender's clock, nanoseconds; opaque to the receiver
}

func (m message) encode() []byte { return m.encodePadded(messageBytes) }

// encodePadded encodes m padded with zeros to n bytes (n >= messageBytes).
func (m message) encodePadded(n int) []byte {
	b := make([]byte, max(n, messageBytes))
	copy(b, magic)
	b[4], b[5] = version, m.kind
	if m.leaving {
		b[6] |= flagLeaving
	}
	if m.cutOff {
		b[6] |= flagCutOff
	}
	if m.losing {
		b[6] |= flagLosing
	}
	binary.BigEndian.PutUint64(b[8:], m.seq)
	binary.BigEndian.PutUint64(b[16:], m.sent)
	return b
}

var errBadMessage = errors.New("not a health message")

func decode(b []byte) (message, error) {
	if len(b) < messageBytes || string(b[:4]) != magic || b[4] != version {
		return message{}, errBadMessage
	}
	switch {
	case b[5] == kindPMTURequest:
		// Padded to the size probed.
	case (b[5] == kindRequest || b[5] == kindReply || b[5] == kindPMTUReply) && len(b) == messageBytes:
	default:
		return message{}, errBadMessage
	}
	return message{kind: b[5], leaving: b[6]&flagLeaving != 0, cutOff: b[6]&flagCutOff != 0, losing: b[6]&flagLosing != 0, seq: binary.BigEndian.Uint64(b[8:]), sent: binary.BigEndian.Uint64(b[16:])}, nil
}

// Status is a connection's state.
type Status string

// The states of a connection, as the Gateway status reports them.
const (
	Connecting Status = "connecting"
	Connected  Status = "connected"
	Error      Status = "error"
)

// Result is what the prober knows of one connection.
type Result struct {
	Status  Status
	Message string
	// Leaving: the target's last answer said it is handing its role over
	// (a clean stop); it is still Connected while it answers.
	Leaving bool
	// CutOff: the target's last answer said it has lost every remote
	// cluster (SetCutOff); it is still Connected while it answers.
	CutOff bool
	// Losing: the target's last answer said every connection of its own is
	// in error (SetLosing); it is still Connected while it answers.
	Losing bool
	// PathMTU is the largest packet, in bytes (IP header included), that
	// the path MTU search found to reach the target through the cable: the
	// inner MTU of the cable to it. 0 while there is no figure (the first
	// search has not ended, the target does not answer path MTU probes, or
	// the search is disabled).
	PathMTU int
	// Last, Min, Average and Max round-trip times since the connection came up.
	Last, Min, Average, Max time.Duration
	samples                 int
}

// Options tune a Prober.
type Options struct {
	// Interval between probes of one target. Short, so that failover can be
	// quick: one second by default.
	Interval time.Duration
	// Failures is how many probes in a row may go unanswered before the
	// connection is an error (default 3).
	Failures int
	// OnChange is called, outside the prober's lock, when a connection
	// changes state, starts or stops saying it is leaving or cut off, or
	// gets another path MTU (not on every new round-trip time).
	OnChange func(target string, r Result)
	// PMTU, when set, turns the path MTU search on and tunes it (its
	// zero value is the defaults). Nil: no search, for probers that only
	// watch liveness (heartbeats between a cluster's own gateways).
	PMTU *PMTUOptions
	// Refused makes a connected target an error as soon as a probe to it
	// draws an ICMP port unreachable (refused.go): its host is up and
	// nothing answers there any more, so the prober that did is gone. For
	// the heartbeats between a cluster's own gateways, where it is the
	// sign of a crashed active gateway; the cable's health checks keep the
	// timeout alone.
	Refused bool
	Log     *slog.Logger
}

// Prober probes a set of targets from one UDP socket.
type Prober struct {
	opts Options
	conn *net.UDPConn
	// Time base for the send times carried in probes.
	epoch time.Time

	// leaving is set in the replies this prober sends (SetLeaving).
	leaving atomic.Bool
	// cutOff is set in the replies this prober sends (SetCutOff).
	cutOff atomic.Bool
	// losing is set in the replies this prober sends (SetLosing).
	losing atomic.Bool

	mu      sync.Mutex
	targets map[string]*target
	// pmtuSent numbers the path MTU probes (their own sequence: they
	// leave on their own schedule, pmtuRound).
	pmtuSent uint64
}

type target struct {
	addr    netip.AddrPort
	result  Result
	sentSeq uint64
	missed  int
	total   time.Duration
	// pmtu is the path MTU search; pmtuSeq and pmtuSize the probe in
	// flight (pmtuSeq 0: none); pmtuAt the time of its last round, since
	// the prober's epoch (0: none yet).
	pmtu     *pmtuSearch
	pmtuSeq  uint64
	pmtuSize int
	pmtuAt   time.Duration
}

// NewProber probes from conn, which the caller bound (to the local
// health-check address, so that replies come back through the cable).
func NewProber(conn *net.UDPConn, o Options) *Prober {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Failures <= 0 {
		o.Failures = 3
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.PMTU != nil && !o.PMTU.Disabled {
		if err := setProbeDF(conn); err != nil {
			// Without "don't fragment" the probes would be fragmented and
			// every size would seem to get through: no search then.
			o.Log.Warn("path MTU search off: cannot set don't-fragment on the health-check socket", "err", err)
			o.PMTU = nil
		}
	}
	if o.Refused {
		if err := setRecvErr(conn); err != nil {
			o.Log.Warn("a refused heartbeat is taken for a missed one: cannot read ICMP errors on the socket", "err", err)
			o.Refused = false
		}
	}
	if o.PMTU != nil && o.PMTU.Disabled {
		o.PMTU = nil
	}
	if o.PMTU != nil {
		pmtu := o.PMTU.withDefaults()
		o.PMTU = &pmtu
	}
	return &Prober{opts: o, conn: conn, epoch: time.Now(), targets: map[string]*target{}}
}

// SetTargets replaces the set of targets; kept targets keep their state.
func (p *Prober) SetTargets(targets map[string]netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, t := range p.targets {
		if addr, ok := targets[name]; !ok || addr != t.addr {
			delete(p.targets, name)
		}
	}
	for name, addr := range targets {
		if _, ok := p.targets[name]; !ok {
			floor := FloorIPv4
			if !addr.Addr().Unmap().Is4() {
				floor = FloorIPv6
			}
			p.targets[name] = &target{addr: addr, result: Result{Status: Connecting, Message: "waiting for the first answer"},
				pmtu: p.newPMTUSearch(floor)}
		}
	}
}

// SetLeaving makes the answers to probes say, from now on, that this
// gateway is handing its role over (or no longer, with false).
func (p *Prober) SetLeaving(leaving bool) { p.leaving.Store(leaving) }

// SetCutOff makes the answers to probes say, from now on, that this gateway
// has lost every remote cluster (or no longer, with false).
func (p *Prober) SetCutOff(cutOff bool) { p.cutOff.Store(cutOff) }

// SetLosing makes the answers to probes say, from now on, that every
// connection of this gateway is in error by its own probes (or no longer,
// with false): a standby whose probes through this gateway fail then
// cannot tell this gateway's forwarding from the remote clusters' fault.
func (p *Prober) SetLosing(losing bool) { p.losing.Store(losing) }

// Results returns a copy of every target's state.
func (p *Prober) Results() map[string]Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Result, len(p.targets))
	for name, t := range p.targets {
		out[name] = t.result
	}
	return out
}

// Run probes until ctx ends. It reads replies on the prober's socket and
// answers requests on it too, so one socket per gateway does both.
func (p *Prober) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		p.conn.Close()
	}()
	go p.read()
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	// The path MTU search runs on its own, shorter, schedule (pmtuRound).
	var pmtuTick <-chan time.Time
	if p.opts.PMTU != nil {
		t := time.NewTicker(min(p.opts.PMTU.SearchInterval, p.opts.Interval))
		defer t.Stop()
		pmtuTick = t.C
	}
	seq := uint64(1)
	p.round(seq)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			seq++
			p.round(seq)
		case <-pmtuTick:
			for name, r := range p.pmtuRound() {
				if p.opts.OnChange != nil {
					p.opts.OnChange(name, r)
				}
			}
		}
	}
}

// round sends one probe to every target and counts the previous round's
// unanswered ones.
func (p *Prober) round(seq uint64) {
	type change struct {
		name string
		r    Result
	}
	var changes []change
	p.mu.Lock()
	now := uint64(time.Since(p.epoch))
	for name, t := range p.targets {
		if t.sentSeq != 0 {
			t.missed++
			if t.missed >= p.opts.Failures && t.result.Status != Error {
				t.result.Status = Error
				t.result.Message = fmt.Sprintf("no answer to %d health probes in a row from %s", t.missed, t.addr)
				changes = append(changes, change{name, t.result})
			}
		}
		t.sentSeq = seq
		if _, err := p.conn.WriteToUDPAddrPort(message{kind: kindRequest, seq: seq, sent: now}.encode(), t.addr); err != nil {
			p.opts.Log.Debug("health probe", "target", name, "err", err)
		}
	}
	p.mu.Unlock()
	for _, c := range changes {
		if p.opts.OnChange != nil {
			p.opts.OnChange(c.name, c.r)
		}
	}
}

func (p *Prober) read() {
	// Path MTU probes are read truncated: only their header matters.
	buf := make([]byte, 64)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A socket error: with Refused, an ICMP error is queued.
			if p.opts.Refused {
				p.refused(drainErrors(p.conn))
			}
			continue
		}
		m, err := decode(buf[:n])
		if err != nil {
			continue // garbage, another protocol, a scanner: ignore
		}
		switch m.kind {
		case kindRequest:
			reply := message{kind: kindReply, leaving: p.leaving.Load(), cutOff: p.cutOff.Load(), losing: p.losing.Load(), seq: m.seq, sent: m.sent}
			_, _ = p.conn.WriteToUDPAddrPort(reply.encode(), from)
		case kindReply:
			p.answered(from, m)
		case kindPMTURequest:
			reply := message{kind: kindPMTUReply, seq: m.seq, sent: m.sent}
			_, _ = p.conn.WriteToUDPAddrPort(reply.encode(), from)
		case kindPMTUReply:
			p.answeredPMTU(from, m)
		}
	}
}

// refused makes the connected targets at addrs errors (refusedBy) and
// reports each change.
func (p *Prober) refused(addrs []netip.AddrPort) {
	if len(addrs) == 0 {
		return
	}
	p.mu.Lock()
	changed := p.refusedBy(addrs)
	p.mu.Unlock()
	for name, r := range changed {
		if p.opts.OnChange != nil {
			p.opts.OnChange(name, r)
		}
	}
}

func (p *Prober) answered(from netip.AddrPort, m message) {
	rtt := time.Since(p.epoch) - time.Duration(m.sent)
	var name string
	var changed *Result
	p.mu.Lock()
	for n, t := range p.targets {
		if t.addr.Addr() != from.Addr().Unmap() || m.seq != t.sentSeq || rtt < 0 {
			continue
		}
		name = n
		t.sentSeq, t.missed = 0, 0
		r := &t.result
		if r.Status != Connected {
			*r = Result{Status: Connected, Leaving: m.leaving, CutOff: m.cutOff, Losing: m.losing, PathMTU: r.PathMTU}
			t.total = 0
			cp := *r
			changed = &cp
		} else if r.Leaving != m.leaving || r.CutOff != m.cutOff || r.Losing != m.losing {
			r.Leaving, r.CutOff, r.Losing = m.leaving, m.cutOff, m.losing
			cp := *r
			changed = &cp
		}
		r.samples++
		t.total += rtt
		r.Last = rtt
		r.Average = t.total / time.Duration(r.samples)
		if r.Min == 0 || rtt < r.Min {
			r.Min = rtt
		}
		if rtt > r.Max {
			r.Max = rtt
		}
		if changed != nil {
			*changed = *r
		}
		break
	}
	p.mu.Unlock()
	if changed != nil && p.opts.OnChange != nil {
		p.opts.OnChange(name, *changed)
	}
}
