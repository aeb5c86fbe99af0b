package testpod

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
	"strait.dev/strait/pkg/probe"
)

// brokenRules is a node whose rules cannot be listed.
type brokenRules struct{ *nodenettest.Kernel }

func (brokenRules) Rules(nodenet.Family) ([]nodenet.Rule, error) {
	return nil, fmt.Errorf("netlink: %w", syscall.EPERM)
}

func TestRunNodeState(t *testing.T) {
	emptyDir := t.TempDir()
	sockDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sockDir, nodenet.CableDevice+".sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	overlay := func() nodenet.Kernel {
		k := &nodenettest.Kernel{}
		if err := k.AddLink(nodenet.Link{Name: nodenet.OverlayDevice, Local: netip.MustParseAddr("192.0.2.1"), MAC: "0a:00:00:00:00:01"}); err != nil {
			t.Fatal(err)
		}
		if err := k.AddFilterRule(nodenet.IPv6, "nat", nodenet.NATChain, "-j ACCEPT"); err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, tc := range []struct {
		name   string
		cfg    NodeStateConfig
		want   string // the JSON line
		failed bool
	}{
		{name: "clean", cfg: NodeStateConfig{Kernel: &nodenettest.Kernel{}, WireGuardDir: emptyDir},
			want: `{"ok":true,"found":[]}`},
		{name: "leftovers", cfg: NodeStateConfig{Kernel: overlay(), WireGuardDir: sockDir},
			want: `{"ok":false,"found":["chain nat STRAIT-POSTROUTING (ip6)","link strait-overlay","wireguard socket ` +
				filepath.Join(sockDir, "strait-cable.sock") + ` (not a socket)"]}`, failed: true},
		{name: "a failed read", cfg: NodeStateConfig{Kernel: brokenRules{&nodenettest.Kernel{}}, WireGuardDir: emptyDir},
			want:   `{"ok":false,"found":[],"error":"list inet rules: netlink: operation not permitted\nlist inet6 rules: netlink: operation not permitted"}`,
			failed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := RunNodeState(tc.cfg, &out)
			if got := strings.TrimSuffix(out.String(), "\n"); got != tc.want {
				t.Errorf("printed %s\nwant    %s", got, tc.want)
			}
			if errors.Is(err, ErrFailed) != tc.failed || (err != nil) != tc.failed {
				t.Errorf("error %v, want failed=%v", err, tc.failed)
			}
			// pkg/probe reads the same line into its mirror of the report.
			var mine NodeStateReport
			var theirs probe.NodeStateReport
			if err := json.Unmarshal(out.Bytes(), &mine); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out.Bytes(), &theirs); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(probe.NodeStateReport(mine), theirs) {
				t.Errorf("probe.NodeStateReport read %+v, want %+v", theirs, mine)
			}
		})
	}
}

// On a real node, clean and then with Strait's overlay device: node-state
// reads the network namespace it runs in.
func TestNodeStateInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a throwaway network namespace (testpod-nodestate)")
	}
	for _, bin := range []string{"ip", "iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
	ns := "testpod-nodestate"
	_ = exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	k, closeFn, err := nodenet.HostAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	cfg := NodeStateConfig{Kernel: k, WireGuardDir: t.TempDir()}
	if rep := NodeState(cfg); !rep.OK || len(rep.Found) != 0 {
		t.Errorf("clean namespace: %+v, want ok and nothing found", rep)
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "add", nodenet.OverlayDevice, "type", "vxlan", "id", "4100", "dstport", "4801").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	if rep := NodeState(cfg); rep.OK || strings.Join(rep.Found, "\n") != "link strait-overlay" || rep.Error != "" {
		t.Errorf("with the overlay device: %+v, want it found", rep)
	}
}
