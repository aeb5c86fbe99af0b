package nodenet

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// leftoverTables are the packet-filter tables Leftovers looks for chains of
// ours in: every table a writer of ours uses, and raw, which none uses
// today but a chain of ChainPrefix there would still be ours.
var leftoverTables = []string{"filter", "nat", "mangle", "raw"}

// Leftovers returns every piece of Strait's state that the node k holds, one
// short line each, sorted (byte order):
//
//	1 route in table 152: 10.1.2.0/24 via 240.0.0.2 dev strait-overlay table 152
//	3 routes in table 151, first unreachable 10.2.0.0/16 table 151
//	chain filter STRAIT-FORWARD
//	chain nat STRAIT-POSTROUTING (ip6)
//	link strait-overlay
//	rule 151: from all to 10.2.0.0/16 lookup 151
//	rule 152: from all iif strait-cable lookup 152 (ip6)
//
// Links are CableDevice and OverlayDevice; rules those of GatewayPriority,
// RemotePriority or ReturnPriority, or of any priority looking up one of
// our tables; chains those whose names begin with ChainPrefix in the
// filter, nat, mangle and raw tables.
// A route line counts the routes of GatewayTable, RemoteTable or
// ReturnTable (the node's families) and shows the first in Route.String's order;
// rule and chain lines of IPv6 say "(ip6)" where the entry does not show
// its family. A clean node gives nil.
//
// It reads through k: links by name, the routes of our tables, the rules of
// k.Families() (a family the node lacks, or whose iptables tools are
// missing, is not read), and `iptables-save -t TABLE` of each of those
// families (its ":CHAIN" declaration lines). A table the packet filter does
// not have (iptables-save says it "does not exist") holds nothing; any
// other read error is returned, wrapped with what was read ("list inet
// rules: …", "save inet6 nat table: …"), and the others' errors joined with
// it, beside the lines the reads that worked found. A node of no family
// (k.Families() empty: on a real node, iptables-save and ip6tables-save
// are not installed) is an error too, since its rules and chains cannot be
// read; a clean answer would be a false one.
func Leftovers(k Kernel) ([]string, error) {
	var out []string
	var errs []error
	if len(k.Families()) == 0 {
		errs = append(errs, errors.New("rules and chains not read: the node has no address family whose iptables-save is installed"))
	}
	for _, name := range []string{CableDevice, OverlayDevice} {
		_, found, err := k.Link(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", name, err))
			continue
		}
		if found {
			out = append(out, "link "+name)
		}
	}
	tables := []int{GatewayTable, RemoteTable, ReturnTable}
	priorities := []int{GatewayPriority, RemotePriority, ReturnPriority}
	for _, t := range tables {
		rs, err := k.Routes(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("routes of table %d: %w", t, err))
			continue
		}
		if len(rs) == 0 {
			continue
		}
		first := slices.MinFunc(rs, func(a, b Route) int { return strings.Compare(a.String(), b.String()) })
		if len(rs) == 1 {
			out = append(out, fmt.Sprintf("1 route in table %d: %s", t, first))
		} else {
			out = append(out, fmt.Sprintf("%d routes in table %d, first %s", len(rs), t, first))
		}
	}
	for _, f := range k.Families() {
		rs, err := k.Rules(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s rules: %w", f, err))
			continue
		}
		for _, r := range rs {
			if slices.Contains(priorities, r.Priority) || slices.Contains(tables, r.Table) {
				out = append(out, ruleLine(f, r))
			}
		}
	}
	for _, f := range k.Families() {
		for _, table := range leftoverTables {
			save, err := k.Save(f, table)
			if err != nil {
				if strings.Contains(err.Error(), "does not exist") {
					continue
				}
				errs = append(errs, fmt.Errorf("save %s %s table: %w", f, table, err))
				continue
			}
			for l := range strings.Lines(save) {
				decl, ok := strings.CutPrefix(l, ":"+ChainPrefix)
				if !ok {
					continue
				}
				name, _, _ := strings.Cut(strings.TrimSpace(decl), " ")
				line := "chain " + table + " " + ChainPrefix + name
				if f == IPv6 {
					line += " (ip6)"
				}
				out = append(out, line)
			}
		}
	}
	slices.Sort(out)
	return out, errors.Join(errs...)
}

// ruleLine renders r as `ip rule` does, with its selectors, and "(ip6)"
// when nothing else in it shows the family.
func ruleLine(f Family, r Rule) string {
	sel := "from all"
	switch {
	case r.IIF != "":
		sel += " iif " + r.IIF
	case r.Dst.IsValid():
		sel += " to " + r.Dst.String()
	}
	line := fmt.Sprintf("rule %d: %s lookup %d", r.Priority, sel, r.Table)
	if f == IPv6 && !r.Dst.IsValid() {
		line += " (ip6)"
	}
	return line
}

// WireGuardSockets returns the userspace WireGuard control (UAPI) socket of
// the cable device, <dir>/<CableDevice>.sock, that dir holds (dir is
// WireGuardSocketDir on a node), as one line saying whether a process
// still listens on it:
//
//	wireguard socket /var/run/wireguard/strait-cable.sock (in use)
//	wireguard socket /var/run/wireguard/strait-cable.sock (stale: nothing listens)
//
// or "(not a socket)" for another kind of file of that name. A gateway
// killed with kill -9 leaves a stale one; a clean stop removes it. A
// missing dir or socket gives nil; errors are from reading the file
// (stat) or connecting to it, other than the refusal that makes it stale.
func WireGuardSockets(dir string) ([]string, error) {
	path := filepath.Join(dir, CableDevice+".sock")
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard socket: %w", err)
	}
	line := "wireguard socket " + path
	if st.Mode().Type() != fs.ModeSocket {
		return []string{line + " (not a socket)"}, nil
	}
	c, err := net.Dial("unix", path)
	switch {
	case err == nil:
		c.Close()
		return []string{line + " (in use)"}, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return []string{line + " (stale: nothing listens)"}, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil // removed meanwhile
	default:
		return nil, fmt.Errorf("wireguard socket: %w", err)
	}
}
