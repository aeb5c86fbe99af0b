package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// kind is what a query asks for; each kind's latency is reported apart.
type kind int

const (
	kindHit      kind = iota // A of a ClusterSetIP import / ClusterIP Service
	kindMiss                 // a search-path name under the side's zone: NXDOMAIN
	kindHeadless             // A of a headless service: its ready endpoints
	kindSRV                  // SRV _http._tcp of a service
	kinds
)

func (k kind) String() string {
	return [...]string{"hit", "miss", "headless", "srv"}[k]
}

// mix is the share of each kind in the query file, in percent.
type mix [kinds]int

func parseMix(s string) (mix, error) {
	var m mix
	total := 0
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 0 {
			return m, fmt.Errorf("mix %q: want kind=percent,... (hit, miss, headless, srv)", s)
		}
		found := false
		for k := range kinds {
			if k.String() == name {
				m[k], found = n, true
			}
		}
		if !found {
			return m, fmt.Errorf("mix %q: unknown kind %q", s, name)
		}
		total += n
	}
	if total != 100 {
		return m, fmt.Errorf("mix %q adds up to %d, not 100", s, total)
	}
	return m, nil
}

// query is one entry of the query file, independent of the zone: which
// service it names and how.
type query struct {
	kind   kind
	svc    int
	search int    // kindMiss: which search domain (0: <client-ns>.svc, 1: svc, 2: the zone)
	client string // kindMiss: the namespace of the pod whose resolver searched
}

// queryFile draws n queries from set with the mix's shares; a fixed seed
// makes every side and every run see the same file. Hits and misses name
// ClusterSetIP services, headless queries headless ones, SRV either.
// Misses are the search-path names that a pod's resolv.conf (ndots:5,
// search <ns>.svc.<zone> svc.<zone> <zone>) tries before the hit: the
// server answers them NXDOMAIN.
func queryFile(set []svcSpec, m mix, n int) []query {
	rng := rand.New(rand.NewPCG(13, 1645))
	var plain, headless []int
	for i, s := range set {
		if s.headless {
			headless = append(headless, i)
		} else {
			plain = append(plain, i)
		}
	}
	nss := namespaces(set)
	pick := func(from []int) int {
		if len(from) == 0 {
			return rng.IntN(len(set))
		}
		return from[rng.IntN(len(from))]
	}
	var out []query
	for k := range kinds {
		for range n * m[k] / 100 {
			q := query{kind: k}
			switch k {
			case kindHit:
				q.svc = pick(plain)
			case kindMiss:
				q.svc, q.search, q.client = pick(plain), rng.IntN(3), nss[rng.IntN(len(nss))]
			case kindHeadless:
				q.svc = pick(headless)
			case kindSRV:
				q.svc = rng.IntN(len(set))
			}
			out = append(out, q)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// wire is a query rendered for one side: the packed message and the answer
// that counts as right.
type wire struct {
	kind    kind
	name    string
	packed  []byte
	rcode   int
	answers int // exact answer count expected
}

// render renders the query file for a zone.
func render(qs []query, set []svcSpec, zone string) []wire {
	out := make([]wire, len(qs))
	for i, q := range qs {
		s := set[q.svc]
		base := s.name + "." + s.ns + ".svc." + zone + "."
		w := wire{kind: q.kind, name: base, rcode: dns.RcodeSuccess}
		qtype := dns.TypeA
		switch q.kind {
		case kindHit:
			w.answers = 1
		case kindMiss:
			w.name = base + []string{q.client + ".svc." + zone + ".", "svc." + zone + ".", zone + "."}[q.search]
			w.rcode = dns.RcodeNameError
		case kindHeadless:
			w.answers = len(s.eps)
		case kindSRV:
			qtype = dns.TypeSRV
			w.name = "_http._tcp." + base
			w.answers = 1
			if s.headless {
				w.answers = len(s.eps)
			}
		}
		m := new(dns.Msg)
		m.SetQuestion(w.name, qtype)
		m.RecursionDesired = true
		w.packed, _ = m.Pack()
		out[i] = w
	}
	return out
}

// check sends every query of the file once and returns the first answer
// that is not the expected one: the benchmark must not measure an error
// path.
func check(addr string, ws []wire) error {
	c := &dns.Client{Timeout: 2 * time.Second}
	seen := map[string]bool{}
	for _, w := range ws {
		if seen[w.name] {
			continue
		}
		seen[w.name] = true
		m := new(dns.Msg)
		if err := m.Unpack(w.packed); err != nil {
			return err
		}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", w.name, dns.TypeToString[m.Question[0].Qtype], err)
		}
		if r.Rcode != w.rcode || len(r.Answer) != w.answers {
			return fmt.Errorf("%s %s: got %s with %d answers, want %s with %d:\n%v", w.name, dns.TypeToString[m.Question[0].Qtype],
				dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[w.rcode], w.answers, r)
		}
	}
	return nil
}

// measurement is one run of the load generator: workers in a closed loop for dur.
type measurement struct {
	answered, timeouts, wrong int
	elapsed                   time.Duration
	lat                       [kinds][]time.Duration
}

// queryTimeout is how long a worker waits for an answer before it counts
// a timeout and moves on. Loopback answers take well under a millisecond
// unless the server is saturated; a second only catches lost packets.
const queryTimeout = time.Second

// blast runs workers, each with its own UDP socket, through the query
// file (each from its own offset) for dur, and records every answer's
// latency by kind. A worker sends its next query when the last is answered
// (a closed loop), so with enough workers the server is saturated and the
// count of answers is its throughput.
func blast(addr string, ws []wire, workers int, dur time.Duration) (measurement, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return measurement{}, err
	}
	results := make([]measurement, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = worker(raddr, ws, w*len(ws)/workers, uint16(w)<<10, deadline, &results[w])
		}()
	}
	wg.Wait()
	var total measurement
	total.elapsed = time.Since(start)
	for w, r := range results {
		if errs[w] != nil {
			return total, errs[w]
		}
		total.answered += r.answered
		total.timeouts += r.timeouts
		total.wrong += r.wrong
		for k := range kinds {
			total.lat[k] = append(total.lat[k], r.lat[k]...)
		}
	}
	return total, nil
}

func worker(raddr *net.UDPAddr, ws []wire, i int, id uint16, deadline time.Time, r *measurement) error {
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	out := make([]byte, 512)
	in := make([]byte, 4096)
	for time.Now().Before(deadline) {
		w := &ws[i%len(ws)]
		i++
		id++
		n := copy(out, w.packed)
		binary.BigEndian.PutUint16(out, id)
		sent := time.Now()
		if _, err := conn.Write(out[:n]); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(sent.Add(queryTimeout))
		for {
			m, err := conn.Read(in)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					r.timeouts++
					break
				}
				return err
			}
			// A late answer to an earlier, timed-out query: skip it.
			if m < 12 || binary.BigEndian.Uint16(in) != id {
				continue
			}
			r.lat[w.kind] = append(r.lat[w.kind], time.Since(sent))
			r.answered++
			rcode := int(in[3] & 0x0f)
			ancount := int(binary.BigEndian.Uint16(in[6:]))
			if in[2]&0x80 == 0 || rcode != w.rcode || ancount != w.answers {
				r.wrong++
			}
			break
		}
	}
	return nil
}

// latencyStats are a set of latencies in milliseconds.
type latencyStats struct {
	Count  int     `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P99Ms  float64 `json:"p99Ms"`
}

func stats(lat []time.Duration) latencyStats {
	if len(lat) == 0 {
		return latencyStats{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencyStats{
		Count:  len(s),
		MeanMs: ms(sum / time.Duration(len(s))),
		P50Ms:  ms(s[len(s)/2]),
		P99Ms:  ms(s[min(len(s)-1, len(s)*99/100)]),
	}
}

// pinSelf restricts every thread of this process (and so every process it
// starts afterwards) to cpus; threads made later inherit the mask.
func pinSelf(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin thread %d: %w", tid, err)
		}
	}
	return nil
}
