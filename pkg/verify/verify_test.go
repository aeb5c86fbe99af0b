package verify

import (
	"bytes"
	"strings"
	"testing"
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
