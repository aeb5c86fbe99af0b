package gateway

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/announce"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

func newKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A standby of c2 (gw2) announces its takeover to c1's gateway: the
// announcement opens with the key c2's Endpoint lists for gw2, and gives an
// Endpoint for gw2 that wins over the old one; stale epochs, strangers and
// unknown clusters are refused.
func TestAnnouncedTakeover(t *testing.T) {
	mine, gw2 := newKey(t), newKey(t)
	old := remote("c2.gw", "c2", 3, func(s *v1.EndpointSpec) {
		s.Candidates = []v1.GatewayCandidate{{Hostname: "gw2", PrivateIPs: v1.DualStackIPs{"192.168.2.2"},
			PublicIPs: v1.DualStackIPs{"198.18.2.1"}, NATTraversal: true,
			WireGuard:      &v1.WireGuardConfig{PublicKey: gw2.PublicKey().String(), Port: 4500},
			HealthCheckIPs: v1.DualStackIPs{"10.2.1.1"}}}
	})
	eps := []v1.Endpoint{old, remote("c3.gw", "c3", 1, nil)}

	sealed, err := announce.Seal(announce.Message{Kind: announce.Takeover, ClusterID: "c2", Node: "gw2", Epoch: 4, Sent: time.Now()},
		announce.Key(gw2), announce.Key(mine.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := announce.Open(sealed, announce.Key(mine), candidateKeys(eps, "c1"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ep, err := announcedEndpoint(eps, "c1", m)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %s %v %v %t %s %v %v epoch %d candidates %s", ep.Name, ep.Spec.Hostname, ep.Spec.PrivateIPs, ep.Spec.PublicIPs,
		ep.Spec.NATTraversal, ep.Spec.WireGuard.PublicKey, ep.Spec.HealthCheckIPs, ep.Spec.Subnets, epoch(ep), candidatesOf(ep))
	want := fmt.Sprintf("c2.gw2 gw2 [192.168.2.2] [198.18.2.1] true %s [10.2.1.1] [10.2.0.0/16 10.102.0.0/16] epoch 4 candidates [c2.gw]",
		gw2.PublicKey())
	if got != want {
		t.Errorf("announced Endpoint\n got %s\nwant %s", got, want)
	}
	if chosen, _ := activeEndpoints(append(eps, ep), "c1"); len(chosen) != 2 || chosen[0].Name != "c2.gw2" {
		t.Errorf("activeEndpoints with the announced one chose %v", endpointNames(chosen))
	}

	// The same announcement again once the broker brought epoch 4: stale.
	newer := ep
	if _, err := announcedEndpoint([]v1.Endpoint{newer}, "c1", m); !errors.Is(err, errNotNewer) {
		t.Errorf("a replay of epoch 4 over an Endpoint of epoch 4: %v, want errNotNewer", err)
	}
	for name, m := range map[string]announce.Message{
		"an older epoch":     {ClusterID: "c2", Node: "gw2", Epoch: 2},
		"not a candidate":    {ClusterID: "c2", Node: "gw9", Epoch: 5},
		"an unknown cluster": {ClusterID: "c9", Node: "gw2", Epoch: 5},
		"its own cluster":    {ClusterID: "c1", Node: "gw2", Epoch: 5},
	} {
		if _, err := announcedEndpoint(append(eps, remote("c1.gw", "c1", 9, nil)), "c1", m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Only listed candidates have keys; the active gateway itself is not
	// one, nor is a candidate of another cluster.
	keys := candidateKeys(eps, "c1")
	if _, ok := keys("c2", "c2.gw"); ok {
		t.Error("a key for the active gateway's own Endpoint name")
	}
	if _, ok := keys("c3", "gw2"); ok {
		t.Error("a key for gw2 in c3, which lists no candidate")
	}
}

func candidatesOf(ep v1.Endpoint) string {
	var out []string
	for _, c := range ep.Spec.Candidates {
		out = append(out, c.Hostname)
	}
	return fmt.Sprint(out)
}

func endpointNames(eps []v1.Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Name)
	}
	return out
}
