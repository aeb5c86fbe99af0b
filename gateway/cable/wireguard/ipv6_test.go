package wireguard

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
)

// A WireGuard cable over an IPv6 underlay carries both inner families: the
// peers' endpoints are IPv6 addresses, the allowed IPs a subnet of each
// family, and pings of both families, one larger than the MTU, cross it.
func TestTunnelOverIPv6Underlay(t *testing.T) {
	cabletest.RequireRoot(t)
	a, b := cabletest.Pair(t, "stwg6test-")
	const underA, underB = "2001:db8:77::1", "2001:db8:77::2"
	cabletest.Run(t, "ip", "-n", a, "addr", "add", underA+"/64", "dev", "eth0", "nodad")
	cabletest.Run(t, "ip", "-n", b, "addr", "add", underB+"/64", "dev", "eth0", "nodad")
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	p := netip.MustParsePrefix
	_, stopA := cabletest.Helper(t, a, helperEnv, helperSpec{Interface: "stwg6a", Key: ka.String(), Port: 51903,
		Address: p("100.64.1.1/32"),
		Peer: cable.Peer{Name: "b", Endpoint: netip.MustParseAddrPort("[" + underB + "]:51904"), PublicKey: kb.PublicKey().String(),
			Subnets: []netip.Prefix{p("100.64.2.0/24"), p("fd64:2::/64")}}})
	_, stopB := cabletest.Helper(t, b, helperEnv, helperSpec{Interface: "stwg6b", Key: kb.String(), Port: 51904,
		Address: p("100.64.2.1/32"),
		Peer: cable.Peer{Name: "a", Endpoint: netip.MustParseAddrPort("[" + underA + "]:51903"), PublicKey: ka.PublicKey().String(),
			Subnets: []netip.Prefix{p("100.64.1.0/24"), p("fd64:1::/64")}}})
	t.Cleanup(func() { stopA(); stopB() })
	// The inner IPv6 addresses, as the gateway's data plane puts its
	// health-check addresses of each family on the device.
	cabletest.Run(t, "ip", "-n", a, "addr", "add", "fd64:1::1/128", "dev", "stwg6a", "nodad")
	cabletest.Run(t, "ip", "-n", b, "addr", "add", "fd64:2::1/128", "dev", "stwg6b", "nodad")
	for _, dst := range []string{"100.64.2.1", "fd64:2::1"} {
		cabletest.Run(t, "ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)
		cabletest.Run(t, "ip", "netns", "exec", a, "ping", "-c", "1", "-s", "3000", "-W", "2", dst)
	}
	routes := cabletest.Run(t, "ip", "-n", a, "-6", "route", "show", "table", fmt.Sprint(testTable))
	if !strings.Contains(routes, "fd64:2::/64 dev stwg6a") {
		t.Errorf("IPv6 table %d in %s:\n%s", testTable, a, routes)
	}
	if peers := cabletest.Run(t, "ip", "netns", "exec", a, "sh", "-c", "cat /proc/net/udp6"); !strings.Contains(strings.ToUpper(peers), fmt.Sprintf(":%04X", 51903)) {
		t.Errorf("no IPv6 UDP socket on port 51903 in %s:\n%s", a, peers)
	}
}
