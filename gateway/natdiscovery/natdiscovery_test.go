package natdiscovery

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

func listen(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestChoosesTheAddressThatAnswers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The remote gateway answers on 127.0.0.2 only; 127.0.0.3 is a "private"
	// address nobody listens on, as across a NAT.
	remote := listen(t, "127.0.0.2:0")
	go func() { _ = New(remote).Run(ctx) }()
	port := remote.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	local := New(listen(t, "127.0.0.1:0"))
	go func() { _ = local.Run(ctx) }()

	silent := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port)
	public := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	local.SetTargets(map[string]Target{"r": {Private: silent, Public: public}})
	if a, ok := local.Choice("r"); ok || a != public.Addr() {
		t.Fatalf("before any answer: %v confirmed=%v, want the public address unconfirmed", a, ok)
	}
	// The bounds only keep a broken prober from hanging the test.
	var chosen netip.Addr
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		a, ok := local.Choice("r")
		chosen = a
		return ok, nil
	}); err != nil {
		t.Fatal("nothing confirmed")
	}
	if chosen != public.Addr() {
		t.Fatalf("chose %v, want the public %v (the private one is silent)", chosen, public.Addr())
	}

	// When the private address answers too, it wins.
	local.SetTargets(map[string]Target{"r": {Private: public, Public: silent}})
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		a, ok := local.Choice("r")
		return ok && a == public.Addr(), nil
	}); err != nil {
		a, ok := local.Choice("r")
		t.Fatalf("private address not chosen: %v %v", a, ok)
	}
	if _, ok := local.Choice("unknown"); ok {
		t.Error("an unknown target is confirmed")
	}
}

func TestIgnoresGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("STND"), make([]byte, 16), append([]byte("STND\x02\x01\x00\x00"), make([]byte, 9)...)} {
		if _, _, ok := decode(b); ok {
			t.Errorf("decoded %q", b)
		}
	}
	if k, id, ok := decode(encode(kindReply, 42)); !ok || k != kindReply || id != 42 {
		t.Error("round trip failed")
	}
}

// A reach prober keeps asking a target that answered: Answering lists it
// once it has answered for the steady time, and no more once it falls
// silent; an unknown or silent target is never listed.
func TestReachFollowsAnswers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rctx, stopRemote := context.WithCancel(ctx)
	remote := listen(t, "127.0.0.2:0")
	go func() { _ = New(remote).Run(rctx) }()
	port := remote.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	reach := NewReach(listen(t, "127.0.0.1:0"), 20*time.Millisecond)
	go func() { _ = reach.Run(ctx) }()
	reach.SetTargets(map[string]Target{
		"r":      {Private: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)},
		"silent": {Private: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port)},
	})
	// Listed once it has answered for 300 ms (ten rounds); not for an hour.
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		got := reach.Answering(300 * time.Millisecond)
		return slices.Equal(got, []string{"r"}), nil
	}); err != nil {
		t.Fatalf("answering %v, want [r]: a confirmed target is not asked again, or the silent one counts", reach.Answering(300*time.Millisecond))
	}
	if got := reach.Answering(time.Hour); len(got) != 0 {
		t.Fatalf("answering for an hour: %v, want none", got)
	}
	stopRemote()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return len(reach.Answering(0)) == 0, nil
	}); err != nil {
		t.Fatalf("answering %v after the remote stopped", reach.Answering(0))
	}
}

// Datagrams that are not NAT discovery messages go to SetOther's handler
// with their source, and Send answers from the NAT discovery port; NAT
// discovery requests on the same socket are still answered.
func TestOtherDatagramsShareThePort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := listen(t, "127.0.0.1:0")
	d := New(conn)
	got := make(chan string, 4)
	d.SetOther(func(b []byte, from netip.AddrPort) {
		got <- string(b)
		_ = d.Send([]byte("ack:"+string(b)), from)
	})
	go func() { _ = d.Run(ctx) }()
	peer := listen(t, "127.0.0.2:0")
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := peer.WriteToUDPAddrPort([]byte("STNA hello"), to); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "STNA hello" {
			t.Errorf("handler got %q", s)
		}
	case <-time.After(10 * time.Second): // bounds a broken reader only
		t.Fatal("the handler got nothing")
	}
	buf := make([]byte, 64)
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "ack:STNA hello" || from != to {
		t.Fatalf("answer %q from %v (%v), want ack:STNA hello from %v", buf[:n], from, err, to)
	}
	// A NAT discovery request is answered as before, not handed over.
	if _, err := peer.WriteToUDPAddrPort(encode(kindRequest, 7), to); err != nil {
		t.Fatal(err)
	}
	n, _, err = peer.ReadFromUDPAddrPort(buf)
	if k, id, ok := decode(buf[:n]); err != nil || !ok || k != kindReply || id != 7 {
		t.Fatalf("reply to a request: %q %v", buf[:n], err)
	}
	select {
	case s := <-got:
		t.Errorf("the handler got the request too: %q", s)
	default:
	}
}
