package health

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// fakePath answers every probe up to limit bytes and drops the rest, as a
// path narrower than the devices does when it drops oversize packets
// silently. device is the cable device's MTU: larger probes fail at once.
type fakePath struct{ limit, device int }

// run drives s for rounds probing rounds from now, one a second, and
// returns the time after the last.
func (p *fakePath) run(s *pmtuSearch, now time.Time, rounds int) time.Time {
	for range rounds {
		size, send := s.next(now)
		for send && size > p.device {
			s.tooBig(size)
			size, send = s.next(now)
		}
		if send && size <= p.limit {
			s.answered(size)
		}
		now = now.Add(time.Second)
	}
	return now
}

func TestPMTUSearchFindsTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name          string
		floor, device int
		limit, want   int
	}{
		{"narrowed IPv4 path", FloorIPv4, 1420, 1400 - 60, 1340},
		{"path as wide as the device", FloorIPv4, 1420, 1500, 1420},
		{"IPv6 path just above the floor", FloorIPv6, 1420, 1281, 1281},
		{"IPv6 path at the floor", FloorIPv6, 1420, 1280, 1280},
		{"below the floor: no figure", FloorIPv6, 1420, 1279, 0},
		{"nothing answered (an old gateway): no figure", FloorIPv4, 1420, 0, 0},
		{"jumbo device", FloorIPv4, 8950, 8000, 8000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPMTUSearch(PMTUOptions{}, tc.floor)
			p := &fakePath{limit: tc.limit, device: tc.device}
			p.run(s, time.Unix(0, 0), 200)
			if got := s.mtu(); got != tc.want {
				t.Errorf("path MTU = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPMTUSearchConfirmsBeforeCounting(t *testing.T) {
	// A size answered once and then lost does not count: the path drops
	// at 1400 after the first answer of the largest size.
	s := newPMTUSearch(PMTUOptions{}, FloorIPv4)
	now := time.Unix(0, 0)
	answeredOnce := map[int]bool{}
	for range 200 {
		size, send := s.next(now)
		for send && size > 1500 {
			s.tooBig(size)
			size, send = s.next(now)
		}
		if send && (size <= 1400 || !answeredOnce[size]) {
			answeredOnce[size] = true
			s.answered(size)
		}
		now = now.Add(time.Second)
	}
	if got := s.mtu(); got != 1400 {
		t.Errorf("path MTU = %d, want 1400", got)
	}
}

func TestPMTUSearchFollowsAPathThatShrinksAndGrows(t *testing.T) {
	o := PMTUOptions{Check: 10 * time.Second, Raise: 10 * time.Minute}
	s := newPMTUSearch(o, FloorIPv4)
	p := &fakePath{limit: 1500, device: 1420}
	now := p.run(s, time.Unix(0, 0), 100)
	if got := s.mtu(); got != 1420 {
		t.Fatalf("path MTU = %d, want 1420", got)
	}
	// Narrowed: the checks of 1420 go unanswered, and the search runs
	// again below it, well before the raise timer.
	p.limit = 1340
	now = p.run(s, now, 3*10+60)
	if got := s.mtu(); got != 1340 {
		t.Fatalf("after the path shrank: path MTU = %d, want 1340", got)
	}
	// Widened again: nothing tells until the raise timer has run.
	p.limit = 1500
	now = p.run(s, now, 60)
	if got := s.mtu(); got != 1340 {
		t.Fatalf("a minute after the path grew: path MTU = %d, want 1340 (the raise timer has not run)", got)
	}
	p.run(s, now, 600+60)
	if got := s.mtu(); got != 1420 {
		t.Fatalf("after the raise timer: path MTU = %d, want 1420", got)
	}
}

func TestPMTUSearchNeverReportsAnUnconfirmedSize(t *testing.T) {
	// While it searches, the figure is the last one confirmed (or none):
	// never a size that was not answered.
	s := newPMTUSearch(PMTUOptions{}, FloorIPv4)
	p := &fakePath{limit: 1340, device: 1420}
	now := time.Unix(0, 0)
	for range 200 {
		now = p.run(s, now, 1)
		if got := s.mtu(); got > p.limit {
			t.Fatalf("reported %d over a path of %d", got, p.limit)
		}
	}
}

func TestDecodePMTUMessages(t *testing.T) {
	probe := message{kind: kindPMTURequest, seq: 5, sent: 6}.encodePadded(1372)
	if len(probe) != 1372 {
		t.Fatalf("padded probe is %d bytes, want 1372", len(probe))
	}
	if m, err := decode(probe); err != nil || m.kind != kindPMTURequest || m.seq != 5 || m.sent != 6 {
		t.Errorf("padded probe: %+v, %v", m, err)
	}
	reply := message{kind: kindPMTUReply, seq: 5, sent: 6}.encode()
	if m, err := decode(reply); err != nil || m.kind != kindPMTUReply || m.seq != 5 {
		t.Errorf("reply: %+v, %v", m, err)
	}
	// Only probes are padded: a padded reply or health probe is garbage.
	for _, k := range []byte{kindRequest, kindReply, kindPMTUReply} {
		if _, err := decode(message{kind: k}.encodePadded(100)); err == nil {
			t.Errorf("decoded a padded message of kind %d", k)
		}
	}
}

// TestPMTUSearchRetriesAFloorLostAtFirst: probes lost while the remote
// gateway's cable comes up do not leave the connection without a figure
// until the raise timer.
func TestPMTUSearchRetriesAFloorLostAtFirst(t *testing.T) {
	s := newPMTUSearch(PMTUOptions{}, FloorIPv4)
	p := &fakePath{limit: 0, device: 1420}
	now := p.run(s, time.Unix(0, 0), 10)
	if got := s.mtu(); got != 0 {
		t.Fatalf("path MTU = %d while nothing is answered", got)
	}
	p.limit = 1340
	p.run(s, now, 120)
	if got := s.mtu(); got != 1340 {
		t.Errorf("two minutes after the path came up: path MTU = %d, want 1340", got)
	}
}

// TestPMTUSearchRunsBetweenHeartbeats: the search keeps its own, shorter
// schedule. With heartbeats an hour apart (only the first one goes out
// while the test runs), two probers over loopback still finish their
// search: its probes do not wait for heartbeat rounds.
func TestPMTUSearchRunsBetweenHeartbeats(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ac, bc := listen(t), listen(t)
	o := Options{Interval: time.Hour, PMTU: &PMTUOptions{Max: 1500, SearchInterval: 10 * time.Millisecond}}
	a, b := NewProber(ac, o), NewProber(bc, o)
	a.SetTargets(map[string]netip.AddrPort{"b": addr(bc)})
	go func() { _ = a.Run(ctx) }()
	go func() { _ = b.Run(ctx) }()
	var last Result
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		last = a.Results()["b"]
		return last.PathMTU != 0, nil
	}); err != nil {
		t.Fatalf("no path MTU between heartbeats: last result %+v", last)
	}
	if last.PathMTU != 1500 {
		t.Errorf("path MTU over loopback = %d, want the search's maximum, 1500", last.PathMTU)
	}
}

func TestPMTUWait(t *testing.T) {
	for _, tc := range []struct {
		name           string
		interval, rtt  time.Duration
		search, expect time.Duration
	}{
		{"near: the search interval", time.Second, time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		{"far: four round trips", time.Second, 60 * time.Millisecond, 100 * time.Millisecond, 240 * time.Millisecond},
		{"very far: the heartbeat interval at most", time.Second, 400 * time.Millisecond, 100 * time.Millisecond, time.Second},
		{"heartbeats faster than the search interval", 20 * time.Millisecond, 0, 100 * time.Millisecond, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Prober{opts: Options{Interval: tc.interval, PMTU: &PMTUOptions{SearchInterval: tc.search}}}
			if got := p.pmtuWait(&target{result: Result{Max: tc.rtt}}); got != tc.expect {
				t.Errorf("pmtuWait = %v, want %v", got, tc.expect)
			}
		})
	}
}
