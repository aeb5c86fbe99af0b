package nodenet_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

// An empty node holds nothing of Strait's; each kind of entry of ours is
// one line, and entries of others (a CNI's link, table, rule and chain) are
// left out.
func TestLeftovers(t *testing.T) {
	ov := nodenet.Link{Name: nodenet.OverlayDevice, VNI: nodenet.OverlayVNI, Port: nodenet.OverlayPort,
		Local: netip.MustParseAddr("192.0.2.1"), MTU: 1450, MAC: "0a:00:00:00:00:01"}
	cable := nodenet.Link{Name: nodenet.CableDevice, Local: netip.MustParseAddr("192.0.2.1"), MTU: 1420, MAC: "0a:00:00:00:00:02"}
	for _, tc := range []struct {
		name string
		make func(k *nodenettest.Kernel) error
		want []string
	}{
		{name: "empty node", make: func(*nodenettest.Kernel) error { return nil }},
		{name: "others' entries only", make: func(k *nodenettest.Kernel) error {
			return errors.Join(
				k.AddLink(nodenet.Link{Name: "flannel.1", Local: netip.MustParseAddr("192.0.2.1"), MAC: "0a:00:00:00:00:09"}),
				k.AddRule(nodenet.Rule{Priority: 200, Dst: netip.MustParsePrefix("10.9.0.0/16"), Table: 100}),
				k.ReplaceRoute(nodenet.Route{Table: 100, Dst: netip.MustParsePrefix("10.9.0.0/16"), Unreachable: true}),
				k.AddFilterRule(nodenet.IPv4, "nat", "KUBE-POSTROUTING", "-j MASQUERADE"),
			)
		}},
		{name: "overlay link", make: func(k *nodenettest.Kernel) error { return k.AddLink(ov) },
			want: []string{"link strait-overlay"}},
		{name: "cable link", make: func(k *nodenettest.Kernel) error { return k.AddLink(cable) },
			want: []string{"link strait-cable"}},
		{name: "rules of each priority and family", make: func(k *nodenettest.Kernel) error {
			return errors.Join(
				k.AddRule(nodenet.Rule{Priority: nodenet.GatewayPriority, Dst: netip.MustParsePrefix("10.2.0.0/16"), Table: nodenet.GatewayTable}),
				k.AddRule(nodenet.Rule{Priority: nodenet.RemotePriority, Dst: netip.MustParsePrefix("fd02::/48"), Table: nodenet.RemoteTable}),
				k.AddRule(nodenet.Rule{Priority: nodenet.ReturnPriority, Family: nodenet.IPv6, IIF: nodenet.CableDevice, Table: nodenet.ReturnTable}),
				// Another writer's priority pointing at one of our tables.
				k.AddRule(nodenet.Rule{Priority: 300, Dst: netip.MustParsePrefix("10.3.0.0/16"), Table: nodenet.RemoteTable}),
			)
		}, want: []string{
			"rule 150: from all to 10.2.0.0/16 lookup 150",
			"rule 151: from all to fd02::/48 lookup 151",
			"rule 152: from all iif strait-cable lookup 152 (ip6)",
			"rule 300: from all to 10.3.0.0/16 lookup 151",
		}},
		{name: "routes: one line per table that holds any", make: func(k *nodenettest.Kernel) error {
			return errors.Join(
				k.ReplaceRoute(nodenet.Route{Table: nodenet.RemoteTable, Dst: netip.MustParsePrefix("10.3.0.0/16"), Unreachable: true}),
				k.ReplaceRoute(nodenet.Route{Table: nodenet.RemoteTable, Dst: netip.MustParsePrefix("10.2.0.0/16"), Unreachable: true}),
				k.ReplaceRoute(nodenet.Route{Table: nodenet.RemoteTable, Dst: netip.MustParsePrefix("fd02::/48"), Unreachable: true}),
				k.ReplaceRoute(nodenet.Route{Table: nodenet.ReturnTable, Dst: netip.MustParsePrefix("10.1.2.0/24"), Unreachable: true}),
			)
		}, want: []string{
			"1 route in table 152: unreachable 10.1.2.0/24 table 152",
			"3 routes in table 151, first unreachable 10.2.0.0/16 table 151",
		}},
		{name: "chains of every table and family", make: func(k *nodenettest.Kernel) error {
			var errs []error
			for _, f := range nodenet.Families {
				for _, tbl := range []string{"filter", "nat", "mangle", "raw"} {
					errs = append(errs, k.AddFilterRule(f, tbl, nodenet.ChainPrefix+strings.ToUpper(tbl), "-j ACCEPT"))
				}
			}
			return errors.Join(errs...)
		}, want: []string{
			"chain filter STRAIT-FILTER", "chain filter STRAIT-FILTER (ip6)",
			"chain mangle STRAIT-MANGLE", "chain mangle STRAIT-MANGLE (ip6)",
			"chain nat STRAIT-NAT", "chain nat STRAIT-NAT (ip6)",
			"chain raw STRAIT-RAW", "chain raw STRAIT-RAW (ip6)",
		}},
		{name: "a node without IPv6 is read for IPv4 only", make: func(k *nodenettest.Kernel) error {
			k.Absent = []nodenet.Family{nodenet.IPv6}
			return k.AddFilterRule(nodenet.IPv4, "filter", nodenet.ForwardChain, "-j ACCEPT")
		}, want: []string{"chain filter STRAIT-FORWARD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &nodenettest.Kernel{}
			if err := tc.make(k); err != nil {
				t.Fatal(err)
			}
			got, err := nodenet.Leftovers(k)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Leftovers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// failing is a Kernel whose rule listing fails, and whose packet filter
// lacks the raw table, as iptables-nft reports it.
type failing struct{ *nodenettest.Kernel }

func (failing) Rules(f nodenet.Family) ([]nodenet.Rule, error) {
	return nil, fmt.Errorf("netlink: %w", syscall.EPERM)
}

func (k failing) Save(f nodenet.Family, table string) (string, error) {
	if table == "raw" {
		return "", fmt.Errorf("iptables-save -t raw: exit status 1: Table `raw' does not exist")
	}
	return k.Kernel.Save(f, table)
}

// A read that fails is returned, naming what was read, beside the lines
// the other reads found; a table the node lacks is not an error.
func TestLeftoversErrors(t *testing.T) {
	k := failing{&nodenettest.Kernel{}}
	if err := k.AddLink(nodenet.Link{Name: nodenet.OverlayDevice, Local: netip.MustParseAddr("192.0.2.1"), MAC: "0a:00:00:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	got, err := nodenet.Leftovers(k)
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "list inet rules") {
		t.Fatalf("error %v, want EPERM naming the inet rules", err)
	}
	if strings.Contains(err.Error(), "raw") {
		t.Errorf("a missing raw table is an error: %v", err)
	}
	if strings.Join(got, "\n") != "link strait-overlay" {
		t.Errorf("found %q beside the error, want the overlay link", got)
	}
}

// A node on which no family can be read (no iptables-save at all) is not
// reported clean.
func TestLeftoversNoFamily(t *testing.T) {
	k := &nodenettest.Kernel{Absent: nodenet.Families}
	if got, err := nodenet.Leftovers(k); err == nil || !strings.Contains(err.Error(), "not read") {
		t.Errorf("Leftovers = %q, %v; want an error saying rules and chains were not read", got, err)
	}
}

// The UAPI socket of the cable device counts, with whether a process
// still listens on it; a missing directory or socket is nothing.
func TestWireGuardSockets(t *testing.T) {
	dir := t.TempDir()
	if got, err := nodenet.WireGuardSockets(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("missing dir: %q, %v; want nothing", got, err)
	}
	if got, err := nodenet.WireGuardSockets(dir); err != nil || got != nil {
		t.Errorf("empty dir: %q, %v; want nothing", got, err)
	}
	// Another interface's socket is not ours.
	if err := os.WriteFile(filepath.Join(dir, "wg0.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, nodenet.CableDevice+".sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := nodenet.WireGuardSockets(dir)
	if want := "wireguard socket " + path + " (in use)"; err != nil || strings.Join(got, "\n") != want {
		t.Errorf("listened on: %q, %v; want %q", got, err, want)
	}
	// A killed gateway leaves the socket file behind with nobody on it.
	l.SetUnlinkOnClose(false)
	l.Close()
	got, err = nodenet.WireGuardSockets(dir)
	if want := "wireguard socket " + path + " (stale: nothing listens)"; err != nil || strings.Join(got, "\n") != want {
		t.Errorf("stale: %q, %v; want %q", got, err, want)
	}
}
