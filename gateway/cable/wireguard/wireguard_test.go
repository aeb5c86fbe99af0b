package wireguard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/cable"
)

// The test builds two "gateways", each in a throwaway network namespace,
// joined by a veth pair, and runs the driver in each (this test binary, run
// again inside the namespace). Real WireGuard, real netlink: on this machine
// the userspace device, since the kernel has no WireGuard module.

const (
	helperEnv = "STRAIT_WG_TEST_HELPER"
	// Namespace names must not start with the sandbox's "strait-" prefix:
	// a sandbox taken down meanwhile would delete them.
	nsPrefix = "stwgtest-"
)

// helperSpec is what one side's helper process does.
type helperSpec struct {
	Interface string       `json:"interface"`
	Key       string       `json:"key"`
	Port      int          `json:"port"`
	Address   netip.Prefix `json:"address"` // the tunnel address on the device
	Peer      cable.Peer   `json:"peer"`
	Ready     string       `json:"ready"` // file to write when set up
	Userspace bool         `json:"userspace"`
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helper(spec))
	}
	os.Exit(m.Run())
}

// helper runs the driver in the current namespace until SIGTERM.
func helper(specJSON string) int {
	var s helperSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	d, err := Open(ctx, cable.Config{Interface: s.Interface, MTU: 1420, ListenPort: s.Port, PrivateKey: s.Key}, &Options{ForceUserspace: s.Userspace})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer d.Close()
	// Twice: the second call must change nothing.
	for range 2 {
		if err := d.Set(ctx, []cable.Peer{s.Peer}); err != nil {
			fmt.Fprintln(os.Stderr, "set:", err)
			return 1
		}
	}
	if out, err := exec.Command("ip", "addr", "add", s.Address.String(), "dev", s.Interface).CombinedOutput(); err != nil {
		fmt.Fprintln(os.Stderr, "address:", err, string(out))
		return 1
	}
	// The routes are in Strait's table; send the peer's subnets there.
	for _, sub := range s.Peer.Subnets {
		if out, err := exec.Command("ip", "rule", "add", "to", sub.String(), "lookup", fmt.Sprint(DefaultRouteTable)).CombinedOutput(); err != nil {
			fmt.Fprintln(os.Stderr, "rule:", err, string(out))
			return 1
		}
	}
	info := fmt.Sprintf("userspace=%v", d.Userspace())
	if err := os.WriteFile(s.Ready, []byte(info), 0o644); err != nil {
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	<-sigs
	return 0
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func netnsAdd(t *testing.T, name string) {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

func TestTunnelBetweenNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, TUN devices and routes")
	}
	a, b := nsPrefix+"a", nsPrefix+"b"
	netnsAdd(t, a)
	netnsAdd(t, b)
	// The "underlay": a veth pair, 192.0.2.0/24 (TEST-NET-1) inside our namespaces.
	run(t, "ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	run(t, "ip", "-n", a, "addr", "add", "192.0.2.1/24", "dev", "eth0")
	run(t, "ip", "-n", b, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	run(t, "ip", "-n", a, "link", "set", "eth0", "up")
	run(t, "ip", "-n", b, "link", "set", "eth0", "up")

	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	dir := t.TempDir()
	// Userspace UAPI sockets share /var/run/wireguard across namespaces:
	// the two devices need distinct names.
	sides := []struct {
		ns   string
		spec helperSpec
	}{
		{a, helperSpec{Interface: "stwgta", Key: ka.String(), Port: 51901, Address: netip.MustParsePrefix("100.64.1.1/32"),
			Peer: cable.Peer{Name: "b", Endpoint: netip.MustParseAddrPort("192.0.2.2:51902"), PublicKey: kb.PublicKey().String(),
				Subnets: []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24")}}}},
		{b, helperSpec{Interface: "stwgtb", Key: kb.String(), Port: 51902, Address: netip.MustParsePrefix("100.64.2.1/32"),
			Peer: cable.Peer{Name: "a", Endpoint: netip.MustParseAddrPort("192.0.2.1:51901"), PublicKey: ka.PublicKey().String(),
				Subnets: []netip.Prefix{netip.MustParsePrefix("100.64.1.0/24")}, Keepalive: 5 * time.Second}}},
	}
	var helpers []*exec.Cmd
	for i, s := range sides {
		s.spec.Ready = filepath.Join(dir, fmt.Sprintf("ready-%d", i))
		s.spec.Userspace = true
		spec, _ := json.Marshal(s.spec)
		cmd := exec.Command("ip", "netns", "exec", s.ns, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		helpers = append(helpers, cmd)
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("helper in %s: %s", s.ns, stderr.String())
			}
		})
		deadline := time.Now().Add(20 * time.Second)
		for {
			if data, err := os.ReadFile(s.spec.Ready); err == nil {
				if string(data) != "userspace=true" {
					t.Fatalf("%s: %s, want the userspace device", s.ns, data)
				}
				break
			}
			if time.Now().After(deadline) || (cmd.ProcessState != nil) {
				t.Fatalf("helper in %s did not get ready: %s", s.ns, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Traffic crosses the tunnel, including a packet larger than its MTU.
	run(t, "ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "100.64.2.1")
	run(t, "ip", "netns", "exec", a, "ping", "-c", "1", "-s", "3000", "-W", "2", "100.64.2.1")
	// It is encrypted on the underlay: only WireGuard's UDP port carries it.
	routes := run(t, "ip", "-n", a, "route", "show", "table", fmt.Sprint(DefaultRouteTable))
	if !strings.Contains(routes, "100.64.2.0/24 dev stwgta") {
		t.Errorf("table %d in %s:\n%s", DefaultRouteTable, a, routes)
	}
	if main := run(t, "ip", "-n", a, "route", "show"); strings.Contains(main, "100.64.2.0/24") {
		t.Errorf("a peer subnet leaked into the main table:\n%s", main)
	}

	// Stopping the driver removes the device and its UAPI socket.
	for _, h := range helpers {
		_ = h.Process.Signal(syscall.SIGTERM)
		_ = h.Wait()
	}
	if out, err := exec.Command("ip", "-n", a, "link", "show", "stwgta").CombinedOutput(); err == nil {
		t.Errorf("device still there after Close:\n%s", out)
	}
	if _, err := os.Stat("/var/run/wireguard/stwgta.sock"); !os.IsNotExist(err) {
		t.Errorf("UAPI socket left behind (%v)", err)
	}
}
