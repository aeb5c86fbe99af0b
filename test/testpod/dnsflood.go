package testpod

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Defaults and limits of dns-flood.
const (
	// DefaultFloodCount is how many hostile packets a flood sends: enough
	// to go round the categories some 400 times and to fill a server's
	// socket buffer, few enough to take well under a second on loopback.
	DefaultFloodCount = 10000
	// DefaultFloodTimeout bounds each TCP connection of the flood and each
	// attempt of the final question: a server that still works answers a
	// question in milliseconds even just after a flood.
	DefaultFloodTimeout = 2 * time.Second
	// DefaultFloodSeed makes two runs without --seed send the same bytes,
	// so that a packet that breaks a server breaks it again.
	DefaultFloodSeed = 1

	// FloodQuestion is the valid question asked after the flood, over UDP
	// and over TCP, as a TXT query: the version record Lighthouse serves
	// under clusterset.local (KEP-1645 asks for dns-version).
	FloodQuestion = "dns-version.clusterset.local."

	// floodTCPEvery sends one packet in this many over TCP instead of
	// UDP, each on a fresh connection: a hundredth is enough to exercise
	// the server's TCP side without making the flood a connection flood.
	floodTCPEvery = 100
	// floodTCPOffset puts the first TCP packet in the middle of the first
	// hundred, so that a flood of just 51 packets has one.
	floodTCPOffset = floodTCPEvery / 2
	// floodShortEvery makes one TCP packet in this many announce, in its
	// length prefix, more bytes than follow before the connection closes:
	// a few of those test that the server gives up on a half-read message.
	floodShortEvery = 5
	// floodTCPParallel bounds the TCP connections in flight, so that a
	// server that blackholes TCP costs Timeout per this many packets, not
	// per packet.
	floodTCPParallel = 8
	// floodReplyWait is how long replies are still counted after the last
	// packet: replies are not required, and a late one says nothing that
	// the final question does not.
	floodReplyWait = 250 * time.Millisecond
	// floodFinalUDPAttempts is how often the final question is asked over
	// UDP: one datagram may be lost in the queue a flood leaves behind.
	floodFinalUDPAttempts = 3
	// maxFloodErrors bounds the distinct error messages a report lists.
	maxFloodErrors = 10
	// floodHugeSize is the datagram size of the "huge" category: a valid
	// query padded with zeros to just below the largest UDP payload.
	floodHugeSize = 65000
)

// DNSFloodConfig is one flood of malformed and hostile DNS packets.
type DNSFloodConfig struct {
	// Server is "IP" or "IP:PORT" (port 53 by default) of the DNS server
	// to flood. It is the only address contacted.
	Server string
	// Count is how many packets to send, UDP and TCP together.
	Count int
	// Rate is packets per second; 0 sends as fast as possible.
	Rate int
	// Timeout bounds each TCP connection of the flood and each attempt of
	// the final question.
	Timeout time.Duration
	// Seed makes the packets deterministic: the same seed and count send
	// the same bytes in the same order.
	Seed uint64
}

// FloodAnswer is the outcome of the final question over one transport.
type FloodAnswer struct {
	// Answered is true when a reply came back, whatever its rcode.
	Answered bool `json:"answered"`
	// Rcode is the reply's rcode ("NOERROR", "REFUSED", ...).
	Rcode string `json:"rcode,omitempty"`
	// RTTMs is the round-trip time of the answered attempt.
	RTTMs float64 `json:"rttMs,omitempty"`
	// Error says why no reply came back.
	Error string `json:"error,omitempty"`
}

// FloodFinal is the outcome of the final question over both transports.
type FloodFinal struct {
	UDP FloodAnswer `json:"udp"`
	TCP FloodAnswer `json:"tcp"`
}

// DNSFloodReport is the one JSON line dns-flood prints.
type DNSFloodReport struct {
	// OK is true when every packet was sent and the final question got a
	// reply over both UDP and TCP.
	OK     bool   `json:"ok"`
	Server string `json:"server"`
	Count  int    `json:"count"`
	Rate   int    `json:"rate"`
	Seed   uint64 `json:"seed"`
	// Sent counts the packets sent, by category (see FloodCategories).
	// With Failed it adds up to Count, unless the flood was stopped.
	Sent map[string]int `json:"sent"`
	// Failed counts packets whose send (or TCP connection) failed.
	Failed int `json:"failed"`
	// UDP and TCP count the packets sent over each; UDP+TCP is the sum
	// of Sent.
	UDP int `json:"udp"`
	TCP int `json:"tcp"`
	// TCPShortPrefix counts the TCP packets, among TCP, whose length
	// prefix announced more bytes than followed before the close.
	TCPShortPrefix int `json:"tcpShortPrefix"`
	// UDPReplies counts datagrams that came back on the flood's socket
	// until shortly after the last packet; UDPReplyRcodes counts them by
	// rcode ("short" for one without a whole header).
	UDPReplies     int            `json:"udpReplies"`
	UDPReplyRcodes map[string]int `json:"udpReplyRcodes"`
	// ReceiveErrors counts errors reading replies: mostly ICMP port
	// unreachable coming back as "connection refused".
	ReceiveErrors int `json:"receiveErrors"`
	// Final is the valid question asked after the flood.
	Final FloodFinal `json:"final"`
	// Errors are the first distinct error messages of sends, receives and
	// the final question; ErrorCount counts them all.
	Errors     []string `json:"errors"`
	ErrorCount int      `json:"errorCount"`
	DurationMs float64  `json:"durationMs"`
	// Error says what went wrong when OK is false.
	Error string `json:"error,omitempty"`
}

// Validate checks the config; its errors are *UsageError.
func (c DNSFloodConfig) Validate() error {
	if c.Server == "" {
		return usageErrorf("missing --server: want the IP[:PORT] of the DNS server to flood")
	}
	if _, err := serverAddr(c.Server); err != nil {
		return err
	}
	if c.Count < 1 {
		return usageErrorf("invalid count %d: want at least 1", c.Count)
	}
	if c.Rate < 0 {
		return usageErrorf("invalid rate %d: want 0 (as fast as possible) or packets per second", c.Rate)
	}
	if c.Timeout <= 0 {
		return usageErrorf("invalid timeout %s: want a positive duration", c.Timeout)
	}
	return nil
}

// RunDNSFlood runs DNSFlood and writes its report to w as one JSON line.
// It returns a *UsageError for an invalid config (still reported), an
// error wrapping ErrFailed when the report is not ok, and nil otherwise.
func RunDNSFlood(ctx context.Context, cfg DNSFloodConfig, w io.Writer) error {
	verr := cfg.Validate()
	rep := DNSFlood(ctx, cfg)
	return finish(w, rep, rep.OK, rep.Error, verr)
}

// floodTally is what the flood's goroutines count, under mu.
type floodTally struct {
	mu  sync.Mutex
	rep *DNSFloodReport
}

func (t *floodTally) sent(cat string, tcp, short bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rep.Sent[cat]++
	switch {
	case tcp:
		t.rep.TCP++
		if short {
			t.rep.TCPShortPrefix++
		}
	default:
		t.rep.UDP++
	}
}

func (t *floodTally) failed(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rep.Failed++
	t.errorLocked(err)
}

func (t *floodTally) reply(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rep.UDPReplies++
	rcode := "short"
	if len(b) >= 12 {
		rcode = rcodeName(int(b[3] & 0x0f))
	}
	t.rep.UDPReplyRcodes[rcode]++
}

func (t *floodTally) receiveError(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rep.ReceiveErrors++
	t.errorLocked(err)
}

func (t *floodTally) error(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errorLocked(err)
}

func (t *floodTally) errorLocked(err error) {
	t.rep.ErrorCount++
	msg := err.Error()
	for _, e := range t.rep.Errors {
		if e == msg {
			return
		}
	}
	if len(t.rep.Errors) < maxFloodErrors {
		t.rep.Errors = append(t.rep.Errors, msg)
	}
}

// DNSFlood sends cfg.Count malformed or hostile packets to the server,
// one in floodTCPEvery of them over a fresh TCP connection and the rest
// over one connected UDP socket, counts the UDP replies, and then asks
// FloodQuestion over UDP and over TCP to see whether the server still
// answers. It never fails itself: whatever went wrong, an invalid config
// included, is in the report.
func DNSFlood(ctx context.Context, cfg DNSFloodConfig) DNSFloodReport {
	rep := DNSFloodReport{
		Server: cfg.Server, Count: cfg.Count, Rate: cfg.Rate, Seed: cfg.Seed,
		Sent: map[string]int{}, UDPReplyRcodes: map[string]int{}, Errors: []string{},
	}
	if err := cfg.Validate(); err != nil {
		rep.Error = err.Error()
		return rep
	}
	server, _ := serverAddr(cfg.Server) // validated
	rep.Server = server.String()
	start := time.Now()
	tally := &floodTally{rep: &rep}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		rep.Error = fmt.Sprintf("udp socket: %v", err)
		return rep
	}
	defer conn.Close()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		floodReceive(conn, tally)
	}()

	var tcp sync.WaitGroup
	slots := make(chan struct{}, floodTCPParallel)
	gen := newFloodGen(cfg.Seed)
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Second / time.Duration(cfg.Rate)
	}
	attempted := 0
send:
	for i := range cfg.Count {
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					break send
				case <-t.C:
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		attempted++
		if i%floodTCPEvery != floodTCPOffset {
			cat, b := gen.next(false)
			if _, err := conn.Write(b); err != nil {
				tally.failed(fmt.Errorf("udp %s: %w", cat, err))
			} else {
				tally.sent(cat, false, false)
			}
			continue
		}
		cat, b := gen.next(true)
		short := gen.tcpSent%floodShortEvery == 0
		msg := floodTCPMessage(b, short, gen.rng)
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			tally.failed(fmt.Errorf("tcp %s: %w", cat, ctx.Err()))
			break send
		}
		tcp.Go(func() {
			defer func() { <-slots }()
			if err := floodTCP(ctx, server.String(), msg, cfg.Timeout); err != nil {
				tally.failed(fmt.Errorf("tcp %s: %w", cat, err))
			} else {
				tally.sent(cat, true, short)
			}
		})
	}
	tcp.Wait()
	_ = conn.SetReadDeadline(time.Now().Add(min(floodReplyWait, cfg.Timeout)))
	<-recvDone

	rep.Final.UDP = floodAsk(ctx, "udp", server.String(), cfg.Timeout, floodFinalUDPAttempts)
	rep.Final.TCP = floodAsk(ctx, "tcp", server.String(), cfg.Timeout, 1)
	for _, a := range []FloodAnswer{rep.Final.UDP, rep.Final.TCP} {
		if a.Error != "" {
			tally.error(errors.New(a.Error))
		}
	}
	rep.DurationMs = ms(time.Since(start))

	var problems []string
	if attempted < cfg.Count {
		problems = append(problems, fmt.Sprintf("stopped after %d of %d packets: %v", attempted, cfg.Count, ctx.Err()))
	}
	if rep.Failed > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d packets not sent", rep.Failed, cfg.Count))
	}
	for _, f := range []struct {
		net string
		a   FloodAnswer
	}{{"udp", rep.Final.UDP}, {"tcp", rep.Final.TCP}} {
		if !f.a.Answered {
			problems = append(problems, fmt.Sprintf("no answer to %s TXT over %s: %s", FloodQuestion, f.net, f.a.Error))
		}
	}
	rep.OK = len(problems) == 0
	rep.Error = strings.Join(problems, "; ")
	return rep
}

// floodReceive counts the datagrams that come back on conn until its read
// deadline passes or it is closed.
func floodReceive(conn net.Conn, tally *floodTally) {
	buf := make([]byte, 64<<10)
	for {
		n, err := conn.Read(buf)
		switch {
		case err == nil:
			tally.reply(buf[:n])
		case networkDown(err):
			// An ICMP error for an earlier datagram: one per datagram, so
			// reading on does not spin.
			tally.receiveError(fmt.Errorf("udp receive: %w", err))
		default:
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				if !errors.Is(err, net.ErrClosed) {
					tally.receiveError(fmt.Errorf("udp receive: %w", err))
				}
			}
			return
		}
	}
}

// floodTCPMessage frames b for TCP: a 2-byte length prefix and b, or, when
// short, a prefix that promises more than b.
func floodTCPMessage(b []byte, short bool, rng *rand.Rand) []byte {
	n := len(b)
	if short {
		n += 1 + rng.IntN(min(512, dns.MaxMsgSize-len(b)))
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(n)), b...)
}

// floodTCP sends msg on a fresh connection to server and closes it
// without reading.
func floodTCP(ctx context.Context, server string, msg []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetWriteDeadline(deadline)
	_, err = c.Write(msg)
	return err
}

// floodAsk asks FloodQuestion TXT over network, up to attempts times.
func floodAsk(ctx context.Context, network, server string, timeout time.Duration, attempts int) FloodAnswer {
	m := new(dns.Msg)
	m.SetQuestion(FloodQuestion, dns.TypeTXT)
	c := &dns.Client{Net: network, Timeout: timeout}
	var a FloodAnswer
	for range attempts {
		reply, rtt, err := c.ExchangeContext(ctx, m, server)
		if err == nil {
			return FloodAnswer{Answered: true, Rcode: rcodeName(reply.Rcode), RTTMs: ms(rtt)}
		}
		a.Error = fmt.Sprintf("%s %s: %v", network, FloodQuestion, err)
		if ctx.Err() != nil {
			break
		}
	}
	return a
}

// rcodeName is the name of rcode, or its number.
func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return strconv.Itoa(rcode)
}

// floodCategory is one kind of hostile packet.
type floodCategory struct {
	name  string
	build func(*rand.Rand) []byte
}

// FloodCategories are the names of the kinds of packets a flood sends, in
// the order it sends them (round robin, separately over UDP and TCP).
func FloodCategories() []string {
	names := make([]string, len(floodCategories))
	for i, c := range floodCategories {
		names[i] = c.name
	}
	return names
}

// floodCategories are the packets, each built from the flood's random
// source and nothing else so that a seed replays a flood byte for byte.
var floodCategories = []floodCategory{
	{"empty", func(*rand.Rand) []byte { return []byte{} }},
	{"random", func(r *rand.Rand) []byte { return randomBytes(r, 1+r.IntN(512)) }},
	{"truncated", func(r *rand.Rand) []byte {
		b := mustPack(floodQuery(r))
		return b[:1+r.IntN(len(b)-1)]
	}},
	{"question-missing", func(r *rand.Rand) []byte {
		// The header promises a question; nothing follows it.
		m := floodQuery(r)
		m.Question = nil
		b := mustPack(m)
		binary.BigEndian.PutUint16(b[4:], 1)
		return b
	}},
	{"no-question", func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.Question = nil
		return mustPack(m)
	}},
	{"two-questions", func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.Question = append(m.Question, floodQuery(r).Question...)
		return mustPack(m)
	}},
	{"class-chaos", floodClass(dns.ClassCHAOS)},
	{"class-none", floodClass(dns.ClassNONE)},
	{"class-any", floodClass(dns.ClassANY)},
	{"type-any", floodType(dns.TypeANY)},
	{"axfr", floodType(dns.TypeAXFR)},
	{"pointer-loop", func(r *rand.Rand) []byte {
		// The question's name is a pointer to itself, at offset 12.
		return append(floodHeader(r, 1), 0xc0, 12, 0, byte(dns.TypeA), 0, byte(dns.ClassINET))
	}},
	{"pointer-past-end", func(r *rand.Rand) []byte {
		// One label, then a pointer forward beyond the end.
		b := append(floodHeader(r, 1), 3, 's', 'v', 'c')
		to := len(b) + 6 + 1 + r.IntN(0x3fff-len(b)-6)
		return append(b, 0xc0|byte(to>>8), byte(to), 0, byte(dns.TypeA), 0, byte(dns.ClassINET))
	}},
	{"label-64", func(r *rand.Rand) []byte {
		// 64 is one more than a label may have: its top bits, 01, are
		// the label type RFC 6891 retired.
		b := append(floodHeader(r, 1), 64)
		b = append(b, randomLabel(r, 64)...)
		return append(b, 0, 0, byte(dns.TypeA), 0, byte(dns.ClassINET))
	}},
	{"label-past-end", func(r *rand.Rand) []byte {
		// A label of 63 bytes of which a few are there.
		b := append(floodHeader(r, 1), 63)
		return append(b, randomLabel(r, 1+r.IntN(20))...)
	}},
	{"huge", func(r *rand.Rand) []byte {
		b := mustPack(floodQuery(r))
		return append(b, make([]byte, floodHugeSize-len(b))...)
	}},
	{"opcode-notify", floodOpcode(dns.OpcodeNotify)},
	{"opcode-update", floodOpcode(dns.OpcodeUpdate)},
	{"response", func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.Response = true
		return mustPack(m)
	}},
	{"random-flags", func(r *rand.Rand) []byte {
		b := mustPack(floodQuery(r))
		binary.BigEndian.PutUint16(b[2:], uint16(r.Uint32()))
		return b
	}},
	{"edns-size-0", floodEDNS(0, 0)},
	{"edns-size-65535", floodEDNS(65535, 0)},
	{"edns-version-1", floodEDNS(dns.DefaultMsgSize, 1)},
	{"random-labels", func(r *rand.Rand) []byte {
		m := new(dns.Msg)
		m.SetQuestion(randomClustersetName(r), floodTypes[r.IntN(len(floodTypes))])
		m.Id = uint16(r.Uint32())
		return mustPack(m)
	}},
}

// floodTypes are the types of the well-formed queries the flood mutates.
var floodTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR}

// floodGen builds the flood's packets in order.
type floodGen struct {
	rng              *rand.Rand
	udpSent, tcpSent int
}

func newFloodGen(seed uint64) *floodGen {
	return &floodGen{rng: rand.New(rand.NewPCG(seed, seed))}
}

// next returns the next packet for UDP or TCP and its category: each
// transport goes round the categories on its own, so TCP, with one packet
// in floodTCPEvery, sees every category too.
func (g *floodGen) next(tcp bool) (string, []byte) {
	n := &g.udpSent
	if tcp {
		n = &g.tcpSent
	}
	c := floodCategories[*n%len(floodCategories)]
	*n++
	return c.name, c.build(g.rng)
}

// floodQuery is a well-formed query for a random service under
// clusterset.local.
func floodQuery(r *rand.Rand) *dns.Msg {
	m := new(dns.Msg)
	name := fmt.Sprintf("svc-%d.ns-%d.svc.clusterset.local.", r.IntN(1000), r.IntN(100))
	m.SetQuestion(name, floodTypes[r.IntN(len(floodTypes))])
	m.Id = uint16(r.Uint32())
	return m
}

// floodHeader is the header of a query with qdcount questions, for
// packets the dns package will not build.
func floodHeader(r *rand.Rand, qdcount uint16) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 512), uint16(r.Uint32())) // ID
	b = append(b, 0x01, 0x00)                                                    // RD
	b = binary.BigEndian.AppendUint16(b, qdcount)
	return append(b, 0, 0, 0, 0, 0, 0) // no answers, authorities or additionals
}

func floodClass(class uint16) func(*rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.Question[0].Qclass = class
		return mustPack(m)
	}
}

func floodType(qtype uint16) func(*rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.Question[0].Qtype = qtype
		return mustPack(m)
	}
}

func floodOpcode(opcode int) func(*rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.Opcode = opcode
		return mustPack(m)
	}
}

func floodEDNS(size uint16, version uint8) func(*rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		m := floodQuery(r)
		m.SetEdns0(size, r.IntN(2) == 0)
		m.IsEdns0().SetVersion(version)
		return mustPack(m)
	}
}

// mustPack packs a message the flood built itself, which cannot fail.
func mustPack(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("dns-flood: pack %v: %v", m.Question, err))
	}
	return b
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

const labelChars = "abcdefghijklmnopqrstuvwxyz0123456789-"

func randomLabel(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = labelChars[r.IntN(len(labelChars))]
	}
	return b
}

// randomClustersetName is one to four random labels under
// clusterset.local, one byte in eight of them any byte at all (escaped as
// \DDD for the dns package).
func randomClustersetName(r *rand.Rand) string {
	var sb strings.Builder
	for range 1 + r.IntN(4) {
		// 4 labels of at most 48 bytes keep the name under 255 bytes.
		for range 1 + r.IntN(48) {
			c := labelChars[r.IntN(len(labelChars))]
			if r.IntN(8) == 0 {
				c = byte(r.Uint32())
			}
			if strings.IndexByte(labelChars, c) >= 0 {
				sb.WriteByte(c)
			} else {
				fmt.Fprintf(&sb, "\\%03d", c)
			}
		}
		sb.WriteByte('.')
	}
	sb.WriteString("clusterset.local.")
	return sb.String()
}
