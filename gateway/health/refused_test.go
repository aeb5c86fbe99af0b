package health

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A prober with Refused takes a target whose port stopped listening (an
// ICMP port unreachable) for an error at the next probe, not after Failures
// unanswered ones: here Failures is a million, so only the refusal can make
// the error. From a socket of each kind the heartbeats use: the dual-stack
// one on the unspecified address probing IPv4 and IPv6 targets, and an
// IPv4 one.
func TestProberRefusedIsAnErrorAtOnce(t *testing.T) {
	for _, tc := range []struct{ name, local, target string }{
		{"dual-stack socket, IPv4 target", "", "127.0.0.1:0"},
		{"dual-stack socket, IPv6 target", "", "[::1]:0"},
		{"IPv4 socket", "127.0.0.1:0", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ch, target, kill := proberAndKilledTarget(t, tc.local, tc.target, Options{Interval: 20 * time.Millisecond, Failures: 1_000_000, Refused: true})
			if !a.opts.Refused {
				t.Fatal("the socket took neither IP_RECVERR nor IPV6_RECVERR")
			}
			kill()
			waitStatus(t, ch, Error)
			if msg := a.Results()["b"].Message; !strings.Contains(msg, "refused") {
				t.Errorf("message %q does not say refused", msg)
			}

			// A prober at the same port again: connected again.
			bConn2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(target))
			if err != nil {
				t.Skipf("could not rebind %s: %v", target, err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = NewProber(bConn2, Options{Interval: time.Hour}).Run(ctx) }()
			waitStatus(t, ch, Connected)
		})
	}
}

// Without Refused a refused port is a missed probe like any other: the
// cable's health checks keep to the timeout. A probe's refusal arrives
// within a loopback round trip; after 20 probe intervals (each drawing
// one), the target is still connected with its million allowed failures.
func TestProberWithoutRefusedWaitsForFailures(t *testing.T) {
	a, _, _, kill := proberAndKilledTarget(t, "127.0.0.1:0", "127.0.0.1:0", Options{Interval: 10 * time.Millisecond, Failures: 1_000_000})
	kill()
	for range 20 {
		time.Sleep(10 * time.Millisecond)
	}
	if r := a.Results()["b"]; r.Status != Connected {
		t.Errorf("without Refused: %s %q, want still connected", r.Status, r.Message)
	}
}

// proberAndKilledTarget starts prober a with o on a socket bound to local
// ("" for the dual-stack unspecified address), and a prober b answering at
// target, which a probes; it returns once a reports b connected. kill
// stops b and closes its socket, as kill -9 would; b's address is returned.
func proberAndKilledTarget(t *testing.T, local, target string, o Options) (a *Prober, ch *changes, addrB netip.AddrPort, kill func()) {
	t.Helper()
	laddr := &net.UDPAddr{}
	if local != "" {
		laddr = net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local))
	}
	aConn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	bConn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(target)))
	if err != nil {
		t.Skipf("no %s here: %v", target, err)
	}
	ch = &changes{}
	o.OnChange = ch.add
	a = NewProber(aConn, o)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bctx, bcancel := context.WithCancel(ctx)
	bDone := make(chan struct{})
	go func() { _ = a.Run(ctx) }()
	go func() { defer close(bDone); _ = NewProber(bConn, Options{Interval: time.Hour}).Run(bctx) }()
	a.SetTargets(map[string]netip.AddrPort{"b": addr(bConn)})
	waitStatus(t, ch, Connected)
	return a, ch, addr(bConn), func() {
		bcancel()
		<-bDone
		_ = bConn.Close()
	}
}
