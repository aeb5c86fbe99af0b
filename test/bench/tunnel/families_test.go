package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/test/sandbox"
)

func TestParseFamilies(t *testing.T) {
	for _, tc := range []struct {
		flag    string
		want    string // names, comma-separated
		wantErr string
	}{
		{flag: "ipv4,ipv6", want: "ipv4,ipv6"},
		{flag: "ipv6,ipv4", want: "ipv4,ipv6"}, // knownFamilies' order
		{flag: "ipv6", want: "ipv6"},
		{flag: " ipv4 ", want: "ipv4"},
		{flag: defaultFamilies, want: "ipv4,ipv6"},
		{flag: "ipv4,ipv4", wantErr: "ipv4 named twice"},
		{flag: "dual", wantErr: `unknown name "dual"`},
		{flag: "", wantErr: `unknown name ""`},
		{flag: "ipv4,", wantErr: `unknown name ""`},
	} {
		fams, err := parseFamilies(tc.flag)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseFamilies(%q) = %v, %v; want an error with %q", tc.flag, fams, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseFamilies(%q): %v", tc.flag, err)
			continue
		}
		var names []string
		for _, f := range fams {
			names = append(names, f.Name)
		}
		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("parseFamilies(%q) = %s, want %s", tc.flag, got, tc.want)
		}
	}
	// IPv6 is measured in a dual-stack sandbox; IPv4 in an IPv4 one, as
	// before families.
	fams, _ := parseFamilies("ipv4,ipv6")
	if fams[0].Sandbox != sandbox.IPv4 || fams[0].Bits != 4 || fams[1].Sandbox != sandbox.Dual || fams[1].Bits != 6 {
		t.Errorf("families %+v", fams)
	}
}

func TestOfFamily(t *testing.T) {
	dual := []string{"10.1.0.5", "fd00:10:1::5"}
	for _, tc := range []struct {
		addrs   []string
		bits    int
		want    string
		wantErr bool
	}{
		{dual, 4, "10.1.0.5", false},
		{dual, 6, "fd00:10:1::5", false},
		{[]string{"fd00:10:1::5", "10.1.0.5"}, 4, "10.1.0.5", false}, // IPv6-primary
		{[]string{"10.1.0.5"}, 6, "", true},
		{[]string{"::ffff:10.1.0.5"}, 4, "::ffff:10.1.0.5", false}, // IPv4-mapped counts as IPv4
		{[]string{"garbage", "fd00::1"}, 6, "fd00::1", false},
		{nil, 4, "", true},
	} {
		got, err := ofFamily(tc.addrs, tc.bits)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ofFamily(%v, %d) = %q, %v; want %q (error %v)", tc.addrs, tc.bits, got, err, tc.want, tc.wantErr)
		}
	}
}

// benchState is the state of the bench's dataplane sandbox of a family
// (two clusters of three nodes, two gateway-capable, no NAT), from the
// sandbox's own plan.
func benchState(ipFamily string) *sandbox.State {
	o := sandbox.Options{Clusters: 2, Nodes: 3, GatewayNodes: 2, IPFamily: ipFamily}
	return &sandbox.State{Options: o, Clusters: sandbox.Plan(o)}
}

func TestBareEnds(t *testing.T) {
	for _, tc := range []struct {
		sandbox          string
		bits             int
		a, b, uA, uB     string
		underlay, podC1  string
		mtuWG, mtuVXLAN  int
		doesNotSayAnyway string
	}{
		{sandbox.IPv4, 4, "100.127.0.1", "100.127.0.2", "198.18.1.11", "198.18.2.11", "ipv4", "10.1.0.0/16", 1420, 1430,
			"IPv4 as before families: the addresses and MTUs the bench always had"},
		{sandbox.Dual, 6, "fd00:127::1", "fd00:127::2", "198.18.1.11", "198.18.2.11", "ipv4", "10.1.0.0/16,fd00:10:1::/48", 1420, 1430,
			"IPv6 in the dual sandbox: over IPv4, the gateways' first public address, as Strait's cable"},
		{sandbox.IPv6, 6, "fd00:127::1", "fd00:127::2", "2001:2::1:11", "2001:2::2:11", "ipv6", "fd00:10:1::/48", 1420, 1430,
			"IPv6-only: an IPv6 underlay, the same MTUs (sized for it)"},
	} {
		st := benchState(tc.sandbox)
		e, err := bareEndsOf(st, tc.bits)
		if err != nil {
			t.Errorf("%s: %v", tc.doesNotSayAnyway, err)
			continue
		}
		if e.A.String() != tc.a || e.B.String() != tc.b || e.UnderA.String() != tc.uA || e.UnderB.String() != tc.uB {
			t.Errorf("%s: ends %+v", tc.doesNotSayAnyway, e)
		}
		if got := familyName(e.UnderA); got != tc.underlay {
			t.Errorf("%s: underlay %s, want %s", tc.doesNotSayAnyway, got, tc.underlay)
		}
		if w, v := bareMTU("wireguard"), bareMTU("vxlan"); w != tc.mtuWG || v != tc.mtuVXLAN {
			t.Errorf("%s: MTUs wireguard %d vxlan %d, want %d %d", tc.doesNotSayAnyway, w, v, tc.mtuWG, tc.mtuVXLAN)
		}
		c1, err := clusterPlan(st, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if got := cidr.Join(c1.PodCIDRs); got != tc.podC1 {
			t.Errorf("%s: c1's pod CIDRs %q, want %q", tc.doesNotSayAnyway, got, tc.podC1)
		}
	}
	// The bare cable runs between n1s; a sandbox without them says so.
	o := sandbox.Options{Clusters: 1, Nodes: 1, GatewayNodes: 1}
	if _, err := bareEndsOf(&sandbox.State{Options: o, Clusters: sandbox.Plan(o)}, 4); err == nil || !strings.Contains(err.Error(), "no cluster c2") {
		t.Errorf("one cluster: %v", err)
	}
	o = sandbox.Options{Clusters: 2, Nodes: 1, GatewayNodes: 0}
	if _, err := bareEndsOf(&sandbox.State{Options: o, Clusters: sandbox.Plan(o)}, 4); err == nil || !strings.Contains(err.Error(), "no public address") {
		t.Errorf("no gateway-capable node: %v", err)
	}
}

func TestSetPairs(t *testing.T) {
	var r Result
	gw, base, ng := []float64{80, 90, 100}, []float64{100, 100, 100}, []float64{50, 70, 60}
	r.setPairs(gw, base, ng, LoadStats{Samples: 3, Max: 2})
	if !near(r.Ratio, 0.9) || !near(r.Gateway.Median, 0.9) || !near(r.StraitMbps, 90) || !near(r.BareMbps, 100) {
		t.Errorf("gateway: ratio %v median %v Mb/s %v vs %v", r.Ratio, r.Gateway.Median, r.StraitMbps, r.BareMbps)
	}
	if r.NonGateway == nil || !near(r.NonGatewayRatio, 0.6) || !near(r.NonGatewayMbps, 60) || r.NonGateway.Load.Max != 2 {
		t.Errorf("non-gateway: %+v, ratio %v", r.NonGateway, r.NonGatewayRatio)
	}
	// Three pairs are never conclusive (minPairs).
	if r.Gateway.Conclusive || r.NonGateway.Conclusive {
		t.Errorf("3 pairs called conclusive")
	}
	var tunnel Result
	tunnel.setPairs(gw, base, nil, LoadStats{})
	if tunnel.NonGateway != nil || tunnel.NonGatewayRatio != 0 {
		t.Errorf("tunnel suite has non-gateway figures: %+v", tunnel.NonGateway)
	}
}

// TestReport: the JSON keeps the keys it had before families (a reader of
// the IPv4 figures finds them where they were, first in "results") and
// says each result's family.
func TestReport(t *testing.T) {
	fams, _ := parseFamilies("ipv4,ipv6")
	o := options{pairs: 5, seconds: 5, kills: 10, freeze: 10 * time.Second, families: fams}
	var v4, v6 Result
	v4 = Result{Driver: "wireguard", Family: "ipv4", SandboxIPFamily: "ipv4", Underlay: "ipv4"}
	v4.setPairs([]float64{1, 1, 1, 1, 1}, []float64{2, 2, 2, 2, 2}, []float64{1, 1, 1, 1, 1}, LoadStats{})
	v4.Globalnet = &RatioStats{Median: 0.9}
	v6 = Result{Driver: "wireguard", Family: "ipv6", SandboxIPFamily: "dual", Underlay: "ipv4"}
	v6.setPairs([]float64{1, 1, 1, 1, 1}, []float64{4, 4, 4, 4, 4}, []float64{1, 1, 1, 1, 1}, LoadStats{})
	data, err := json.Marshal(report(time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC), o, LoadStats{}, []Result{v4, v6}))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Date     string   `json:"date"`
		Pairs    int      `json:"pairs"`
		Seconds  int      `json:"iperfSeconds"`
		Families []string `json:"families"`
		Rule     string   `json:"conclusiveRule"`
		Results  []map[string]any
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Date != "2026-12-02T13:00:00Z" || got.Pairs != 5 || got.Seconds != 5 || strings.Join(got.Families, ",") != "ipv4,ipv6" || got.Rule == "" {
		t.Errorf("report header: %+v", got)
	}
	if len(got.Results) != 2 {
		t.Fatalf("%d results", len(got.Results))
	}
	for i, want := range []struct {
		family, sandbox string
		ratio           float64
		globalnet       bool
	}{{"ipv4", "ipv4", 0.5, true}, {"ipv6", "dual", 0.25, false}} {
		r := got.Results[i]
		for _, k := range []string{"driver", "straitMbps", "bareMbps", "ratio", "gateway", "nonGatewayRatio", "nonGateway"} {
			if _, ok := r[k]; !ok {
				t.Errorf("result %d lacks %q: %v", i, k, r)
			}
		}
		if r["family"] != want.family || r["sandboxIpFamily"] != want.sandbox || r["underlay"] != "ipv4" || r["ratio"] != want.ratio {
			t.Errorf("result %d: family %v sandbox %v underlay %v ratio %v, want %s %s ipv4 %v", i, r["family"], r["sandboxIpFamily"], r["underlay"], r["ratio"], want.family, want.sandbox, want.ratio)
		}
		if _, ok := r["globalnet"]; ok != want.globalnet {
			t.Errorf("result %d: globalnet present %v, want %v", i, ok, want.globalnet)
		}
	}
}

func TestPrintSummary(t *testing.T) {
	fams, _ := parseFamilies("ipv4,ipv6")
	o := options{pairs: 1, seconds: 1, kills: 3, freeze: 3 * time.Second, families: fams}
	var results []Result
	for _, f := range []string{"ipv4", "ipv6"} {
		for _, d := range []string{"wireguard", "vxlan"} {
			r := Result{Driver: d, Family: f, Underlay: "ipv4", FailoverGapsMs: []float64{100, 200, 300}, FailoverGapMedianMs: 200,
				FailoverBrokerFrozen: &FrozenFailovers{CapMs: 3000, GapsMs: []float64{150}, MedianMs: 150}}
			r.setPairs([]float64{1}, []float64{2}, []float64{1}, LoadStats{})
			if f == "ipv4" {
				r.Globalnet = &RatioStats{Median: 0.9}
			}
			results = append(results, r)
		}
	}
	var b strings.Builder
	printSummary(&b, results, true, o, LoadStats{})
	out := b.String()
	for _, want := range []string{
		"wireguard ipv4  gateway / bare",
		"wireguard ipv6  non-gateway / bare",
		"vxlan ipv6      gateway / bare",
		"vxlan ipv4      Globalnet / non-overlap",
		"vxlan ipv6      kill -9 c1's gateway",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ipv6      Globalnet") {
		t.Errorf("summary has a Globalnet row for IPv6:\n%s", out)
	}
}

func TestPickDrivers(t *testing.T) {
	for _, tc := range []struct{ flag, want, wantErr string }{
		{flag: "vxlan", want: "vxlan"},
		{flag: "vxlan,wireguard", want: "wireguard,vxlan"},
		{flag: "wireguard,wireguard", wantErr: "wireguard named twice"},
		{flag: "ipsec", wantErr: `-drivers "ipsec": unknown name "ipsec": want wireguard or vxlan`},
	} {
		got, err := pick("-drivers", tc.flag, cableDrivers)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("pick(%q) = %v, %v; want an error with %q", tc.flag, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("pick(%q) = %v, %v; want %s", tc.flag, got, err, tc.want)
		}
	}
}
