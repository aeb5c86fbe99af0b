// Package natdiscovery finds out which of a remote gateway's addresses this
// gateway can reach: every gateway answers small, versioned UDP requests on
// its NAT discovery port, and a gateway asks each remote one on its private
// and its public addresses. A private address that answers means both sides
// share a network (no NAT on the way); otherwise the public one is used.
//
// A standby gateway uses the same requests for another question: do the
// remote gateways answer it now? Its active gateway may have lost them
// while it has not (NewReach, Answering;
// docs/gateway-failover.md).
//
// Wire format, 16 bytes: magic "STND", version 1, kind (1 request, 2 reply),
// two reserved bytes, a 64-bit request ID echoed in the reply.
package natdiscovery

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

const (
	magic        = "STND"
	version      = 1
	kindRequest  = 1
	kindReply    = 2
	messageBytes = 16
	// retryInterval is how often unanswered addresses are asked again.
	retryInterval = time.Second
)

func encode(kind byte, id uint64) []byte {
	b := make([]byte, messageBytes)
	copy(b, magic)
	b[4], b[5] = version, kind
	binary.BigEndian.PutUint64(b[8:], id)
	return b
}

func decode(b []byte) (kind byte, id uint64, ok bool) {
	if len(b) != messageBytes || string(b[:4]) != magic || b[4] != version || (b[5] != kindRequest && b[5] != kindReply) {
		return 0, 0, false
	}
	return b[5], binary.BigEndian.Uint64(b[8:]), true
}

// Target is a remote gateway's candidate addresses.
type Target struct {
	Private, Public netip.AddrPort
}

// Discoverer answers requests and asks targets, on one UDP socket.
type Discoverer struct {
	conn *net.UDPConn
	// recheck: ask every address every round, answered or not (NewReach).
	recheck  bool
	interval time.Duration

	mu      sync.Mutex
	targets map[string]*state
	nextID  uint64
	// other receives the datagrams that are not NAT discovery messages
	// (SetOther); nil drops them.
	other func(b []byte, from netip.AddrPort)
}

// maxDatagram is the largest datagram read: a NAT discovery message is 16
// bytes, a takeover announcement (gateway/announce) at most 180.
const maxDatagram = 512

// SetOther hands every datagram on the socket that is not a NAT discovery
// message to f, with its source, on the reading goroutine: f must not block,
// and must copy b to keep it. Other messages that share the NAT discovery
// port, such as takeover announcements, arrive this way. nil drops them
// (the default).
func (d *Discoverer) SetOther(f func(b []byte, from netip.AddrPort)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.other = f
}

// Send writes b to to from the NAT discovery socket, so that the answer
// comes back to the same port (and through the same NAT mapping) as NAT
// discovery's own.
func (d *Discoverer) Send(b []byte, to netip.AddrPort) error {
	_, err := d.conn.WriteToUDPAddrPort(b, to)
	return err
}

type state struct {
	target  Target
	ids     map[uint64]netip.AddrPort // outstanding request -> address asked
	private bool                      // the private address answered
	public  bool                      // the public address answered
	// first and last answer of the current run of answers, from either
	// address: a gap of three intervals ends a run.
	first, last time.Time
}

// New uses conn, which the caller bound to the NAT discovery port.
func New(conn *net.UDPConn) *Discoverer {
	return &Discoverer{conn: conn, interval: retryInterval, targets: map[string]*state{}}
}

// NewReach uses conn (bound to any port: the answers come back to it) to ask
// every target on all its addresses every interval (one second when not
// positive), so that Answering tells which targets answer now. Its Choice
// is as New's.
func NewReach(conn *net.UDPConn, interval time.Duration) *Discoverer {
	d := New(conn)
	d.recheck = true
	if interval > 0 {
		d.interval = interval
	}
	return d
}

// Answering returns the targets, sorted, that have answered without a gap
// of three intervals (on either address) for at least steady, and last
// answered less than three intervals ago: the ones that answer now, and
// not only since a moment ago.
func (d *Discoverer) Answering(steady time.Duration) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	var out []string
	for name, s := range d.targets {
		if !s.first.IsZero() && now.Sub(s.last) < 3*d.interval && now.Sub(s.first) >= steady {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// SetTargets replaces the targets; unchanged ones keep what was learned.
func (d *Discoverer) SetTargets(targets map[string]Target) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, s := range d.targets {
		if t, ok := targets[name]; !ok || t != s.target {
			delete(d.targets, name)
		}
	}
	for name, t := range targets {
		if _, ok := d.targets[name]; !ok {
			d.targets[name] = &state{target: t, ids: map[uint64]netip.AddrPort{}}
		}
	}
}

// Choice is the address to use for a target and whether it was confirmed.
// A private address that answered wins; then a public one that answered;
// with no answer yet, the public address (or the private one if there is no
// public one) is the best guess: a side behind NAT can still open the path
// from its end.
func (d *Discoverer) Choice(name string) (addr netip.Addr, confirmed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.targets[name]
	if !ok {
		return netip.Addr{}, false
	}
	switch {
	case s.private:
		return s.target.Private.Addr(), true
	case s.public:
		return s.target.Public.Addr(), true
	case s.target.Public.IsValid():
		return s.target.Public.Addr(), false
	}
	return s.target.Private.Addr(), false
}

// Run answers and asks until ctx ends.
func (d *Discoverer) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		d.conn.Close()
	}()
	go d.read()
	tick := time.NewTicker(d.interval)
	defer tick.Stop()
	for {
		d.ask()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// ask sends a request to every address not yet confirmed (to every address,
// for NewReach). A private address keeps being asked while only the public
// one answered, since a private path is better.
func (d *Discoverer) ask() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.targets {
		if s.private && !d.recheck {
			continue
		}
		for _, a := range []netip.AddrPort{s.target.Private, s.target.Public} {
			if !a.IsValid() || (a == s.target.Public && s.public && !d.recheck) {
				continue
			}
			d.nextID++
			s.ids[d.nextID] = a
			if len(s.ids) > 64 { // unanswered requests: keep the map small
				for id := range s.ids {
					if id != d.nextID {
						delete(s.ids, id)
						break
					}
				}
			}
			_, _ = d.conn.WriteToUDPAddrPort(encode(kindRequest, d.nextID), a)
		}
	}
}

func (d *Discoverer) read() {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		kind, id, ok := decode(buf[:n])
		if !ok {
			d.mu.Lock()
			other := d.other
			d.mu.Unlock()
			if other != nil {
				other(buf[:n], from)
			}
			continue
		}
		if kind == kindRequest {
			_, _ = d.conn.WriteToUDPAddrPort(encode(kindReply, id), from)
			continue
		}
		d.mu.Lock()
		for _, s := range d.targets {
			asked, ok := s.ids[id]
			if !ok {
				continue
			}
			delete(s.ids, id)
			now := time.Now()
			if s.first.IsZero() || now.Sub(s.last) >= 3*d.interval {
				s.first = now
			}
			s.last = now
			switch asked {
			case s.target.Private:
				s.private = true
			case s.target.Public:
				s.public = true
			}
		}
		d.mu.Unlock()
	}
}
