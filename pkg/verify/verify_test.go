package verify

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"strait.dev/strait/pkg/probe"
)

func TestReportErrNamesEveryFailedCheck(t *testing.T) {
	r := &Report{Results: []Result{
		{Check: CheckGateway, From: "c1", Result: ResultPass},
		{Check: CheckPodTCP, From: "c1/gateway", To: "c2/gateway", Result: ResultFail, Detail: "timed out"},
		{Check: CheckFailover, From: "c2", To: "-", Result: ResultSkip},
		{Check: CheckDNS, From: "c2/non-gateway", To: "verify-c1.ns.svc.clusterset.local", Result: ResultFail},
	}}
	err := r.Err()
	want := "2 of 4 checks failed: pod-to-pod/tcp c1/gateway -> c2/gateway, clusterset-dns c2/non-gateway -> verify-c1.ns.svc.clusterset.local"
	if err == nil || err.Error() != want {
		t.Fatalf("Err() = %v\nwant %s", err, want)
	}
	r.Results[1].Result, r.Results[3].Result = ResultPass, ResultSkip
	if err := r.Err(); err != nil {
		t.Fatalf("no failure, but %v", err)
	}
	var out bytes.Buffer
	if err := r.PrintTable(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "CHECK") || !strings.Contains(lines[3], "skip") {
		t.Fatalf("table:\n%s", out.String())
	}
}

func TestSortedOrdersByCheckThenPlaces(t *testing.T) {
	r := &run{results: []Result{
		{Check: CheckDNS, From: "c2/gateway"},
		{Check: CheckPodTCP, From: "c2/gateway", To: "c1/gateway"},
		{Check: CheckPodTCP, From: "c1/gateway", To: "c2/gateway"},
		{Check: CheckGateway, From: "c2"},
	}}
	var got []string
	for _, x := range r.sorted() {
		got = append(got, x.Check+" "+x.From)
	}
	want := "active-gateway c2|pod-to-pod/tcp c1/gateway|pod-to-pod/tcp c2/gateway|clusterset-dns c2/gateway"
	if strings.Join(got, "|") != want {
		t.Fatalf("sorted: %s\nwant    %s", strings.Join(got, "|"), want)
	}
}

func TestPingReportsKeepsTheLatestWholeLine(t *testing.T) {
	var p pingReports
	// Lines arrive in pieces, as a stream does; garbage is skipped.
	for _, chunk := range []string{`{"ok":true,"sent":10,"rece`, `ived":9,"durationMs":100}` + "\n" + `not json` + "\n", `{"ok":true,"sent":20,"received":15,"maxGapMs":50,"lastReplyMs":190,"durationMs":200}` + "\n" + `{"ok":tr`} {
		if _, err := p.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	got := p.latest()
	if got.Sent != 20 || got.Received != 15 || got.MaxGapMs != 50 || got.LastReplyMs == nil || *got.LastReplyMs != 190 {
		t.Fatalf("latest %+v", got)
	}
}

// A name that is NXDOMAIN for the first lookups (a strait-dns replica not
// yet synced) or whose query is lost passes once it answers; one that stays
// NXDOMAIN fails after the bound; another failure ends the wait at once.
func TestSettledLookupWaitsOutNXDOMAIN(t *testing.T) {
	ctx := context.Background()
	nx := probe.DNSReport{NotFound: true, Error: "NXDOMAIN"}
	ok := probe.DNSReport{OK: true, Addresses: []string{"10.96.0.50"}}
	seq := func(reps ...probe.DNSReport) (func(context.Context) (probe.DNSReport, error), *int) {
		n := 0
		return func(context.Context) (probe.DNSReport, error) {
			r := reps[min(n, len(reps)-1)]
			n++
			return r, nil
		}, &n
	}

	lookup, n := seq(nx, nx, ok)
	rep, waited, err := settledLookup(ctx, time.Second, 10*time.Millisecond, lookup)
	if err != nil || !rep.OK || *n != 3 || waited <= 0 {
		t.Errorf("NXDOMAIN twice then an answer: report %+v, waited %s, %d lookups, err %v; want the answer after 3 lookups, a wait over 0", rep, waited, *n, err)
	}

	lookup, n = seq(ok)
	if rep, waited, _ := settledLookup(ctx, time.Second, 10*time.Millisecond, lookup); !rep.OK || waited != 0 || *n != 1 {
		t.Errorf("an answer at once: report %+v, waited %s, %d lookups; want 1 lookup and no wait", rep, waited, *n)
	}

	lookup, n = seq(nx)
	if rep, _, _ := settledLookup(ctx, 100*time.Millisecond, 10*time.Millisecond, lookup); rep.OK || !rep.NotFound || *n < 2 || *n > 11 {
		t.Errorf("NXDOMAIN throughout: report %+v after %d lookups; want NXDOMAIN after a bounded number of lookups", rep, *n)
	}

	lookup, n = seq(probe.DNSReport{Error: "lookup x: i/o timeout"}, ok)
	if rep, _, _ := settledLookup(ctx, time.Second, 10*time.Millisecond, lookup); !rep.OK || *n != 2 {
		t.Errorf("a timeout then an answer: report %+v after %d lookups; want the answer after 2 (a lost query is asked again)", rep, *n)
	}

	lookup, n = seq(probe.DNSReport{Error: "lookup x: server misbehaving"})
	if rep, _, _ := settledLookup(ctx, time.Second, 10*time.Millisecond, lookup); rep.Error != "lookup x: server misbehaving" || *n != 1 {
		t.Errorf("SERVFAIL: report %+v after %d lookups; want it returned after 1 lookup (only NXDOMAIN and timeouts are waited out)", rep, *n)
	}
}

// The Service check tries again on what a Service not programmed yet looks
// like (refused, timed out, in the words of Go's HTTP client), and not on
// anything else.
func TestSettlingErrors(t *testing.T) {
	for _, tc := range []struct {
		err  string
		want bool
	}{
		{`Get "http://10.101.0.5:8080/": dial tcp 10.101.0.5:8080: connect: connection refused`, true},
		{`Get "http://10.101.228.117:8080/": context deadline exceeded`, true},
		{`Get "http://10.101.0.5:8080/": dial tcp 10.101.0.5:8080: i/o timeout`, true},
		{`Get "http://10.101.0.5:8080/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)`, true},
		{`Get "http://10.101.0.5:8080/": dial tcp 10.101.0.5:8080: connect: no route to host`, false},
		{`unexpected status 503`, false},
		{``, false},
	} {
		if got := settling(tc.err); got != tc.want {
			t.Errorf("settling(%q) = %t, want %t", tc.err, got, tc.want)
		}
	}
}
