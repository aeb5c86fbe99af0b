package health

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Path MTU discovery between gateways, in the manner of RFC 8899
// (datagram packetization-layer path MTU discovery): the prober sends
// padded probes of chosen sizes through the cable to the remote gateway's
// health-check address, and a size counts when its probe is answered. ICMP
// is never needed, so a path that drops oversize packets silently (a
// tunnel, a cloud path narrower than the nodes' NICs) is measured as well
// as one that reports them.
//
// Sizes are whole IP packets inside the cable (the IP header, UDP and the
// padded message): the largest size answered is the inner MTU of the cable
// to that remote gateway. Probes leave with "don't fragment" set and the
// kernel's path MTU cache ignored (IP_PMTUDISC_PROBE), so a size above the
// cable device's own MTU fails at once (EMSGSIZE) and counts as too big.

// The defaults of PMTUOptions, with the reasons for their values.
const (
	// DefaultPMTUMax is the largest size searched when the cable device
	// does not refuse a probe first: a jumbo frame. Probes larger than the
	// cable device fail locally at once, so the search settles on the
	// device's MTU without a configured maximum.
	DefaultPMTUMax = 9000
	// DefaultPMTUConfirm is how many probes of one size must be answered
	// before the size counts (RFC 8899's probes are single; two make a
	// single reordered or duplicated answer harmless).
	DefaultPMTUConfirm = 2
	// DefaultPMTULosses is how many probes of one size may go unanswered
	// in a row before the size counts as too big (RFC 8899's MAX_PROBES is 3).
	DefaultPMTULosses = 3
	// DefaultPMTURaise is how long a search result stands before the
	// search runs again from it upwards, to find a path that grew
	// (RFC 8899's PMTU_RAISE_TIMER is 600 s). A growing path costs little
	// while it is not noticed.
	DefaultPMTURaise = 10 * time.Minute
	// DefaultPMTUCheck is the time between probes of the current figure
	// after a search, so that a path that shrank is noticed within
	// DefaultPMTULosses checks (RFC 8899 confirms with the application's
	// own traffic; this channel has none large, so it probes).
	DefaultPMTUCheck = 10 * time.Second
	// DefaultPMTUSearchInterval is the shortest time between two probes
	// of a search, and so the shortest wait before an unanswered probe
	// counts as lost. A search needs some 10 sizes of 2 or 3 probes each:
	// at the heartbeat interval (a second) it took half a minute, during
	// which the cable carried nothing larger than the device's default
	// safely. The wait grows with the round-trip time (pmtuWait), so that
	// a far gateway's answers are not taken for losses.
	DefaultPMTUSearchInterval = 100 * time.Millisecond
)

// pmtuRTTs is how many of a connection's largest round-trip times a probe
// is given to be answered before it counts as lost (see pmtuWait).
const pmtuRTTs = 4

// Floors of the search, in bytes: the smallest MTU each family's links must
// carry (RFC 791's 576 for IPv4, RFC 8200's 1280 for IPv6). A path that does
// not answer a probe of the floor has no figure (an old gateway that does
// not answer path MTU probes, or a broken path): the caller keeps its
// default then.
const (
	FloorIPv4 = 576
	FloorIPv6 = 1280
)

// PMTUOptions tune the path MTU search. Zero fields take the defaults.
type PMTUOptions struct {
	// Disabled turns the search off: no probes are sent and no figure is
	// reported (Result.PathMTU stays 0).
	Disabled bool
	// Max is the largest size searched, in bytes (default DefaultPMTUMax).
	Max int
	// Confirm is how many answers make a size count (DefaultPMTUConfirm).
	Confirm int
	// Losses is how many unanswered probes of a size in a row make it too
	// big (DefaultPMTULosses).
	Losses int
	// Raise is how long a result stands before searching upwards again
	// (DefaultPMTURaise).
	Raise time.Duration
	// Check is the time between probes of the current figure after a
	// search (DefaultPMTUCheck).
	Check time.Duration
	// SearchInterval is the shortest time between two probes of one
	// connection's search (DefaultPMTUSearchInterval); never longer than
	// the prober's Interval.
	SearchInterval time.Duration
}

func (o PMTUOptions) withDefaults() PMTUOptions {
	if o.Max <= 0 {
		o.Max = DefaultPMTUMax
	}
	if o.Confirm <= 0 {
		o.Confirm = DefaultPMTUConfirm
	}
	if o.Losses <= 0 {
		o.Losses = DefaultPMTULosses
	}
	if o.Raise <= 0 {
		o.Raise = DefaultPMTURaise
	}
	if o.Check <= 0 {
		o.Check = DefaultPMTUCheck
	}
	if o.SearchInterval <= 0 {
		o.SearchInterval = DefaultPMTUSearchInterval
	}
	return o
}

// The phases of a search (RFC 8899 section 5.2's states, simplified).
type pmtuPhase int

const (
	// phaseBase: probing the floor.
	phaseBase pmtuPhase = iota
	// phaseSearch: a binary search between the largest size answered and
	// the largest not known to be too big.
	phaseSearch
	// phaseDone: the figure stands; probes of it now and then check it.
	phaseDone
	// phaseError: the floor went unanswered; tried again after Check.
	phaseError
)

// pmtuSearch is one connection's search: a pure state machine, fed the
// time, answers and losses, and asked what to send.
type pmtuSearch struct {
	o     PMTUOptions
	floor int
	phase pmtuPhase
	// lo is the largest size answered (0: none yet); hi the largest size
	// not known to be too big.
	lo, hi int
	// size is the size being probed, with its answers and losses so far.
	size      int
	ok, lost  int
	inFlight  bool
	triedHi   bool
	settledAt time.Time // when the phase became done or error
	lastProbe time.Time
	reported  int // the figure the connection reports (0: none)
}

func newPMTUSearch(o PMTUOptions, floor int) *pmtuSearch {
	o = o.withDefaults()
	s := &pmtuSearch{o: o, floor: min(floor, o.Max)}
	s.restart(0, o.Max)
	return s
}

// restart searches again: from the floor when lo is 0, else upwards from lo
// (which was answered), up to hi.
func (s *pmtuSearch) restart(lo, hi int) {
	s.lo, s.hi, s.triedHi = lo, max(hi, s.floor), false
	if lo == 0 {
		s.phase = phaseBase
		s.probe(s.floor)
		return
	}
	s.phase = phaseSearch
	s.nextCandidate()
}

func (s *pmtuSearch) probe(size int) {
	s.size, s.ok, s.lost, s.inFlight = size, 0, 0, false
}

// nextCandidate picks the next size of the search, or ends it: the largest
// size first (most paths are as wide as the device), then halving.
func (s *pmtuSearch) nextCandidate() {
	if s.lo >= s.hi {
		s.settle(phaseDone)
		return
	}
	if !s.triedHi {
		s.triedHi = true
		s.probe(s.hi)
		return
	}
	s.probe((s.lo + s.hi + 1) / 2)
}

func (s *pmtuSearch) settle(p pmtuPhase) {
	s.phase, s.inFlight = p, false
	s.settledAt = time.Time{}
	if p == phaseDone {
		s.reported = s.lo
		s.probe(s.lo)
	} else {
		s.reported = 0
	}
}

// next is called once per probing round while the connection is up: a probe
// sent in the previous round and not answered counts as lost. It returns
// the size to send now, if any.
func (s *pmtuSearch) next(now time.Time) (int, bool) {
	if s.inFlight {
		s.inFlight = false
		s.lost++
		if s.lost >= s.o.Losses {
			s.tooBig(s.size)
		}
	}
	// The search settled since the last round (by an answer, or by the
	// loss just counted): its timers start now.
	if s.settledAt.IsZero() && (s.phase == phaseDone || s.phase == phaseError) {
		s.settledAt = now
	}
	switch s.phase {
	case phaseError:
		// Tried again soon: a floor lost while the remote's cable came up
		// must not leave the connection without a figure for Raise.
		if now.Sub(s.settledAt) < s.o.Check {
			return 0, false
		}
		s.restart(0, s.o.Max)
	case phaseDone:
		if now.Sub(s.settledAt) >= s.o.Raise {
			// Look for a path that grew, from the figure upwards; the
			// figure stands meanwhile.
			s.restart(s.lo, s.o.Max)
			if s.phase == phaseDone {
				s.settledAt = now
				return 0, false
			}
			break
		}
		if !s.lastProbe.IsZero() && now.Sub(s.lastProbe) < s.o.Check {
			return 0, false
		}
	}
	s.inFlight, s.lastProbe = true, now
	return s.size, true
}

// answered records the answer to a probe of size.
func (s *pmtuSearch) answered(size int) {
	if !s.inFlight || size != s.size {
		return // late: its size was given up on already
	}
	s.inFlight, s.lost = false, 0
	s.ok++
	switch s.phase {
	case phaseDone:
		s.ok = 0
		return
	case phaseBase, phaseSearch:
		if s.ok < s.o.Confirm {
			return
		}
		s.lo = size
		s.phase = phaseSearch
		s.nextCandidate()
	}
}

// tooBig records that size does not get through: its probes went
// unanswered, or the cable device refused it.
func (s *pmtuSearch) tooBig(size int) {
	if size != s.size {
		return
	}
	s.inFlight = false
	switch s.phase {
	case phaseBase:
		s.settle(phaseError)
	case phaseSearch:
		s.hi = size - 1
		if s.hi < s.floor {
			s.settle(phaseError)
			return
		}
		s.nextCandidate()
	case phaseDone:
		// The figure stopped getting through: the path shrank. Report
		// the floor while searching again below the old figure.
		s.reported = min(s.reported, s.floor)
		s.restart(0, size-1)
	}
}

// mtu is the connection's figure in bytes, 0 when there is none.
func (s *pmtuSearch) mtu() int { return s.reported }

// setProbeDF makes conn send with "don't fragment" and without the
// kernel's path MTU cache (IP_PMTUDISC_PROBE, IPV6_PMTUDISC_PROBE): a probe
// larger than the device fails with EMSGSIZE, a probe the path cannot carry
// is lost, and neither is ever fragmented. The health probes themselves are
// small and unaffected. A socket of one family refuses the other family's
// option; it fails only when neither takes.
func setProbeDF(conn *net.UDPConn) error {
	return setEither(conn,
		sockopt{"IP_MTU_DISCOVER", unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE},
		sockopt{"IPV6_MTU_DISCOVER", unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE})
}

// sockopt is one integer socket option: its name for errors, level,
// option and value.
type sockopt struct {
	name              string
	level, opt, value int
}

// setEither sets each of opts on conn's socket, an option of each family:
// a socket of one family refuses the other family's option, so it fails
// only when none takes.
func setEither(conn *net.UDPConn, opts ...sockopt) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	errs := make([]error, len(opts))
	if err := rc.Control(func(fd uintptr) {
		for i, o := range opts {
			if err := unix.SetsockoptInt(int(fd), o.level, o.opt, o.value); err != nil {
				errs[i] = fmt.Errorf("%s: %w", o.name, err)
			}
		}
	}); err != nil {
		return err
	}
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	return errors.Join(errs...)
}

// probeHeader is the IP and UDP header of a probe to addr, in bytes: a
// probe of size n carries n-probeHeader bytes of message.
func probeHeader(addr netip.Addr) int {
	if addr.Unmap().Is4() {
		return 20 + 8
	}
	return 40 + 8
}

// pmtuWait is how long t's search waits between two probes, and so how
// long a probe has to be answered before it counts as lost: pmtuRTTs of
// the largest round-trip time the heartbeats measured, at least the
// search interval and at most the heartbeat interval (a heartbeat answered
// later than that is lost too).
func (p *Prober) pmtuWait(t *target) time.Duration {
	floor := min(p.opts.PMTU.SearchInterval, p.opts.Interval)
	return min(max(floor, pmtuRTTs*t.result.Max), p.opts.Interval)
}

// pmtuRound runs the path MTU search of every target whose wait
// (pmtuWait) has passed since its last round, and reports the targets
// whose figure changed.
func (p *Prober) pmtuRound() map[string]Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := time.Since(p.epoch)
	var changed map[string]Result
	for name, t := range p.targets {
		if t.pmtu == nil || (t.pmtuAt != 0 && elapsed-t.pmtuAt < p.pmtuWait(t)) {
			continue
		}
		t.pmtuAt = elapsed
		p.pmtuSent++
		if p.probePMTU(t, p.pmtuSent, uint64(elapsed)) {
			if changed == nil {
				changed = map[string]Result{}
			}
			changed[name] = t.result
		}
	}
	return changed
}

// probePMTU runs one round of t's path MTU search (under p.mu): it sends
// the probe the search asks for, while the connection is up; the losses of
// health probes are no sign of the path MTU, so the search waits while
// the connection is down. It reports whether t's figure changed.
func (p *Prober) probePMTU(t *target, seq uint64, now uint64) bool {
	if t.pmtu == nil {
		return false
	}
	if t.result.Status != Connected {
		t.pmtu.inFlight, t.pmtuSeq = false, 0
		return false
	}
	clock := p.epoch.Add(time.Duration(now))
	size, send := t.pmtu.next(clock)
	t.pmtuSeq = 0
	for send {
		n := size - probeHeader(t.addr.Addr())
		_, err := p.conn.WriteToUDPAddrPort(message{kind: kindPMTURequest, seq: seq, sent: now}.encodePadded(n), t.addr)
		if err == nil {
			t.pmtuSeq, t.pmtuSize = seq, size
			break
		}
		if !errors.Is(err, syscall.EMSGSIZE) {
			// Not a sign of the path (no route yet, a full buffer): the
			// probe counts as lost at the next round.
			p.opts.Log.Debug("path MTU probe", "target", t.addr, "size", size, "err", err)
			break
		}
		// Larger than the cable device: too big, at once.
		t.pmtu.tooBig(size)
		size, send = t.pmtu.next(clock)
	}
	return t.updatePMTU()
}

// updatePMTU takes the search's figure into t's result, reporting a change.
func (t *target) updatePMTU() bool {
	if m := t.pmtu.mtu(); m != t.result.PathMTU {
		t.result.PathMTU = m
		return true
	}
	return false
}

// answeredPMTU takes the answer to a path MTU probe.
func (p *Prober) answeredPMTU(from netip.AddrPort, m message) {
	var name string
	var changed *Result
	p.mu.Lock()
	for n, t := range p.targets {
		if t.pmtu == nil || t.addr.Addr() != from.Addr().Unmap() || t.pmtuSeq == 0 || m.seq != t.pmtuSeq {
			continue
		}
		t.pmtuSeq = 0
		t.pmtu.answered(t.pmtuSize)
		if t.updatePMTU() {
			name, changed = n, &Result{}
			*changed = t.result
		}
		break
	}
	p.mu.Unlock()
	if changed != nil && p.opts.OnChange != nil {
		p.opts.OnChange(name, *changed)
	}
}

// newPMTUSearch is a target's search, nil when the prober does not search.
func (p *Prober) newPMTUSearch(floor int) *pmtuSearch {
	if p.opts.PMTU == nil {
		return nil
	}
	return newPMTUSearch(*p.opts.PMTU, floor)
}
