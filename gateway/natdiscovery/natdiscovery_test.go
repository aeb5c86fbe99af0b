package natdiscovery

import (
	"context"
	"net"
	"net/netip"
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
