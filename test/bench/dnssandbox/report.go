package main

import (
	"fmt"
	"io"
	"math"
	"slices"
)

// Report is _output/bench/dns-sandbox.json.
type Report struct {
	Date           string           `json:"date"`
	Sandbox        string           `json:"sandbox"`
	ExportToAnswer ExportResult     `json:"exportToAnswer"`
	Withdrawal     WithdrawalResult `json:"withdrawal"`
	Phases         struct {
		UpSeconds         float64 `json:"upSeconds"`
		JoinSeconds       float64 `json:"joinSeconds"` // join, the workload, the first clusterset.local answer
		ExportSeconds     float64 `json:"exportSeconds"`
		WithdrawalSeconds float64 `json:"withdrawalSeconds"`
		TotalSeconds      float64 `json:"totalSeconds"` // without the final "down"
	} `json:"phases"`
}

// ExportResult is the export → answer measurement and its baseline.
type ExportResult struct {
	Services       int     `json:"services"`
	SpacingMs      float64 `json:"spacingMs"`
	PollIntervalMs float64 `json:"pollIntervalMs"`
	// Strait: ServiceExport created in c1 → A for
	// <svc>.<ns>.svc.clusterset.local in c2's pod.
	Strait Latencies `json:"strait"`
	// Stock: Service created in c2 → A for <svc>.<ns>.svc.cluster.local in
	// c2's pod (CoreDNS's kubernetes plugin, its block's cache taken out).
	Stock Latencies `json:"stock"`
	// RatioP50 and RatioP99 are strait / stock (lower is faster).
	RatioP50  float64 `json:"ratioP50"`
	RatioP99  float64 `json:"ratioP99"`
	GoalP99Ms float64 `json:"goalP99Ms"`
	MeetsGoal bool    `json:"meetsGoal"`
	// StockCachedProbeMs is a name asked for before its Service existed,
	// with the Corefile as shipped (cache 30): the time from creation to
	// its first answer, null when none came within 6 s.
	StockCachedProbeMs *float64 `json:"stockCachedProbeMs"`
}

func (r *ExportResult) finish() {
	r.Services, r.SpacingMs, r.PollIntervalMs, r.GoalP99Ms = services, ms(exportSpacing), ms(defaultPollInterval), ms(goalP99)
	if r.Stock.P50Ms > 0 {
		r.RatioP50 = r.Strait.P50Ms / r.Stock.P50Ms
	}
	if r.Stock.P99Ms > 0 {
		r.RatioP99 = r.Strait.P99Ms / r.Stock.P99Ms
	}
	r.MeetsGoal = r.Strait.Unanswered == 0 && r.Strait.P99Ms < r.GoalP99Ms
}

// Latencies are one round's times from creation to first answer.
type Latencies struct {
	Answered   int       `json:"answered"`
	Unanswered int       `json:"unanswered"`
	P50Ms      float64   `json:"p50Ms"`
	P99Ms      float64   `json:"p99Ms"`
	MaxMs      float64   `json:"maxMs"`
	MinMs      float64   `json:"minMs"`
	MeanMs     float64   `json:"meanMs"`
	SamplesMs  []float64 `json:"samplesMs"` // in the order of creation
}

func (l *Latencies) finish() {
	l.Answered = len(l.SamplesMs)
	if l.Answered == 0 {
		return
	}
	s := slices.Sorted(slices.Values(l.SamplesMs))
	l.P50Ms, l.P99Ms = percentile(s, 50), percentile(s, 99)
	l.MinMs, l.MaxMs = s[0], s[len(s)-1]
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	l.MeanMs = sum / float64(len(s))
}

// percentile is the nearest-rank percentile of sorted values: p99 of 100
// samples is the 99th smallest, not the largest.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WithdrawalResult is the gap after a cluster's gateways go, per round and
// the medians. Times from t0, the removal of the gateway label.
type WithdrawalResult struct {
	PollIntervalMs float64           `json:"pollIntervalMs"`
	Rounds         []WithdrawalRound `json:"rounds"`
	// Medians over the rounds.
	GatewayStatusMs  float64 `json:"medianGatewayStatusMs"`
	DNSMs            float64 `json:"medianDnsMs"`
	DNSAfterStatusMs float64 `json:"medianDnsAfterStatusMs"`
}

// WithdrawalRound is one removal of c1's gateway labels.
type WithdrawalRound struct {
	// GatewayStatusMs: t1-t0, until c2's active Gateway no longer reports
	// c1 Connected.
	GatewayStatusMs float64 `json:"gatewayStatusMs"`
	// DNSMs: t2-t0, until the answer in c2's pod lost c1's endpoint.
	DNSMs float64 `json:"dnsMs"`
	// DNSAfterStatusMs: t2-t1, the DNS part.
	DNSAfterStatusMs float64 `json:"dnsAfterStatusMs"`
	// ListMs is how long the read of the Gateways that gave t1 took (t1
	// is its start).
	ListMs float64 `json:"listMs"`
	// RestoredMs: from the labels' return until c1 is back in the answer
	// and both gateways report each other Connected.
	RestoredMs float64 `json:"restoredMs"`
}

func (w *WithdrawalResult) finish() {
	med := func(f func(WithdrawalRound) float64) float64 {
		var v []float64
		for _, r := range w.Rounds {
			v = append(v, f(r))
		}
		return percentile(slices.Sorted(slices.Values(v)), 50)
	}
	w.GatewayStatusMs = med(func(r WithdrawalRound) float64 { return r.GatewayStatusMs })
	w.DNSMs = med(func(r WithdrawalRound) float64 { return r.DNSMs })
	w.DNSAfterStatusMs = med(func(r WithdrawalRound) float64 { return r.DNSAfterStatusMs })
}

func (r *Report) summary(w io.Writer) {
	e := r.ExportToAnswer
	fmt.Fprintf(w, "\n%s; %d services, created %.0f ms apart, polled every %.0f ms from c2's pod\n", r.Sandbox, e.Services, e.SpacingMs, e.PollIntervalMs)
	fmt.Fprintf(w, "%-44s %9s %9s %9s %9s %11s\n", "CREATED -> FIRST A ANSWER IN c2's POD", "p50", "p99", "max", "mean", "unanswered")
	for _, row := range []struct {
		name string
		l    Latencies
	}{{"strait: export in c1, clusterset.local", e.Strait}, {"stock: Service in c2, cluster.local", e.Stock}} {
		fmt.Fprintf(w, "%-44s %7.0fms %7.0fms %7.0fms %7.0fms %11d\n", row.name, row.l.P50Ms, row.l.P99Ms, row.l.MaxMs, row.l.MeanMs, row.l.Unanswered)
	}
	goal := "met"
	if !e.MeetsGoal {
		goal = "NOT met"
	}
	fmt.Fprintf(w, "ratio strait/stock: p50 %.2f, p99 %.2f; goal p99 < %.0f ms: %s\n", e.RatioP50, e.RatioP99, e.GoalP99Ms, goal)
	if e.StockCachedProbeMs != nil {
		fmt.Fprintf(w, "stock with the Corefile as shipped (cache 30), a name asked for before its Service existed: %.0f ms\n", *e.StockCachedProbeMs)
	} else {
		fmt.Fprintln(w, "stock with the Corefile as shipped (cache 30), a name asked for before its Service existed: no answer within 6 s")
	}
	wd := r.Withdrawal
	fmt.Fprintf(w, "\nWITHDRAWAL (c1's gateway labels removed at t0; headless answer polled every %.0f ms)\n", wd.PollIntervalMs)
	fmt.Fprintf(w, "%-8s %26s %26s %22s %12s\n", "ROUND", "t1-t0 GATEWAY STATUS", "t2-t0 ANSWER LOST c1", "t2-t1 DNS PART", "c1 BACK")
	for i, rd := range wd.Rounds {
		fmt.Fprintf(w, "%-8d %24.0fms %24.0fms %20.0fms %11.1fs\n", i+1, rd.GatewayStatusMs, rd.DNSMs, rd.DNSAfterStatusMs, rd.RestoredMs/1000)
	}
	fmt.Fprintf(w, "%-8s %24.0fms %24.0fms %20.0fms\n", "median", wd.GatewayStatusMs, wd.DNSMs, wd.DNSAfterStatusMs)
	p := r.Phases
	fmt.Fprintf(w, "\nphases: up %.0f s, join %.0f s, export rounds %.0f s, withdrawals %.0f s, total %.0f s\n",
		p.UpSeconds, p.JoinSeconds, p.ExportSeconds, p.WithdrawalSeconds, p.TotalSeconds)
}
