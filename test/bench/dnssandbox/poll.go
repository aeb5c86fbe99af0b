package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Poller defaults. The names-from-stdin mode asks every 50 ms, so a first
// answer is seen within 50 ms of the server being able to give it; a query
// gets 1 s before it counts as lost (the poller keeps asking meanwhile).
// Every outstanding name is asked at that rate, so the poller's own load
// grows with the backlog: at 10 ms and up to 20 queries in flight per
// name, a few dozen outstanding names made thousands of queries a second
// through the cluster's CoreDNS on two cores, and the measurement fed on
// itself (p50 13 s; the ServiceImports themselves had arrived within a
// second).
const (
	defaultPollInterval = 50 * time.Millisecond
	defaultNameTimeout  = 60 * time.Second
	queryTimeout        = time.Second
	// maxInFlight bounds the queries of one name awaiting an answer, so a
	// server that stops answering does not pile up goroutines.
	maxInFlight = 2
)

// firstAnswer is the line the poller prints for a name read from stdin:
// when an A query for it first answered NOERROR with an address, on this
// machine's clock, or that it never did within the timeout.
type firstAnswer struct {
	Name       string   `json:"name"`
	UnixNano   int64    `json:"unixNano,omitempty"`
	Addrs      []string `json:"addrs,omitempty"`
	Queries    int      `json:"queries"`
	TimedOut   bool     `json:"timedOut,omitempty"`
	LastAnswer string   `json:"lastAnswer,omitempty"`
}

// answerChange is the line the poller prints in --watch mode whenever the
// answer to the watched name differs from the previous one.
type answerChange struct {
	UnixNano int64    `json:"unixNano"`
	Rcode    string   `json:"rcode"`
	Addrs    []string `json:"addrs"`
}

// poll is the in-pod half of the benchmark: the parent runs it in a pod's
// namespaces ("strait-sandbox exec"), so its queries take the pod's path to
// the cluster's DNS, and reads its JSON lines. Without --watch it reads
// fully qualified names from stdin, asks each every --interval from the
// moment it is read until it first answers, and prints one firstAnswer per
// name; it exits once stdin is closed and every name is done. With --watch
// it asks one name every --interval until stdin is closed and prints an
// answerChange whenever the answer changes.
func poll(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	server := fs.String("server", "", "DNS server, IP or IP:port (required; the pod's nameserver)")
	interval := fs.Duration("interval", defaultPollInterval, "time between two queries of a name")
	timeout := fs.Duration("timeout", defaultNameTimeout, "give up on a name this long after reading it")
	watch := fs.String("watch", "", "ask this name for ever and print each change of its answer, instead of reading names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" {
		return errors.New("poll: --server is required")
	}
	addr := *server
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	p := &poller{server: addr, interval: *interval, out: json.NewEncoder(stdout)}
	if *watch != "" {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _, _ = io.Copy(io.Discard, stdin); cancel() }()
		return p.watch(ctx, dns.Fqdn(*watch))
	}
	var wg sync.WaitGroup
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		wg.Go(func() { p.first(dns.Fqdn(name), *timeout) })
	}
	wg.Wait()
	return sc.Err()
}

// poller asks one server and writes JSON lines, one at a time.
type poller struct {
	server   string
	interval time.Duration
	mu       sync.Mutex
	out      *json.Encoder
}

func (p *poller) print(v any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.out.Encode(v)
}

// answer is one query's outcome.
type answer struct {
	rcode string
	addrs []string
	at    time.Time
}

func (a answer) String() string { return a.rcode + " " + strings.Join(a.addrs, ",") }

// query asks for name's A records once.
func (p *poller) query(ctx context.Context, name string) (answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: queryTimeout}
	r, _, err := c.ExchangeContext(ctx, m, p.server)
	at := time.Now()
	if err != nil {
		return answer{}, err
	}
	a := answer{rcode: dns.RcodeToString[r.Rcode], at: at}
	for _, rr := range r.Answer {
		if rec, ok := rr.(*dns.A); ok {
			a.addrs = append(a.addrs, rec.A.String())
		}
	}
	slices.Sort(a.addrs)
	return a, nil
}

// first asks name every interval, each query in its own goroutine so a
// lost packet does not delay the next, until one answers NOERROR with an
// address or timeout passes.
func (p *poller) first(name string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		mu       sync.Mutex
		won      *answer
		last     string // the last answer, or the last error when none came
		gotOne   bool
		queries  int
		inFlight int
	)
	done := make(chan struct{})
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		mu.Lock()
		if inFlight < maxInFlight {
			inFlight++
			queries++
			go func() {
				a, err := p.query(ctx, name)
				mu.Lock()
				defer mu.Unlock()
				inFlight--
				switch {
				case err != nil:
					if !gotOne {
						last = err.Error()
					}
				case won != nil:
				case a.rcode == "NOERROR" && len(a.addrs) > 0:
					won = &a
					close(done)
				default:
					last, gotOne = a.String(), true
				}
			}()
		}
		mu.Unlock()
		select {
		case <-done:
			p.print(firstAnswer{Name: name, UnixNano: won.at.UnixNano(), Addrs: won.addrs, Queries: queries})
			return
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			if won != nil { // answered as time ran out
				p.print(firstAnswer{Name: name, UnixNano: won.at.UnixNano(), Addrs: won.addrs, Queries: queries})
				return
			}
			p.print(firstAnswer{Name: name, Queries: queries, TimedOut: true, LastAnswer: last})
			return
		case <-tick.C:
		}
	}
}

// watch asks name every interval, one query at a time so that the answers
// are seen in order, until ctx ends. A lost query is skipped.
func (p *poller) watch(ctx context.Context, name string) error {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	prev := "\x00" // matches no answer: the first one is printed
	for {
		if a, err := p.query(ctx, name); err == nil && a.String() != prev {
			prev = a.String()
			p.print(answerChange{UnixNano: a.at.UnixNano(), Rcode: a.rcode, Addrs: a.addrs})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// errUsage is returned for a command line the program does not know.
var errUsage = fmt.Errorf("usage: strait-bench-dns-sandbox [poll --server IP [--interval D] [--timeout D] [--watch NAME]]")
