package nodenet_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"strait.dev/strait/pkg/nodenet"
)

// counting is a Kernel that counts the calls that change something.
type counting struct {
	nodenet.Kernel
	changes atomic.Int64
	log     []string
}

func (c *counting) note(format string, args ...any) {
	c.changes.Add(1)
	c.log = append(c.log, fmt.Sprintf(format, args...))
}

func (c *counting) AddLink(l nodenet.Link) error { c.note("add %s", l); return c.Kernel.AddLink(l) }
func (c *counting) SetLink(l nodenet.Link) error { c.note("set %s", l); return c.Kernel.SetLink(l) }
func (c *counting) DelLink(n string) error       { c.note("del link %s", n); return c.Kernel.DelLink(n) }
func (c *counting) AddAddr(a nodenet.Addr) error { c.note("add %s", a); return c.Kernel.AddAddr(a) }
func (c *counting) DelAddr(a nodenet.Addr) error { c.note("del %s", a); return c.Kernel.DelAddr(a) }
func (c *counting) ReplaceRoute(r nodenet.Route) error {
	c.note("replace %s", r)
	return c.Kernel.ReplaceRoute(r)
}
func (c *counting) DelRoute(r nodenet.Route) error { c.note("del %s", r); return c.Kernel.DelRoute(r) }
func (c *counting) AddRule(r nodenet.Rule) error   { c.note("add %s", r); return c.Kernel.AddRule(r) }
func (c *counting) DelRule(r nodenet.Rule) error   { c.note("del %s", r); return c.Kernel.DelRule(r) }
func (c *counting) SetNeigh(n nodenet.Neigh) error { c.note("set %s", n); return c.Kernel.SetNeigh(n) }
func (c *counting) DelNeigh(n nodenet.Neigh) error { c.note("del %s", n); return c.Kernel.DelNeigh(n) }
func (c *counting) AppendFDB(e nodenet.FDBEntry) error {
	c.note("add %s", e)
	return c.Kernel.AppendFDB(e)
}
func (c *counting) DelFDB(e nodenet.FDBEntry) error { c.note("del %s", e); return c.Kernel.DelFDB(e) }
func (c *counting) SetSysctl(k, v string) error {
	c.note("sysctl %s=%s", k, v)
	return c.Kernel.SetSysctl(k, v)
}
func (c *counting) Restore(f nodenet.Family, s string) error {
	c.note("restore %d %q", f, s)
	return c.Kernel.Restore(f, s)
}

var _ nodenet.Kernel = (*counting)(nil)

// agentScope and gatewayScope are two writers on one node, as the route
// agent's and the gateway's (their packages build theirs the same way).
func chainsFor(comment string, names map[string][2]string, remote []netip.Prefix, mss int) []nodenet.Chain {
	var out []nodenet.Chain
	for _, f := range nodenet.Families {
		for _, table := range []string{"nat", "filter", "mangle"} {
			nf, ok := names[table]
			if !ok {
				continue
			}
			c := nodenet.Chain{Family: f, Table: table, Name: nf[0], From: nf[1], Comment: comment}
			for _, d := range remote {
				if nodenet.FamilyOf(d.Addr()) != f {
					continue
				}
				switch table {
				case "nat":
					c.Rules = append(c.Rules, []string{"-d", d.String(), "-m", "comment", "--comment", "strait: cross-cluster, no masquerade", "-j", "ACCEPT"})
				case "filter":
					c.Rules = append(c.Rules, []string{"-s", d.String(), "-j", "ACCEPT"}, []string{"-d", d.String(), "-j", "ACCEPT"})
				case "mangle":
					c.Rules = append(c.Rules, []string{"-d", d.String(), "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", fmt.Sprint(mss)})
				}
			}
			out = append(out, c)
		}
	}
	return out
}

var agentChains = map[string][2]string{"nat": {nodenet.NATChain, "POSTROUTING"}, "filter": {nodenet.ForwardChain, "FORWARD"}, "mangle": {nodenet.MSSChain, "FORWARD"}}
var gatewayChains = map[string][2]string{"nat": {nodenet.GatewayNATChain, "POSTROUTING"}}

func agentScope() nodenet.Scope {
	return nodenet.Scope{
		Links: []string{nodenet.OverlayDevice}, AddrDevs: []string{nodenet.OverlayDevice}, NeighDevs: []string{nodenet.OverlayDevice},
		Tables:     []nodenet.TableScope{{Table: nodenet.RemoteTable}, {Table: nodenet.ReturnTable}},
		Priorities: []int{nodenet.RemotePriority, nodenet.ReturnPriority},
		Chains:     chainsFor(nodenet.RouteAgentJumpComment, agentChains, nil, 0),
	}
}

func gatewayScope() nodenet.Scope {
	return nodenet.Scope{AddrDevs: []string{nodenet.CableDevice}, Priorities: []int{nodenet.GatewayPriority},
		Chains: chainsFor(nodenet.GatewayJumpComment, gatewayChains, nil, 0)}
}

var sysctlKeys = []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf." + nodenet.OverlayDevice + ".rp_filter"}

// agentState is a route agent's kind of state on node 192.168.1.13: gw is
// the active gateway's last byte (0: none, 13: this node), remote the
// remote subnets, mtu the overlay's.
func agentState(gw byte, remote []string, mtu int) nodenet.State {
	const ov = nodenet.OverlayDevice
	mac := func(b byte) string { return fmt.Sprintf("0a:53:c0:a8:01:%02x", b) }
	s := nodenet.State{
		Links: []nodenet.Link{{Name: ov, VNI: nodenet.OverlayVNI, Port: nodenet.OverlayPort, Local: netip.MustParseAddr("192.168.1.13"), MTU: mtu, MAC: mac(13)}},
		Addrs: []nodenet.Addr{{Dev: ov, Prefix: netip.MustParsePrefix("240.168.1.13/8")}, nodenet.HostAddr(ov, netip.MustParseAddr("10.1.1.1")),
			{Dev: ov, Prefix: netip.MustParsePrefix("fd53::13/64")}},
		Sysctls: []nodenet.Sysctl{{Key: sysctlKeys[0], Value: "1"}, {Key: sysctlKeys[1], Value: "1"}, {Key: sysctlKeys[2], Value: "2"}},
	}
	var rs []netip.Prefix
	for _, r := range remote {
		rs = append(rs, netip.MustParsePrefix(r))
	}
	via := func(d netip.Prefix, b byte) netip.Addr {
		if d.Addr().Is4() {
			return netip.AddrFrom4([4]byte{240, 168, 1, b})
		}
		return netip.MustParseAddr(fmt.Sprintf("fd53::%x", b))
	}
	for _, d := range rs {
		s.Rules = append(s.Rules, nodenet.Rule{Priority: nodenet.RemotePriority, Dst: d, Table: nodenet.RemoteTable})
		switch gw {
		case 0, 13:
			s.Routes = append(s.Routes, nodenet.Route{Table: nodenet.RemoteTable, Dst: d, Unreachable: true})
		default:
			r := nodenet.Route{Table: nodenet.RemoteTable, Dst: d, Via: via(d, gw), Dev: ov, MTU: mtu - 30}
			if d.Addr().Is4() {
				r.Src = netip.MustParseAddr("10.1.1.1")
			}
			s.Routes = append(s.Routes, r)
		}
	}
	switch gw {
	case 0:
	case 13:
		for _, f := range nodenet.Families {
			s.Rules = append(s.Rules, nodenet.Rule{Priority: nodenet.ReturnPriority, Family: f, IIF: nodenet.CableDevice, Table: nodenet.ReturnTable})
		}
		for _, b := range []byte{11, 12} {
			s.Routes = append(s.Routes, nodenet.Route{Table: nodenet.ReturnTable, Dst: netip.MustParsePrefix(fmt.Sprintf("10.1.%d.0/24", b)), Via: via(netip.MustParsePrefix("10.0.0.0/8"), b), Dev: ov, MTU: mtu - 30})
			s.Neighs = append(s.Neighs, nodenet.Neigh{Dev: ov, IP: via(netip.MustParsePrefix("10.0.0.0/8"), b), MAC: mac(b)})
			s.FDB = append(s.FDB, nodenet.FDBEntry{Dev: ov, MAC: mac(b), Dst: netip.AddrFrom4([4]byte{192, 168, 1, b})})
		}
		s.Neighs = append(s.Neighs, nodenet.Neigh{Dev: ov, IP: netip.MustParseAddr("10.1.1.200"), Proxy: true},
			nodenet.Neigh{Dev: ov, IP: netip.MustParseAddr("fd01::200"), Proxy: true})
	default:
		s.Neighs = append(s.Neighs, nodenet.Neigh{Dev: ov, IP: via(netip.MustParsePrefix("10.0.0.0/8"), gw), MAC: mac(gw)},
			nodenet.Neigh{Dev: ov, IP: via(netip.MustParsePrefix("fd00::/8"), gw), MAC: mac(gw)})
		s.FDB = append(s.FDB, nodenet.FDBEntry{Dev: ov, MAC: mac(gw), Dst: netip.AddrFrom4([4]byte{192, 168, 1, gw})})
	}
	s.Chains = chainsFor(nodenet.RouteAgentJumpComment, agentChains, rs, mtu-70)
	return s
}

func gatewayState(remote []string, health ...string) nodenet.State {
	var rs []netip.Prefix
	for _, r := range remote {
		rs = append(rs, netip.MustParsePrefix(r))
	}
	s := nodenet.State{Chains: chainsFor(nodenet.GatewayJumpComment, gatewayChains, rs, 0)}
	for _, d := range rs {
		s.Rules = append(s.Rules, nodenet.Rule{Priority: nodenet.GatewayPriority, Dst: d, Table: nodenet.GatewayTable})
	}
	for _, h := range health {
		s.Addrs = append(s.Addrs, nodenet.HostAddr(nodenet.CableDevice, netip.MustParseAddr(h)))
	}
	return s
}

// Desired states applied in random order to a real namespace converge to
// the last one: the kernel, read back, renders as the State does; applying
// it again changes nothing; the two writers never remove each other's
// entries; Remove leaves nothing of the writer's.
func TestReplayConvergesInNetns(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t, "replay")
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	// veth pairs stand for the devices (this kernel may lack dummy).
	run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	run(t, "ip", "-n", ns, "link", "set", "eth0p", "up")
	run(t, "ip", "-n", ns, "addr", "add", "192.168.1.13/24", "dev", "eth0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", ns, "link", "add", nodenet.CableDevice, "type", "veth", "peer", "name", "cablep") // the cable driver's
	run(t, "ip", "-n", ns, "link", "set", nodenet.CableDevice, "up")
	k := &counting{Kernel: hostAt(t, ns)}
	agent := &nodenet.Applier{Kernel: k, Scope: agentScope()}
	gateway := &nodenet.Applier{Kernel: k, Scope: gatewayScope()}

	var agentStates, gwStates []nodenet.State
	for _, gw := range []byte{0, 11, 12, 13} {
		for _, remote := range [][]string{nil, {"10.2.0.0/16"}, {"10.2.0.0/16", "10.102.0.0/16", "fd02::/48"}, {"10.3.0.0/16", "fd03::/48"}} {
			for _, mtu := range []int{1450, 1400} {
				agentStates = append(agentStates, agentState(gw, remote, mtu))
			}
		}
	}
	for _, remote := range [][]string{nil, {"10.2.0.0/16"}, {"10.2.0.0/16", "fd02::/48"}} {
		gwStates = append(gwStates, gatewayState(remote), gatewayState(remote, "10.2.255.254", "fd02::fffe"))
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	check := func(a *nodenet.Applier, want nodenet.State, keys ...string) {
		t.Helper()
		got, err := a.Read(keys...)
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("kernel:\n%s\nwant:\n%s", got, want)
		}
	}
	// Three rounds, each ending on its target: the two richest states
	// (both families, proxy entries, iif rules), then a random one.
	rich := []string{"10.2.0.0/16", "10.102.0.0/16", "fd02::/48"}
	var lastA, lastG nodenet.State
	for round, target := range []nodenet.State{agentState(13, rich, 1400), agentState(12, rich, 1450), agentStates[r.IntN(len(agentStates))]} {
		for i := range 15 {
			if err := agent.Apply(agentStates[r.IntN(len(agentStates))]); err != nil {
				t.Fatalf("round %d, apply %d: %v", round, i, err)
			}
			if i%3 == 0 {
				lastG = gwStates[r.IntN(len(gwStates))]
				if err := gateway.Apply(lastG); err != nil {
					t.Fatalf("round %d, apply gateway %d: %v\n%s", round, i, err, lastG)
				}
			}
		}
		lastA = target
		if err := agent.Apply(lastA); err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, lastA)
		}
		check(agent, lastA, sysctlKeys...)
		check(gateway, lastG)
	}

	k.changes.Store(0)
	k.log = nil
	if err := agent.Apply(lastA); err != nil {
		t.Fatal(err)
	}
	if err := gateway.Apply(lastG); err != nil {
		t.Fatal(err)
	}
	if n := k.changes.Load(); n != 0 {
		t.Errorf("applying the converged states again made %d changes:\n%s", n, strings.Join(k.log, "\n"))
	}

	if err := agent.Remove(); err != nil {
		t.Fatal(err)
	}
	check(agent, nodenet.State{})
	check(gateway, lastG)
	if err := gateway.Remove(); err != nil {
		t.Fatal(err)
	}
	check(gateway, nodenet.State{})
	if save := run(t, "ip", "netns", "exec", ns, "iptables-save"); strings.Contains(save, "STRAIT") {
		t.Errorf("iptables after Remove:\n%s", save)
	}
}
