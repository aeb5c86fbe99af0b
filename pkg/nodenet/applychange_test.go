package nodenet_test

import (
	"net/netip"
	"testing"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/nodenet/nodenettest"
)

// savesCounted counts the packet filter's reads, the costly step.
type savesCounted struct {
	*nodenettest.Kernel
	saves int
}

func (k *savesCounted) Save(f nodenet.Family, table string) (string, error) {
	k.saves++
	return k.Kernel.Save(f, table)
}

// ApplyChange after a change of routes only (a failover: the next hop
// moves) applies the routes without reading the packet filter; a change of
// the chains syncs them as Apply does; Apply always reads them.
func TestApplyChangeLeavesUnchangedChainsUnread(t *testing.T) {
	k := &savesCounted{Kernel: &nodenettest.Kernel{}}
	a := nodenet.Applier{Kernel: k, Scope: nodenet.Scope{
		Priorities: []int{151}, Tables: []nodenet.TableScope{{Table: 151}},
		Chains: []nodenet.Chain{chain()},
	}}
	dst := netip.MustParsePrefix("10.2.0.0/16")
	state := func(via string, rules ...string) nodenet.State {
		return nodenet.State{
			Routes: []nodenet.Route{{Table: 151, Dst: dst, Via: netip.MustParseAddr(via)}},
			Rules:  []nodenet.Rule{{Priority: 151, Dst: dst, Table: 151}},
			Chains: []nodenet.Chain{chain(rules...)},
		}
	}
	first := state("192.168.1.11", "-d 10.2.0.0/16 -j ACCEPT")
	if err := a.Apply(first); err != nil {
		t.Fatal(err)
	}
	if k.saves == 0 {
		t.Fatal("Apply did not read the packet filter")
	}

	k.saves, k.Log = 0, nil
	moved := state("192.168.1.12", "-d 10.2.0.0/16 -j ACCEPT")
	if err := a.ApplyChange(first, moved); err != nil {
		t.Fatal(err)
	}
	if k.saves != 0 {
		t.Errorf("a change of routes only read the packet filter %d times", k.saves)
	}
	if got, _ := a.Read(); got.String() != moved.String() {
		t.Errorf("after ApplyChange the node holds\n%s\nwant\n%s", got, moved)
	}

	k.saves = 0
	more := state("192.168.1.12", "-d 10.2.0.0/16 -j ACCEPT", "-s 10.2.0.0/16 -j ACCEPT")
	if err := a.ApplyChange(moved, more); err != nil {
		t.Fatal(err)
	}
	if k.saves == 0 {
		t.Error("a change of the chains did not sync them")
	}
	if got, _ := a.Read(); got.String() != more.String() {
		t.Errorf("after a change of the chains the node holds\n%s\nwant\n%s", got, more)
	}
}
