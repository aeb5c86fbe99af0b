package diagnose

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/probe"

	// The gateway's own NAT discovery answers the request diagnose sends:
	// the wire format has one authority. (Tests may import components.)
	"strait.dev/strait/gateway/natdiscovery"
)

func TestNATDiscoveryRequestIsAnsweredByTheGateway(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := natdiscovery.New(conn)
	go func() { _ = d.Run(ctx) }()
	defer conn.Close()

	c, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := NATDiscoveryRequest(0x0102030405060708)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("the gateway's NAT discovery did not answer diagnose's request: %v", err)
	}
	reply := buf[:n]
	if !bytes.HasPrefix(reply, natDiscoveryReplyPrefix) || !bytes.Equal(reply[8:], req[8:]) {
		t.Fatalf("reply % x to request % x: want prefix % x and the request's ID", reply, req, natDiscoveryReplyPrefix)
	}
}

func cluster(id string, cidrs ...string) v1.Cluster {
	c := v1.Cluster{Spec: v1.ClusterSpec{ClusterID: v1.ClusterID(id)}}
	for i, s := range cidrs {
		if i == 0 {
			c.Spec.PodCIDRs = append(c.Spec.PodCIDRs, v1.CIDR(s))
		} else {
			c.Spec.ServiceCIDRs = append(c.Spec.ServiceCIDRs, v1.CIDR(s))
		}
	}
	return c
}

func TestOverlaps(t *testing.T) {
	global := cluster("g", "10.1.0.0/16", "10.101.0.0/16")
	global.Spec.GlobalCIDRs = []v1.CIDR{"242.0.0.0/16"}
	global2 := cluster("h", "10.1.0.0/16", "10.101.0.0/16")
	global2.Spec.GlobalCIDRs = []v1.CIDR{"242.1.0.0/16"}
	global3 := cluster("h", "10.1.0.0/16", "10.101.0.0/16")
	global3.Spec.GlobalCIDRs = []v1.CIDR{"242.0.128.0/17"}
	for _, tc := range []struct {
		name     string
		clusters []v1.Cluster
		want     []string
	}{
		{"disjoint", []v1.Cluster{cluster("a", "10.1.0.0/16", "10.101.0.0/16"), cluster("b", "10.2.0.0/16", "10.102.0.0/16")}, nil},
		{"same pod CIDR", []v1.Cluster{cluster("a", "10.1.0.0/16", "10.101.0.0/16"), cluster("b", "10.1.0.0/16", "10.102.0.0/16")},
			[]string{"a 10.1.0.0/16 and b 10.1.0.0/16"}},
		{"pod CIDR inside the other's service CIDR", []v1.Cluster{cluster("a", "10.1.0.0/16", "10.96.0.0/12"), cluster("b", "10.100.0.0/16", "10.200.0.0/16")},
			[]string{"a 10.96.0.0/12 and b 10.100.0.0/16"}},
		{"IPv6", []v1.Cluster{cluster("a", "fd00:10:1::/56", "fd00:100::/108"), cluster("b", "fd00:10:1:1::/64", "fd00:200::/108")},
			[]string{"a fd00:10:1::/56 and b fd00:10:1:1::/64"}},
		{"a Globalnet and a plain cluster that overlap", []v1.Cluster{cluster("a", "10.1.0.0/16", "10.102.0.0/16"), global},
			[]string{"a 10.1.0.0/16 and g 10.1.0.0/16"}},
		{"two Globalnet clusters may share pod and service CIDRs", []v1.Cluster{global, global2}, nil},
		{"but not global CIDRs", []v1.Cluster{global, global3}, []string{"g 242.0.0.0/16 and h 242.0.128.0/17"}},
		{"three, one pair", []v1.Cluster{cluster("a", "10.1.0.0/16", "10.101.0.0/16"), cluster("b", "10.2.0.0/16", "10.102.0.0/16"),
			cluster("c", "10.3.0.0/16", "10.102.128.0/17")}, []string{"b 10.102.0.0/16 and c 10.102.128.0/17"}},
	} {
		if got := Overlaps(tc.clusters); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestUncoveredCIDRs(t *testing.T) {
	p := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	for _, tc := range []struct {
		joined string
		have   []netip.Prefix
		want   string
	}{
		{"10.1.0.0/16", p("10.1.0.0/16"), ""},
		{"10.1.0.0/16,fd00::/64", p("fd00::/64", "10.1.0.0/16"), ""},
		{"10.1.0.0/16", p("10.1.0.0/24", "10.1.1.0/24"), ""}, // node pod CIDRs of a joined /16
		{"10.1.0.0/17", p("10.1.0.0/16"), "10.1.0.0/16"},
		{"10.1.0.0/16", p("10.1.0.0/16", "10.2.0.0/16"), "10.2.0.0/16"},
		{"", p("10.1.0.0/16"), "10.1.0.0/16"},
		{"10.1.0.0/16", p("fd00::/64"), "fd00::/64"},
	} {
		if got := prefixes(uncovered(tc.joined, tc.have)); got != tc.want {
			t.Errorf("uncovered(%q, %v) = %q, want %q", tc.joined, tc.have, got, tc.want)
		}
	}
}

func TestReportErrNamesFailedChecks(t *testing.T) {
	r := &Report{Results: []Result{
		{Check: CheckCables, Where: "c1 -> c2", Result: OK},
		{Check: CheckNATDiscovery, Where: "c2 -> c1", Result: Fail},
		{Check: CheckPublicIP, Where: "c3", Result: Warn},
	}}
	err := r.Err()
	if err == nil || err.Error() != "1 of 3 checks failed: nat-discovery c2 -> c1" {
		t.Fatalf("Err() = %v", err)
	}
	r.Results[1].Result = Warn
	if err := r.Err(); err != nil {
		t.Fatalf("warnings only: %v", err)
	}
}

func TestFlagValue(t *testing.T) {
	args := []string{"--cluster-id=c1", "-underlay-mtu", "1400", "--v=2"}
	if v, ok := flagValue(args, "underlay-mtu"); !ok || v != "1400" {
		t.Errorf("underlay-mtu = %q, %v", v, ok)
	}
	if v, ok := flagValue(args, "cluster-id"); !ok || v != "c1" {
		t.Errorf("cluster-id = %q, %v", v, ok)
	}
	if _, ok := flagValue(args, "cluster"); ok {
		t.Error("found a flag that is only a prefix of one")
	}
	if _, ok := flagValue([]string{"--underlay-mtu"}, "underlay-mtu"); ok {
		t.Error("found a value after the last argument")
	}
}

// TestClockSkew reads the clocks of real HTTP servers whose Date headers
// run ahead of ours by a set amount, as an apiserver's would.
func TestClockSkew(t *testing.T) {
	server := func(ahead time.Duration) *probe.Cluster {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Date", time.Now().Add(ahead).UTC().Format(http.TimeFormat))
			fmt.Fprintln(w, "{}")
		}))
		t.Cleanup(srv.Close)
		return &probe.Cluster{Source: fmt.Sprintf("ahead-%s", ahead), Config: &rest.Config{Host: srv.URL}}
	}
	for _, tc := range []struct {
		ahead  time.Duration
		result string
	}{
		{0, OK},
		{5 * time.Second, Warn},
		{time.Minute, Fail},
	} {
		r := &run{}
		r.clockSkew(context.Background(), []*probe.Cluster{server(0), server(tc.ahead)})
		if len(r.results) != 1 || r.results[0].Result != tc.result {
			t.Errorf("%s ahead: %+v, want one %s", tc.ahead, r.results, tc.result)
			continue
		}
		if tc.result != OK && !strings.Contains(r.results[0].Detail, "ahead-"+tc.ahead.String()+" is ") {
			t.Errorf("%s ahead: the detail does not name the cluster ahead: %s", tc.ahead, r.results[0].Detail)
		}
	}
	// A server that cannot be reached is named, not a crash.
	gone := server(0)
	gone.Config.Host = "http://127.0.0.1:1"
	r := &run{}
	r.clockSkew(context.Background(), []*probe.Cluster{server(0), gone})
	if len(r.results) != 1 || r.results[0].Result != Warn || r.results[0].Where != gone.Source {
		t.Errorf("an apiserver that does not answer: %+v", r.results)
	}
}
