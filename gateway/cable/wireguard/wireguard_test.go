package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/cabletest"
)

// The test builds two "gateways", each in a throwaway network namespace,
// joined by a veth underlay, and runs the driver in each (this test binary,
// run again inside the namespace). Real WireGuard, real netlink: on this
// machine the userspace device, since the kernel has no WireGuard module.

const helperEnv = "STRAIT_WG_TEST_HELPER"

// testTable is the route table the tests open the driver with.
const testTable = 150

// helperSpec is what one side's helper process does.
type helperSpec struct {
	Interface string       `json:"interface"`
	Key       string       `json:"key"`
	Port      int          `json:"port"`
	Address   netip.Prefix `json:"address"` // the tunnel address on the device
	Peer      cable.Peer   `json:"peer"`
}

func TestMain(m *testing.M) {
	var s helperSpec
	cabletest.HelperMain(helperEnv, &s, func() (string, func(), error) {
		ctx := context.Background()
		d, err := Open(ctx, cable.Config{Interface: s.Interface, MTU: 1420, RouteTable: testTable, ListenPort: s.Port, PrivateKey: s.Key}, &Options{ForceUserspace: true})
		if err != nil {
			return "", nil, fmt.Errorf("open: %w", err)
		}
		// Twice: the second call must change nothing.
		for range 2 {
			if err := d.Set(ctx, []cable.Peer{s.Peer}); err != nil {
				d.Close()
				return "", nil, fmt.Errorf("set: %w", err)
			}
		}
		if err := setup(s.Interface, s.Address, s.Peer.Subnets); err != nil {
			d.Close()
			return "", nil, err
		}
		return fmt.Sprintf("userspace=%v pmtudisc=%s", d.Userspace(), pmtudiscOn(s.Port)), func() { d.Close() }, nil
	})
	os.Exit(m.Run())
}

// pmtudiscOn is the IP_MTU_DISCOVER mode of each UDP socket of this
// process bound to port, comma-separated in descriptor order.
func pmtudiscOn(port int) string {
	entries, _ := os.ReadDir("/proc/self/fd")
	var modes []string
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || !udpOnPort(fd, port) {
			continue
		}
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
		switch {
		case err != nil:
			modes = append(modes, err.Error())
		case v == unix.IP_PMTUDISC_DONT:
			modes = append(modes, "dont")
		case v == unix.IP_PMTUDISC_WANT:
			modes = append(modes, "want")
		case v == unix.IP_PMTUDISC_DO:
			modes = append(modes, "do")
		case v == unix.IP_PMTUDISC_PROBE:
			modes = append(modes, "probe")
		default:
			modes = append(modes, strconv.Itoa(v))
		}
	}
	return strings.Join(modes, ",")
}

// setup gives the device its tunnel address and sends the peer's subnets to
// Strait's table, as the gateway's data plane does.
func setup(dev string, addr netip.Prefix, subnets []netip.Prefix) error {
	if out, err := exec.Command("ip", "addr", "add", addr.String(), "dev", dev).CombinedOutput(); err != nil {
		return errors.New("address: " + string(out))
	}
	for _, sub := range subnets {
		fam := "-4"
		if sub.Addr().Is6() {
			fam = "-6"
		}
		if out, err := exec.Command("ip", fam, "rule", "add", "to", sub.String(), "lookup", fmt.Sprint(testTable)).CombinedOutput(); err != nil {
			return errors.New("rule: " + string(out))
		}
	}
	return nil
}

func TestTunnelBetweenNamespaces(t *testing.T) {
	cabletest.RequireRoot(t)
	a, b := cabletest.Pair(t, "stwgtest-")
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	// Userspace UAPI sockets share /var/run/wireguard across namespaces:
	// the two devices need distinct names.
	readyA, stopA := cabletest.Helper(t, a, helperEnv, helperSpec{Interface: "stwgta", Key: ka.String(), Port: 51901,
		Address: netip.MustParsePrefix("100.64.1.1/32"),
		Peer: cable.Peer{Name: "b", Endpoint: netip.MustParseAddrPort(cabletest.AddrB + ":51902"), PublicKey: kb.PublicKey().String(),
			Subnets: []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24")}}})
	readyB, stopB := cabletest.Helper(t, b, helperEnv, helperSpec{Interface: "stwgtb", Key: kb.String(), Port: 51902,
		Address: netip.MustParsePrefix("100.64.2.1/32"),
		Peer: cable.Peer{Name: "a", Endpoint: netip.MustParseAddrPort(cabletest.AddrA + ":51901"), PublicKey: ka.PublicKey().String(),
			Subnets: []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}, Keepalive: 5 * time.Second}})
	// The userspace device's sockets send with don't-fragment and ignore
	// the path MTU the kernel learns from ICMP (df.go): all of them.
	for _, r := range []string{readyA, readyB} {
		if !strings.HasPrefix(r, "userspace=true pmtudisc=probe") || strings.Contains(r, "want") || strings.Contains(r, "dont") {
			t.Fatalf("helper: %s, want the userspace device with every socket at IP_PMTUDISC_PROBE", r)
		}
	}

	// Traffic crosses the tunnel, including a packet larger than its MTU.
	cabletest.Run(t, "ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "100.64.2.1")
	cabletest.Run(t, "ip", "netns", "exec", a, "ping", "-c", "1", "-s", "3000", "-W", "2", "100.64.2.1")
	routes := cabletest.Run(t, "ip", "-n", a, "route", "show", "table", fmt.Sprint(testTable))
	if !strings.Contains(routes, "100.64.2.0/24 dev stwgta") {
		t.Errorf("table %d in %s:\n%s", testTable, a, routes)
	}
	if main := cabletest.Run(t, "ip", "-n", a, "route", "show"); strings.Contains(main, "100.64.2.0/24") {
		t.Errorf("a peer subnet leaked into the main table:\n%s", main)
	}

	// Closing the driver removes the device and its UAPI socket.
	stopA()
	stopB()
	if out, err := exec.Command("ip", "-n", a, "link", "show", "stwgta").CombinedOutput(); err == nil {
		t.Errorf("device still there after Close:\n%s", out)
	}
	if _, err := os.Stat("/var/run/wireguard/stwgta.sock"); !os.IsNotExist(err) {
		t.Errorf("UAPI socket left behind (%v)", err)
	}
}
