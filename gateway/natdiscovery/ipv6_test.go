package natdiscovery

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// NAT discovery over IPv6: a remote gateway answering on an IPv6 address
// alone (its IPv4 "private" address silent) is confirmed at that address,
// asked from a socket of both families, as the gateway binds it.
func TestDiscoveryOverIPv6(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	remote := listen(t, "[::1]:0")
	go func() { _ = New(remote).Run(ctx) }()
	port := remote.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	local := New(listen(t, "[::]:0"))
	go func() { _ = local.Run(ctx) }()

	silent := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), port)
	v6 := netip.AddrPortFrom(netip.IPv6Loopback(), port)
	for _, tg := range []Target{{Private: silent, Public: v6}, {Private: v6, Public: silent}} {
		local.SetTargets(map[string]Target{"r": tg})
		// The bounds only keep a broken prober from hanging the test.
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			a, ok := local.Choice("r")
			return ok && a == v6.Addr(), nil
		}); err != nil {
			a, ok := local.Choice("r")
			t.Fatalf("target %+v: chose %v confirmed=%v, want %v confirmed", tg, a, ok, v6.Addr())
		}
	}
}
