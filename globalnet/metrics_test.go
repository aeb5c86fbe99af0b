package globalnet

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// The pool series is the CIDR's allottable addresses; the allotment series
// follow the allocator: addresses held after it, and holders refused.
func TestMetrics(t *testing.T) {
	cidr := netip.MustParsePrefix("242.1.0.0/29") // 8 addresses, 6 allottable
	m := NewMetrics(cidr)
	a := &allocator{cfg: Config{GlobalCIDR: cidr}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: m}
	h := func(name string, n int) *holder {
		return &holder{key: "GlobalEgressIP/app/" + name, n: n,
			obj: &v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name}}}
	}
	a.allot([]*holder{h("a", 4), h("b", 3), h("c", 1)})
	want := `# HELP strait_globalnet_allocated_ips Global IPs allotted to ClusterGlobalEgressIPs, GlobalEgressIPs and GlobalIngressIPs, by the last allotment of the Lease holder.
# TYPE strait_globalnet_allocated_ips gauge
strait_globalnet_allocated_ips 5
# HELP strait_globalnet_exhausted_requests Objects the last allotment of the Lease holder gave no global IPs because the global CIDR had no run of free addresses long enough (condition IPPoolExhausted).
# TYPE strait_globalnet_exhausted_requests gauge
strait_globalnet_exhausted_requests 1
# HELP strait_globalnet_pool_ips Global IPs the cluster's global CIDR can allot (its addresses less the reserved ones at its start).
# TYPE strait_globalnet_pool_ips gauge
strait_globalnet_pool_ips 6
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n, err := testutil.CollectAndLint(m); err != nil || len(n) != 0 {
		t.Errorf("lint: %v %v", n, err)
	}
	for cidr, want := range map[string]float64{"242.0.0.0/8": 1<<24 - 2, "fd00:242::/64": 1<<64 - 2, "fd00:242::/126": 2} {
		if got := poolSize(netip.MustParsePrefix(cidr)); got != want {
			t.Errorf("pool of %s: %g, want %g", cidr, got, want)
		}
	}
}
