package gateway

import (
	"net/netip"
	"strings"
	"testing"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestGatewaySliceGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote []netip.Prefix
		health []netip.Addr
		want   string
	}{{
		name: "no remote cluster yet: empty exemption chains, jumped to",
		want: `# iptables-save
*nat
:STRAIT-GW-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait gateway" -j STRAIT-GW-POSTROUTING
COMMIT
# ip6tables-save
*nat
:STRAIT-GW-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait gateway" -j STRAIT-GW-POSTROUTING
COMMIT
`,
	}, {
		name:   "both families: a rule per subnet, the exemption per family, health-check host addresses on the cable",
		remote: prefixes("10.2.0.0/16", "fd02::/48", "10.102.7.7/16"),
		health: []netip.Addr{netip.MustParseAddr("10.2.255.254"), netip.MustParseAddr("fd02::fffe")},
		want: `# ip addr
inet 10.2.255.254/32 dev strait-cable
inet6 fd02::fffe/128 dev strait-cable
# ip rule
150:	from all to 10.102.0.0/16 lookup 150
150:	from all to 10.2.0.0/16 lookup 150
-6 150:	from all to fd02::/48 lookup 150
# iptables-save
*nat
:STRAIT-GW-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait gateway" -j STRAIT-GW-POSTROUTING
-A STRAIT-GW-POSTROUTING -d 10.2.0.0/16 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
-A STRAIT-GW-POSTROUTING -d 10.102.0.0/16 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
COMMIT
# ip6tables-save
*nat
:STRAIT-GW-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "strait gateway" -j STRAIT-GW-POSTROUTING
-A STRAIT-GW-POSTROUTING -d fd02::/48 -m comment --comment "strait: cross-cluster, no masquerade" -j ACCEPT
COMMIT
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gatewaySlice(tc.remote, tc.health).String(); got != tc.want {
				t.Errorf("slice:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// The gateway and another writer of the same node (shaped like the route
// agent: its rules at 151, its own nat chain, an address on the cable device
// is the gateway's only): each applies and removes its own slice, and
// neither touches the other's.
func TestGatewayAndAnotherWriterShareANode(t *testing.T) {
	k := &nodenettest.Kernel{Devices: []string{nodenet.CableDevice}}
	remote := prefixes("10.2.0.0/16")
	health := []netip.Addr{netip.MustParseAddr("10.2.255.254")}
	agentChain := nodenet.Chain{Family: nodenet.IPv4, Table: "nat", Name: nodenet.NATChain, From: "POSTROUTING", Comment: nodenet.RouteAgentJumpComment}
	agent := nodenet.Applier{Kernel: k, Scope: nodenet.Scope{Priorities: []int{nodenet.RemotePriority}, Tables: []nodenet.TableScope{{Table: nodenet.RemoteTable}},
		Chains: []nodenet.Chain{agentChain}}}
	agentChain.Rules = [][]string{{"-s", "10.2.0.0/16", "-j", "ACCEPT"}}
	ra := nodenet.State{
		Rules:  []nodenet.Rule{{Priority: nodenet.RemotePriority, Dst: remote[0], Table: nodenet.RemoteTable}},
		Routes: []nodenet.Route{{Table: nodenet.RemoteTable, Dst: remote[0], Unreachable: true}},
		Chains: []nodenet.Chain{agentChain},
	}
	if err := applyGatewaySliceTo(k, remote, health); err != nil {
		t.Fatal(err)
	}
	if err := agent.Apply(ra); err != nil {
		t.Fatal(err)
	}
	k.Log = nil
	if err := applyGatewaySliceTo(k, remote, health); err != nil {
		t.Fatal(err)
	}
	if err := agent.Apply(ra); err != nil {
		t.Fatal(err)
	}
	if len(k.Log) != 0 {
		t.Errorf("re-applying both slices changed:\n%s", strings.Join(k.Log, "\n"))
	}
	if err := agent.Remove(); err != nil {
		t.Fatal(err)
	}
	gw := gatewaySlice(remote, health)
	if got := k.State(gatewayScope().Chains); got.String() != gw.String() {
		t.Errorf("after the other writer's removal:\n%s\nwant the gateway's slice:\n%s", got, gw)
	}
	if err := agent.Apply(ra); err != nil {
		t.Fatal(err)
	}
	if err := removeGatewaySliceFrom(k); err != nil {
		t.Fatal(err)
	}
	if got := k.State(agent.Scope.Chains); got.String() != ra.String() {
		t.Errorf("after the gateway's removal:\n%s\nwant the other writer's slice:\n%s", got, ra)
	}
}
