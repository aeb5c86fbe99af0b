package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"
)

// The fakes an elector runs on in the tests: a Lease API, heartbeats and a
// clock. They are fakes of the seams, not of the apiserver: the Lease API is
// a resourcelock.Interface in memory rather than client-go's fake clientset
// because the elector's requests carry a context, which a slow apiserver
// must honour (reactors do not see it), and because the fake clientset's
// tracker accepts any Update whatever its resourceVersion, so it never
// answers Conflict on its own.

// fault is how the fake Lease API answers one gateway.
type apiFault int

const (
	// healthy answers at once.
	apiHealthy apiFault = iota
	// away fails every request at once, as an unreachable apiserver does.
	apiAway
	// slow holds every request until its deadline, as an overloaded
	// apiserver does.
	apiSlow
)

var errAPIAway = errors.New(`Get "https://10.96.0.1:443/apis/coordination.k8s.io/v1/namespaces/strait-system/leases/strait-gateway": dial tcp 10.96.0.1:443: connect: connection refused`)

var leaseResource = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// fakeLeases is one Lease in memory, with a version that every write bumps.
// Each gateway talks to it through its own fakeLock, which, like
// resourcelock.LeaseLock, sends with an Update the version of its last read,
// so a write after someone else's gets a Conflict, as from the apiserver.
type fakeLeases struct {
	mu      sync.Mutex
	rec     *resourcelock.LeaderElectionRecord // nil: no Lease
	version int
	faults  map[string]apiFault // by identity
	writes  map[string]int      // successful or not, by identity
	blocked map[string]chan string
	// before, when set, runs before each request of a gateway, outside the
	// lock: a test interleaves another writer there, or holds a request
	// back.
	before func(op, identity string)
}

func newFakeLeases() *fakeLeases {
	return &fakeLeases{faults: map[string]apiFault{}, writes: map[string]int{}, blocked: map[string]chan string{}}
}

// lock is a gateway's handle on the Lease. blocked receives the operation
// of each request the slow fault holds until its deadline.
func (s *fakeLeases) lock(identity string, blocked chan string) *fakeLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked[identity] = blocked
	return &fakeLock{s: s, identity: identity}
}

// set writes the Lease as another gateway (or an administrator) would;
// nil deletes it.
func (s *fakeLeases) set(r *resourcelock.LeaderElectionRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r != nil {
		cp := *r
		r = &cp
	}
	s.rec = r
	s.version++
}

// get returns a copy of the Lease, nil when there is none.
func (s *fakeLeases) get() *resourcelock.LeaderElectionRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec == nil {
		return nil
	}
	cp := *s.rec
	return &cp
}

func (s *fakeLeases) fault(identity string, f apiFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[identity] = f
}

func (s *fakeLeases) writesBy(identity string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[identity]
}

func (s *fakeLeases) setBefore(f func(op, identity string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before = f
}

type fakeLock struct {
	s        *fakeLeases
	identity string
	version  int // of the last read or write; 0: none yet
}

var _ resourcelock.Interface = (*fakeLock)(nil)

// enter applies the test's hook and this gateway's fault to one request.
func (l *fakeLock) enter(ctx context.Context, op string) error {
	l.s.mu.Lock()
	before, f, blocked := l.s.before, l.s.faults[l.identity], l.s.blocked[l.identity]
	l.s.mu.Unlock()
	if before != nil {
		before(op, l.identity)
	}
	switch f {
	case apiAway:
		return errAPIAway
	case apiSlow:
		blocked <- op
		<-ctx.Done()
		return fmt.Errorf("%s Lease: %w", op, ctx.Err())
	}
	return ctx.Err()
}

func (l *fakeLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	if err := l.enter(ctx, "get"); err != nil {
		return nil, nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.rec == nil {
		return nil, nil, apierrors.NewNotFound(leaseResource, LeaseName)
	}
	l.version = l.s.version
	cp := *l.s.rec
	return &cp, nil, nil
}

func (l *fakeLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if err := l.enter(ctx, "create"); err != nil {
		return err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.writes[l.identity]++
	if l.s.rec != nil {
		return apierrors.NewAlreadyExists(leaseResource, LeaseName)
	}
	l.s.rec = &r
	l.s.version++
	l.version = l.s.version
	return nil
}

func (l *fakeLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if err := l.enter(ctx, "update"); err != nil {
		return err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.writes[l.identity]++
	switch {
	case l.version == 0:
		return errors.New("lease not initialized, call get or create first")
	case l.s.rec == nil:
		return apierrors.NewNotFound(leaseResource, LeaseName)
	case l.version != l.s.version:
		return apierrors.NewConflict(leaseResource, LeaseName, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
	}
	l.s.rec = &r
	l.s.version++
	l.version = l.s.version
	return nil
}

func (l *fakeLock) RecordEvent(string) {}
func (l *fakeLock) Identity() string   { return l.identity }
func (l *fakeLock) Describe() string   { return "strait-system/" + LeaseName }

// fakeNet is the heartbeats between the gateways: which gateways answer,
// and every heartbeater the electors started.
type fakeNet struct {
	mu      sync.Mutex
	up      map[string]bool
	open    map[*fakeHeartbeats]bool
	started int
}

func newFakeNet() *fakeNet {
	return &fakeNet{up: map[string]bool{}, open: map[*fakeHeartbeats]bool{}}
}

// answer makes gateway id answer heartbeats or stop answering. Stopping
// is reported as a death to every heartbeater that heard it.
func (n *fakeNet) answer(id string, up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up[id] = up
	for h := range n.open {
		if h.watched != id {
			continue
		}
		if up {
			h.heard = true
			continue
		}
		if h.heard {
			h.heard = false
			select {
			case h.deadc <- id:
			default:
			}
		}
	}
}

// leave makes gateway id's answers say that it is handing its role over,
// which every heartbeater watching it hears (a clean stop).
func (n *fakeNet) leave(id string) {
	n.tell(id, func(h *fakeHeartbeats) chan string { return h.leavingc })
}

// unfit makes every heartbeater watching gateway id find that it should
// replace it (probes.judge); it answers no more (as probes.answering says
// then).
func (n *fakeNet) unfit(id string) {
	n.tell(id, func(h *fakeHeartbeats) chan string { return h.unfitc })
}

// tell stops gateway id answering and delivers it on the channel c picks
// of every heartbeater watching it.
func (n *fakeNet) tell(id string, c func(*fakeHeartbeats) chan string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up[id] = false
	for h := range n.open {
		if h.watched != id {
			continue
		}
		h.heard = false
		select {
		case c(h) <- id:
		default:
		}
	}
}

// start is the elector's heartbeats seam.
func (n *fakeNet) start() heartbeater {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := &fakeHeartbeats{n: n, deadc: make(chan string, 1), leavingc: make(chan string, 1), unfitc: make(chan string, 1)}
	n.open[h] = true
	n.started++
	return h
}

// watching returns what every open heartbeater watches.
func (n *fakeNet) watching() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for h := range n.open {
		out = append(out, h.watched)
	}
	return out
}

func (n *fakeNet) counts() (started, open int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started, len(n.open)
}

// fakeHeartbeats is one acquire's heartbeats; its state is under n.mu.
type fakeHeartbeats struct {
	n        *fakeNet
	watched  string
	heard    bool // the watched gateway answered and has not stopped since
	deadc    chan string
	leavingc chan string
	unfitc   chan string
}

var _ heartbeater = (*fakeHeartbeats)(nil)

func (h *fakeHeartbeats) watch(holder string) {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if holder != h.watched {
		h.watched, h.heard = holder, false
	}
	if holder != "" && h.n.up[holder] {
		h.heard = true
	}
}

func (h *fakeHeartbeats) answering(holder string) bool {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	return holder != "" && holder == h.watched && h.heard
}

func (h *fakeHeartbeats) dead() <-chan string { return h.deadc }

func (h *fakeHeartbeats) leaving() <-chan string { return h.leavingc }

func (h *fakeHeartbeats) unfit() <-chan string { return h.unfitc }

func (h *fakeHeartbeats) close() {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	delete(h.n.open, h)
}

// parkClock is one gateway's view of the test's fake clock. It reports
// every retry timer the elector arms, which is when a round has ended and
// the elector waits for the next: the test moves the clock only then, so no
// tick is lost and the rounds go in step with the test, without sleeping.
type parkClock struct {
	*testingclock.FakeClock
	parked chan struct{}
	done   <-chan struct{} // the test ended
}

var _ clock.WithDelayedExecution = (*parkClock)(nil)

func (c *parkClock) NewTimer(d time.Duration) clock.Timer {
	t := c.FakeClock.NewTimer(d)
	if d == retryPeriod {
		select {
		case c.parked <- struct{}{}:
		case <-c.done:
		}
	}
	return t
}

// logRecorder keeps an elector's log, to count warnings (a storm of them is
// a defect) and to show the log when a test fails.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	warns int
}

var _ slog.Handler = (*logRecorder)(nil)

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	if rec.Level >= slog.LevelWarn {
		r.warns++
	}
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) warnings() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.warns
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}
