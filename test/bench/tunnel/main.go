// Command tunnel is "make bench-tunnel" and "make bench-dataplane": it
// measures Strait's data plane in the sandbox against a bare cable of the
// same driver set up in the same run between the same two gateway nodes.
//
// Everything is measured per IP family (-families, both by default): IPv4
// in an IPv4 sandbox, IPv6 in a dual-stack one between the pods' IPv6
// addresses, with the bare cable's tunnel addresses of the same family
// over the same underlay as Strait's cable (families.go). Globalnet is
// IPv4 only (docs/dataplane.md), so only the IPv4 family measures it.
//
// For each family and driver: a sandbox of two clusters (no NAT) is joined
// with that driver; iperf3 runs between pods on the two active gateway nodes
// (through Strait) and between the two nodes over a bare device of the
// driver, made by this program with the driver package alone; ping gives
// RTTs. That is the tunnel suite (_output/bench/tunnel.json). The dataplane
// suite
// (_output/bench/dataplane.json) adds pods on non-gateway nodes, whose
// traffic also crosses the route agents' overlay, and the failover gap: a
// UDP probe every 10 ms between the non-gateway pods while c1's active
// gateway is killed (kill -9), several times; the median gap is reported.
// The same again with the broker's apiserver (c1's kube-apiserver) frozen
// (SIGSTOP) while c2's active gateway is killed: each gap is capped at the
// freeze, after which the apiserver is resumed.
// In the IPv4 family it then brings up the same two clusters with the same
// pod and Service
// CIDRs (strait-sandbox up --overlapping), joins them with --globalnet and
// measures again between the pods on the non-gateway nodes, c1's pod to
// the global IP of c2's (a pod behind an exported headless Service gets
// its own, DNAT'd to it for every protocol): Globalnet's throughput and
// RTT as ratios to the non-gateway figures without overlap of the same
// run.
//
// A shared 2-core machine is noisy, so no ratio comes from one run: each
// is the median of -pairs A/B pairs, Strait's run and the bare cable's run
// alternating (gateway, bare, non-gateway, gateway, bare, ...), each pair
// giving a ratio; the spread of those ratios and the load average while they
// ran are reported, and a ratio whose spread is too wide says it is
// inconclusive (stats.go).
//
// Usage: strait-bench-tunnel [-pairs 5] [-seconds 5] [-kills 10]
// [-freeze 10s] [-families ipv4,ipv6] tunnel|dataplane
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/sandbox"
)

// Result is one driver's figures in one IP family. The scalar throughputs
// and ratios are medians of the A/B pairs in the RatioStats beside them.
type Result struct {
	Driver string `json:"driver"`
	// Family is the family of the addresses the traffic went to: the
	// pods' and the bare cable's ("ipv4" or "ipv6"). SandboxIPFamily is
	// the sandbox's --ip-family ("ipv4", or "dual" for IPv6), Underlay the
	// family both cables ran over (the gateways' first public address).
	Family          string `json:"family"`
	SandboxIPFamily string `json:"sandboxIpFamily"`
	Underlay        string `json:"underlay"`
	// StraitMbps and BareMbps are the medians of the gateway-to-gateway
	// pods' runs and of the bare cable's runs; Ratio is Gateway.Median,
	// the median of the pairs' ratios (not StraitMbps / BareMbps).
	StraitMbps float64    `json:"straitMbps"`
	BareMbps   float64    `json:"bareMbps"`
	Ratio      float64    `json:"ratio"`
	Gateway    RatioStats `json:"gateway"`
	// RTTs: one ping run of pings, after the throughput pairs.
	StraitRTTMedianM float64 `json:"straitRttMedianMs"`
	StraitRTTP99M    float64 `json:"straitRttP99Ms"`
	BareRTTMedianM   float64 `json:"bareRttMedianMs"`
	BareRTTP99M      float64 `json:"bareRttP99Ms"`
	// The dataplane suite: pods on non-gateway nodes against the bare cable
	// run of the same pair (NonGatewayRatio is NonGateway.Median), and
	// failovers.
	NonGatewayMbps       float64     `json:"nonGatewayMbps,omitempty"`
	NonGatewayRatio      float64     `json:"nonGatewayRatio,omitempty"`
	NonGateway           *RatioStats `json:"nonGateway,omitempty"`
	NonGatewayRTTMedianM float64     `json:"nonGatewayRttMedianMs,omitempty"`
	NonGatewayRTTP99M    float64     `json:"nonGatewayRttP99Ms,omitempty"`
	// FailoverGapsMs are the longest probe gaps of each kill -9 of c1's
	// active gateway, in milliseconds (the probe goes to the pod's address
	// of Family); FailoverGapMedianMs their median.
	FailoverGapsMs      []float64  `json:"failoverGapsMs,omitempty"`
	FailoverGapMedianMs float64    `json:"failoverGapMedianMs,omitempty"`
	FailoverLoad        *LoadStats `json:"failoverLoadAvg1,omitempty"`
	// FailoverBrokerFrozen is the same with the broker's apiserver frozen
	// (c2's gateway killed); FailoverGapBrokerFrozenMedianMs its median,
	// capped gaps counted at the cap.
	FailoverBrokerFrozen            *FrozenFailovers `json:"failoverBrokerFrozen,omitempty"`
	FailoverGapBrokerFrozenMedianMs float64          `json:"failoverGapBrokerFrozenMedianMs,omitempty"`
	// Globalnet, in the dataplane suite's IPv4 family: the same pods in
	// clusters whose CIDRs overlap, c1's to c2's global IP. The two paths cannot run in
	// one sandbox, so each is normalised by the bare cable of its own
	// sandbox: pair i's ratio is (Globalnet_i / bare_i in the overlapping
	// sandbox) / (non-gateway_i / bare_i in the first), and GlobalnetRatio
	// is their median (the goal is >= 0.9). Globalnet.StraitMbps
	// are the Globalnet runs, Globalnet.BaseMbps the overlapping sandbox's
	// bare cable runs. GlobalnetRTTRatio is GlobalnetRTTMedianM /
	// NonGatewayRTTMedianM (above 1 is slower).
	GlobalnetMbps       float64     `json:"globalnetMbps,omitempty"`
	GlobalnetRatio      float64     `json:"globalnetRatio,omitempty"`
	Globalnet           *RatioStats `json:"globalnet,omitempty"`
	GlobalnetRTTMedianM float64     `json:"globalnetRttMedianMs,omitempty"`
	GlobalnetRTTP99M    float64     `json:"globalnetRttP99Ms,omitempty"`
	GlobalnetRTTRatio   float64     `json:"globalnetRttRatio,omitempty"`
}

// options are the command's flags.
type options struct {
	pairs    int
	seconds  int
	kills    int
	freeze   time.Duration
	families []family
	drivers  []string
}

const pings = 100

// cableDrivers are the drivers the suites can measure, in their order.
var cableDrivers = []string{"wireguard", "vxlan"}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-tunnel:", err)
		os.Exit(1)
	}
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (the sandbox)")
	}
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		return bare(os.Args[2:])
	}
	var o options
	fs := flag.NewFlagSet("strait-bench-tunnel", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: strait-bench-tunnel [flags] tunnel|dataplane")
		fs.PrintDefaults()
	}
	fs.IntVar(&o.pairs, "pairs", minPairs, "A/B pairs (Strait run, bare run) per ratio; fewer than 5 is never called conclusive")
	fs.IntVar(&o.seconds, "seconds", 5, "length of each iperf3 run in seconds")
	fs.IntVar(&o.kills, "kills", 10, "gateway kills per failover measurement (kill -9, and again with the broker frozen); dataplane suite")
	fs.DurationVar(&o.freeze, "freeze", 10*time.Second, "how long the broker's apiserver stays frozen per kill; a gap is capped at this; dataplane suite")
	famFlag := fs.String("families", defaultFamilies, "IP families to measure, comma-separated: ipv4 (an IPv4 sandbox), ipv6 (a dual-stack sandbox, traffic to the pods' IPv6 addresses)")
	drvFlag := fs.String("drivers", strings.Join(cableDrivers, ","), "cable drivers to measure, comma-separated: wireguard, vxlan")
	if err := fs.Parse(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	suite := "tunnel"
	switch fs.NArg() {
	case 0:
	case 1:
		suite = fs.Arg(0)
	default:
		return fmt.Errorf("one suite, got %v", fs.Args())
	}
	if suite != "tunnel" && suite != "dataplane" {
		return fmt.Errorf("unknown suite %q: tunnel or dataplane", suite)
	}
	if o.pairs < 1 || o.seconds < 1 || o.kills < 1 || o.freeze < time.Second {
		return errors.New("-pairs, -seconds and -kills must be at least 1, -freeze at least 1s")
	}
	var err error
	if o.families, err = parseFamilies(*famFlag); err != nil {
		return err
	}
	if o.drivers, err = pick("-drivers", *drvFlag, cableDrivers); err != nil {
		return err
	}
	dataplane := suite == "dataplane"
	if _, err := kubetest.BinDir(); err != nil {
		return err
	}
	if _, err := os.Stat(kubectlPath()); err != nil {
		return fmt.Errorf("kubectl built from source: %w (run 'make kube-binaries')", err)
	}
	root, _ := os.Getwd()
	bin := filepath.Join(root, "_output", "bin")
	state := filepath.Join(root, "_output", "bench", "sandbox")
	sbx := func(args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, "strait-sandbox"), append([]string{"--state-dir", state}, args...)...)
	}
	defer func() { _ = sbx("down").Run() }()
	whole := startLoad()
	var results []Result
	for _, fam := range o.families {
		for _, driver := range o.drivers {
			r, err := measureFamily(sbx, bin, state, driver, fam, dataplane, o)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	load := whole.stop()
	out := filepath.Join(root, "_output", "bench", suite+".json")
	data, _ := json.MarshalIndent(report(time.Now(), o, load, results), "", "  ")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	printSummary(os.Stdout, results, dataplane, o, load)
	fmt.Println("\nwritten", out)
	return nil
}

// measureFamily brings up the sandbox of fam, measures driver in it and
// brings it down; in the dataplane suite's IPv4 family, then the
// overlapping sandbox for Globalnet.
func measureFamily(sbx func(...string) *exec.Cmd, bin, state, driver string, fam family, dataplane bool, o options) (Result, error) {
	fmt.Printf("== %s, %s\n", driver, fam.Name)
	nodes := "2"
	if dataplane {
		nodes = "3"
	}
	if out, err := sbx("up", "--clusters", "2", "--nodes", nodes, "--ip-family", fam.Sandbox).CombinedOutput(); err != nil {
		return Result{}, fmt.Errorf("sandbox up --ip-family %s: %v\n%s", fam.Sandbox, err, out)
	}
	r, ngBare, err := measure(sbx, bin, state, driver, fam, dataplane, o)
	if err != nil {
		return r, err
	}
	if out, err := sbx("down").CombinedOutput(); err != nil {
		return r, fmt.Errorf("sandbox down: %v\n%s", err, out)
	}
	if !dataplane || fam.Bits != 4 {
		return r, nil
	}
	fmt.Printf("== %s, Globalnet\n", driver)
	if out, err := sbx("up", "--clusters", "2", "--nodes", nodes, "--overlapping").CombinedOutput(); err != nil {
		return r, fmt.Errorf("sandbox up --overlapping: %v\n%s", err, out)
	}
	if err := measureGlobalnet(sbx, bin, state, driver, &r, ngBare, o); err != nil {
		return r, err
	}
	if out, err := sbx("down").CombinedOutput(); err != nil {
		return r, fmt.Errorf("sandbox down: %v\n%s", err, out)
	}
	return r, nil
}

// report is the JSON the suite writes: the run's settings and load, and
// one result per family and driver, IPv4's first (as before families,
// when "results" held IPv4's alone).
func report(now time.Time, o options, load LoadStats, results []Result) map[string]any {
	fams := make([]string, len(o.families))
	for i, f := range o.families {
		fams[i] = f.Name
	}
	return map[string]any{
		"date": now.UTC().Format(time.RFC3339), "iperfSeconds": o.seconds, "pairs": o.pairs, "families": fams, "drivers": o.drivers,
		"conclusiveRule": fmt.Sprintf("at least %d pairs and IQR of the pair ratios <= %.2f x their median", minPairs, maxIQRFraction),
		"loadAvg1":       load, "results": results,
	}
}

// printSummary prints the results as tables, a row per driver and family.
func printSummary(w io.Writer, results []Result, dataplane bool, o options, load LoadStats) {
	fmt.Fprintf(w, "\n%d A/B pairs of %d s per ratio; ratio = median of the pairs' ratios [min q1-q3 max]; load = 1-min load average min/median/max during the pairs\n", o.pairs, o.seconds)
	fmt.Fprintf(w, "family = the family of the pods' and the bare cable's addresses; ipv6 runs in a dual-stack sandbox; underlay = what both cables ran over\n")
	row := func(label, what string, s *RatioStats) {
		verdict := "conclusive"
		if !s.Conclusive {
			verdict = "INCONCLUSIVE: " + s.Reason
		}
		fmt.Fprintf(w, "%-15s %-23s %6.2f [%.2f %.2f-%.2f %.2f] load %s  %s\n", label, what, s.Median, s.Min, s.Q1, s.Q3, s.Max, s.Load, verdict)
		fmt.Fprintf(w, "%-15s %-23s Mb/s %s vs %s\n", "", "", mbps(s.StraitMbps), mbps(s.BaseMbps))
	}
	fmt.Fprintf(w, "\n%-15s %-23s %6s\n", "DRIVER FAMILY", "RATIO", "MEDIAN")
	for _, r := range results {
		row(label(r), "gateway / bare", &r.Gateway)
		if r.NonGateway != nil {
			row(label(r), "non-gateway / bare", r.NonGateway)
		}
		if r.Globalnet != nil {
			row(label(r), "Globalnet / non-overlap", r.Globalnet)
		}
	}
	fmt.Fprintf(w, "\n%-15s %-8s %14s %14s %14s %14s\n", "DRIVER FAMILY", "UNDERLAY", "STRAIT RTT p50", "STRAIT RTT p99", "BARE RTT p50", "BARE RTT p99")
	for _, r := range results {
		fmt.Fprintf(w, "%-15s %-8s %12.3fms %12.3fms %12.3fms %12.3fms\n", label(r), r.Underlay, r.StraitRTTMedianM, r.StraitRTTP99M, r.BareRTTMedianM, r.BareRTTP99M)
	}
	if dataplane {
		fmt.Fprintf(w, "\n%-15s %14s %14s %14s %14s %10s\n", "DRIVER FAMILY", "NON-GW RTT p50", "NON-GW RTT p99", "GN RTT p50", "GN RTT p99", "RTT RATIO")
		for _, r := range results {
			if r.Globalnet == nil {
				fmt.Fprintf(w, "%-15s %12.3fms %12.3fms %14s %14s %10s\n", label(r), r.NonGatewayRTTMedianM, r.NonGatewayRTTP99M, "-", "-", "-")
				continue
			}
			fmt.Fprintf(w, "%-15s %12.3fms %12.3fms %12.3fms %12.3fms %10.2f\n", label(r), r.NonGatewayRTTMedianM, r.NonGatewayRTTP99M,
				r.GlobalnetRTTMedianM, r.GlobalnetRTTP99M, r.GlobalnetRTTRatio)
		}
		fmt.Fprintf(w, "\n%-15s %-30s %10s %s\n", "DRIVER FAMILY", "FAILOVER", "GAP p50", "GAPS (ms), load")
		for _, r := range results {
			var l LoadStats
			if r.FailoverLoad != nil {
				l = *r.FailoverLoad
			}
			fmt.Fprintf(w, "%-15s %-30s %8.0fms %v, load %s\n", label(r), "kill -9 c1's gateway", r.FailoverGapMedianMs, r.FailoverGapsMs, l)
			if f := r.FailoverBrokerFrozen; f != nil {
				fmt.Fprintf(w, "%-15s %-30s %8.0fms %v, %d of %d capped at %.0f ms, load %s\n", "", "same, c2's, broker frozen", f.MedianMs, f.GapsMs,
					f.Capped, len(f.GapsMs), f.CapMs, f.Load)
				if len(f.AfterThawMs) > 0 {
					fmt.Fprintf(w, "%-15s %-30s %v\n", "", "capped: back after thaw (ms)", f.AfterThawMs)
				}
			}
		}
	}
	fmt.Fprintf(w, "\nload average (1 min) over the whole run: %s\n", load)
}

// label names a result's row: its driver and family.
func label(r Result) string { return r.Driver + " " + r.Family }

func mbps(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// benchIPs are the bench pods' IPs by "<cluster>/<pod>".
type benchIPs map[string]string

// measure measures one joined sandbox: the A/B pairs, RTTs and, in the
// dataplane suite, failovers, all to the pods' addresses of fam. It
// returns the bare cable's runs too, which normalise the Globalnet runs.
func measure(sbx func(...string) *exec.Cmd, bin, state, driver string, fam family, dataplane bool, o options) (Result, []float64, error) {
	r := Result{Driver: driver, Family: fam.Name, SandboxIPFamily: fam.Sandbox}
	st, err := sandbox.Layout{Dir: state}.ReadState()
	if err != nil {
		return r, nil, err
	}
	ends, err := bareEndsOf(st, fam.Bits)
	if err != nil {
		return r, nil, err
	}
	r.Underlay = familyName(ends.UnderA)
	if err := joinClusters(sbx, bin, state, driver, dataplane, false); err != nil {
		return r, nil, err
	}
	// A pod on each cluster's active gateway node ("bench"), and in the
	// dataplane suite one on the non-gateway node n3 ("bench-n3").
	ips := benchIPs{}
	for _, c := range []string{"c1", "c2"} {
		kc := filepath.Join(state, c+".kubeconfig")
		var gw string
		deadline := time.Now().Add(60 * time.Second)
		for gw == "" {
			gw = holder(kc)
			if time.Now().After(deadline) {
				return r, nil, fmt.Errorf("no active gateway in %s", c)
			}
			time.Sleep(200 * time.Millisecond)
		}
		pods := map[string]string{"bench": gw}
		if dataplane {
			pods["bench-n3"] = c + "-n3"
		}
		for name, node := range pods {
			all, err := benchPod(kc, name, node)
			if err != nil {
				return r, nil, err
			}
			if ips[c+"/"+name], err = ofFamily(all, fam.Bits); err != nil {
				return r, nil, fmt.Errorf("%s/%s: %w", c, name, err)
			}
		}
	}
	inPod := func(c, pod string, args ...string) *exec.Cmd {
		return sbx(append([]string{"exec", c + "/default/" + pod, "--"}, args...)...)
	}
	// Wait for the cable.
	if err := waitPing(inPod("c1", "bench", "ping", "-c", "1", "-W", "1", ips["c2/bench"]), 90*time.Second); err != nil {
		return r, nil, errors.New("no traffic through the cable after 90 s")
	}
	stopBare, err := startBare(state, driver, ends)
	if err != nil {
		return r, nil, err
	}
	defer stopBare()
	secs := strconv.Itoa(o.seconds)
	gwRun := func() (float64, error) {
		return iperf(inPod("c2", "bench", "iperf3", "-s", "-1", "-p", "5201"), inPod("c1", "bench", "iperf3", "-c", ips["c2/bench"], "-p", "5201", "-t", secs, "-J"))
	}
	bareRun := func() (float64, error) {
		return iperf(inNode("strait-c2-n1", "iperf3", "-s", "-1", "-p", "5202"), inNode("strait-c1-n1", "iperf3", "-c", ends.B.String(), "-p", "5202", "-t", secs, "-J"))
	}
	ngRun := func() (float64, error) {
		return iperf(inPod("c2", "bench-n3", "iperf3", "-s", "-1", "-p", "5203"), inPod("c1", "bench-n3", "iperf3", "-c", ips["c2/bench-n3"], "-p", "5203", "-t", secs, "-J"))
	}
	// The pairs: gateway, bare, [non-gateway], gateway, bare, ... Each
	// Strait run sits next to the bare run it is divided by.
	var gw, base, ng []float64
	load := startLoad()
	for i := range o.pairs {
		g, err := gwRun()
		if err != nil {
			load.stop()
			return r, nil, err
		}
		b, err := bareRun()
		if err != nil {
			load.stop()
			return r, nil, err
		}
		gw, base = append(gw, g), append(base, b)
		line := fmt.Sprintf("pair %d/%d: gateway %.0f, bare %.0f", i+1, o.pairs, g, b)
		if dataplane {
			n, err := ngRun()
			if err != nil {
				load.stop()
				return r, nil, err
			}
			ng = append(ng, n)
			line += fmt.Sprintf(", non-gateway %.0f", n)
		}
		fmt.Println(line, "Mb/s")
	}
	r.setPairs(gw, base, ng, load.stop())
	if r.StraitRTTMedianM, r.StraitRTTP99M, err = rtt(inPod("c1", "bench", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", ips["c2/bench"])); err != nil {
		return r, nil, err
	}
	if r.BareRTTMedianM, r.BareRTTP99M, err = rtt(inNode("strait-c1-n1", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", ends.B.String())); err != nil {
		return r, nil, err
	}
	if !dataplane {
		return r, base, nil
	}
	if r.NonGatewayRTTMedianM, r.NonGatewayRTTP99M, err = rtt(inPod("c1", "bench-n3", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", ips["c2/bench-n3"])); err != nil {
		return r, nil, err
	}
	stopBare()
	load = startLoad()
	r.FailoverGapsMs, err = failoverGaps(state, ips["c2/bench-n3"], inPod, o.kills)
	fl := load.stop()
	if err != nil {
		return r, nil, err
	}
	r.FailoverGapMedianMs, r.FailoverLoad = median(r.FailoverGapsMs), &fl
	f, err := frozenFailovers(state, ips["c2/bench-n3"], inPod, o)
	if err != nil {
		return r, nil, err
	}
	r.FailoverBrokerFrozen, r.FailoverGapBrokerFrozenMedianMs = f, f.MedianMs
	return r, base, nil
}

// setPairs fills r's throughput figures from the A/B pairs' runs in Mb/s:
// the gateway pods' (gw), the bare cable's (base) and, in the dataplane
// suite, the non-gateway pods' (ng, nil otherwise), pair i being gw[i],
// base[i], ng[i]; load is the load average while they ran.
func (r *Result) setPairs(gw, base, ng []float64, load LoadStats) {
	r.Gateway = newRatioStats(gw, base, divide(gw, base), load)
	r.StraitMbps, r.BareMbps, r.Ratio = median(gw), median(base), r.Gateway.Median
	if ng != nil {
		s := newRatioStats(ng, base, divide(ng, base), load)
		r.NonGateway = &s
		r.NonGatewayMbps, r.NonGatewayRatio = median(ng), s.Median
	}
}

// divide is a[i] / b[i] for each pair (0 where b[i] is 0).
func divide(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		if b[i] > 0 {
			out[i] = a[i] / b[i]
		}
	}
	return out
}

// waitPing runs ping (a fresh copy of cmd each time) until it succeeds or
// timeout passes.
func waitPing(cmd *exec.Cmd, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c := exec.Command(cmd.Path, cmd.Args[1:]...)
		if err := c.Run(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return err
		}
	}
}

func inNode(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// startBare sets up the bare cable: the same driver package between c1-n1
// and c2-n1, with host-prefix tunnel addresses and nothing of Strait around
// it, over the ends' underlay, and waits for traffic through it. The
// returned stop may be called more than once.
func startBare(state, driver string, ends bareEnds) (stop func(), err error) {
	self, _ := os.Executable()
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	// Userspace WireGuard's UAPI sockets share /var/run/wireguard here (the
	// helpers run outside the nodes' own /run): one device name per side.
	sides := []struct{ ns, dev, key, peerKey, addr, peerAddr, peerUnderlay string }{
		{"strait-c1-n1", "bench-c1", ka.String(), kb.PublicKey().String(), ends.A.String(), ends.B.String(), ends.UnderB.String()},
		{"strait-c2-n1", "bench-c2", kb.String(), ka.PublicKey().String(), ends.B.String(), ends.A.String(), ends.UnderA.String()},
	}
	var helpers []*exec.Cmd
	stop = func() {
		for _, h := range helpers {
			_ = h.Process.Signal(syscall.SIGTERM)
			_ = h.Wait()
		}
		helpers = nil
	}
	for _, s := range sides {
		ready := filepath.Join(state, "bare-"+s.ns)
		_ = os.Remove(ready)
		h := exec.Command("ip", "netns", "exec", s.ns, self, "bare", driver, s.dev, s.key, s.peerKey, s.addr, s.peerAddr, s.peerUnderlay, ready)
		h.Stderr = os.Stderr
		if err := h.Start(); err != nil {
			stop()
			return nil, err
		}
		helpers = append(helpers, h)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				stop()
				return nil, fmt.Errorf("bare %s in %s did not come up", driver, s.ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := waitPing(inNode("strait-c1-n1", "ping", "-c", "1", "-W", "1", ends.B.String()), 30*time.Second); err != nil {
		stop()
		return nil, errors.New("no traffic through the bare cable")
	}
	return stop, nil
}

// straitctl runs straitctl on the sandbox's admin host.
func straitctl(sbx func(...string) *exec.Cmd, bin string, args ...string) error {
	out, err := sbx(append([]string{"admin", "--", filepath.Join(bin, "straitctl")}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("straitctl %s: %v\n%s", args[0], err, out)
	}
	return nil
}

// joinClusters deploys the broker in c1 and joins c1 and c2 with driver,
// each with its pod CIDRs of every family in the sandbox's plan. With
// globalnet both join with --globalnet: in the overlapping sandbox both
// have the pod CIDR 10.1.0.0/16.
func joinClusters(sbx func(...string) *exec.Cmd, bin, state, driver string, dataplane, globalnet bool) error {
	st, err := sandbox.Layout{Dir: state}.ReadState()
	if err != nil {
		return err
	}
	info := filepath.Join(state, "broker-info.strait")
	if err := straitctl(sbx, bin, "deploy-broker", "--kubeconfig", filepath.Join(state, "admin", "c1.kubeconfig"), "--output", info); err != nil {
		return err
	}
	for _, c := range []string{"c1", "c2"} {
		plan, err := clusterPlan(st, c)
		if err != nil {
			return err
		}
		podCIDR := cidr.Join(plan.PodCIDRs)
		var extra []string
		if globalnet {
			extra = []string{"--globalnet"}
		}
		if err := straitctl(sbx, bin, append([]string{"join", info, "--kubeconfig", filepath.Join(state, "admin", c+".kubeconfig"), "--clusterid", c,
			"--gateway-nodes", gateways(c, dataplane), "--pod-cidr", podCIDR, "--cable-driver", driver}, extra...)...); err != nil {
			return err
		}
	}
	return nil
}

// measureGlobalnet measures, in the overlapping sandbox, between pods on
// the non-gateway nodes n3: c1's pod sends to the global IP of c2's, which
// gets its own GlobalIngressIP as the pod behind an exported headless
// Service. Its runs alternate with the bare cable's in this sandbox. It
// fills r's Globalnet figures, the ratios to r's non-gateway ones, each
// normalised by its own sandbox's bare runs (ngBare are the first
// sandbox's).
func measureGlobalnet(sbx func(...string) *exec.Cmd, bin, state, driver string, r *Result, ngBare []float64, o options) error {
	if err := joinClusters(sbx, bin, state, driver, true, true); err != nil {
		return err
	}
	st, err := sandbox.Layout{Dir: state}.ReadState()
	if err != nil {
		return err
	}
	// Globalnet is IPv4 only, and so is the overlapping sandbox.
	ends, err := bareEndsOf(st, 4)
	if err != nil {
		return err
	}
	const pod = "bench-n3"
	for _, c := range []string{"c1", "c2"} {
		if _, err := benchPod(filepath.Join(state, c+".kubeconfig"), pod, c+"-n3"); err != nil {
			return err
		}
	}
	kc2 := filepath.Join(state, "c2.kubeconfig")
	svc := fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"%[1]s","namespace":"default"},"spec":{"clusterIP":"None","selector":{"app":"%[1]s"},"ports":[{"name":"iperf","port":5204,"protocol":"TCP"}]}}`, pod)
	cmd := kubectl("--kubeconfig", kc2, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(svc)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("headless Service: %v\n%s", err, out)
	}
	if err := straitctl(sbx, bin, "export", "service", pod, "-n", "default", "--kubeconfig", filepath.Join(state, "admin", "c2.kubeconfig")); err != nil {
		return err
	}
	// The pod's GlobalIngressIP is "pod-<pod>" (docs/globalnet.md).
	var global string
	deadline := time.Now().Add(2 * time.Minute)
	for global == "" {
		out, _ := kubectl("--kubeconfig", kc2, "-n", "default", "get", "globalingressips.strait.dev", "pod-"+pod, "-o", "jsonpath={.status.allocatedIP}").Output()
		global = strings.TrimSpace(string(out))
		if time.Now().After(deadline) {
			return fmt.Errorf("c2: no global IP for pod %s after 2 min:\n%s", pod, globalnetState(sbx, bin, state))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("c2's %s: global IP %s\n", pod, global)
	inPod := func(c string, args ...string) *exec.Cmd {
		return sbx(append([]string{"exec", c + "/default/" + pod, "--"}, args...)...)
	}
	deadline = time.Now().Add(90 * time.Second)
	for inPod("c1", "ping", "-c", "1", "-W", "1", global).Run() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("no traffic to c2's global IP %s after 90 s:\n%s", global, globalnetState(sbx, bin, state))
		}
	}
	stopBare, err := startBare(state, driver, ends)
	if err != nil {
		return err
	}
	defer stopBare()
	secs := strconv.Itoa(o.seconds)
	var gn, base []float64
	load := startLoad()
	for i := range o.pairs {
		g, err := iperf(inPod("c2", "iperf3", "-s", "-1", "-p", "5204"), inPod("c1", "iperf3", "-c", global, "-p", "5204", "-t", secs, "-J"))
		if err != nil {
			load.stop()
			return err
		}
		b, err := iperf(inNode("strait-c2-n1", "iperf3", "-s", "-1", "-p", "5202"), inNode("strait-c1-n1", "iperf3", "-c", ends.B.String(), "-p", "5202", "-t", secs, "-J"))
		if err != nil {
			load.stop()
			return err
		}
		gn, base = append(gn, g), append(base, b)
		fmt.Printf("pair %d/%d: Globalnet %.0f, bare %.0f Mb/s\n", i+1, o.pairs, g, b)
	}
	l := load.stop()
	var ng []float64
	if r.NonGateway != nil {
		ng = r.NonGateway.StraitMbps
	}
	s := newRatioStats(gn, base, divide(divide(gn, base), divide(ng, ngBare)), l)
	r.Globalnet = &s
	r.GlobalnetMbps, r.GlobalnetRatio = median(gn), s.Median
	if r.GlobalnetRTTMedianM, r.GlobalnetRTTP99M, err = rtt(inPod("c1", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", global)); err != nil {
		return err
	}
	if r.NonGatewayRTTMedianM > 0 {
		r.GlobalnetRTTRatio = r.GlobalnetRTTMedianM / r.NonGatewayRTTMedianM
	}
	return nil
}

// globalnetState is what a failed Globalnet measurement shows: both
// clusters' connections and GlobalIngressIPs.
func globalnetState(sbx func(...string) *exec.Cmd, bin, state string) string {
	var b strings.Builder
	for _, c := range []string{"c1", "c2"} {
		out, _ := sbx("admin", "--", filepath.Join(bin, "straitctl"), "show", "connections", "--kubeconfig", filepath.Join(state, "admin", c+".kubeconfig")).CombinedOutput()
		fmt.Fprintf(&b, "%s: straitctl show connections:\n%s\n", c, out)
		out, _ = kubectl("--kubeconfig", filepath.Join(state, c+".kubeconfig"), "get", "globalingressips.strait.dev", "-A", "-o", "yaml").CombinedOutput()
		fmt.Fprintf(&b, "%s: GlobalIngressIPs:\n%s\n", c, out)
	}
	return b.String()
}

func gateways(c string, dataplane bool) string {
	if dataplane {
		return c + "-n1," + c + "-n2"
	}
	return c + "-n1"
}

// benchPod runs a test pod (serving, so its UDP echo answers the failover
// probe) on node, labelled app=<name> (the Globalnet run's headless Service
// selects it so), and returns its IPs, primary first (one per family).
func benchPod(kc, name, node string) ([]string, error) {
	manifest := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%[1]s","namespace":"default","labels":{"app":"%[1]s"}},"spec":{"nodeName":"%[2]s","containers":[{"name":"c","image":"strait/testpod","args":["serve"]}]}}`, name, node)
	cmd := kubectl("--kubeconfig", kc, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench pod: %v\n%s", err, out)
	}
	if out, err := kubectl("--kubeconfig", kc, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench pod: %v\n%s", err, out)
	}
	out, err := kubectl("--kubeconfig", kc, "get", "pod", name, "-o", "jsonpath={.status.podIPs[*].ip}").Output()
	if err != nil {
		return nil, fmt.Errorf("bench pod %s: IPs: %w", name, err)
	}
	return strings.Fields(string(out)), nil
}

// kubectl runs the kubectl built from source with the other Kubernetes
// binaries, never one that happens to be on PATH.
func kubectl(args ...string) *exec.Cmd { return exec.Command(kubectlPath(), args...) }

// kubectlPath is where "make kube-binaries" puts kubectl.
func kubectlPath() string {
	dir, err := kubetest.BinDir()
	if err != nil {
		// run checked BinDir first; a path that does not exist, so that an
		// error names it.
		return filepath.Join(string(filepath.Separator), "kubernetes-binaries-not-built", "kubectl")
	}
	return filepath.Join(dir, "kubectl")
}

// iperf runs server (one test, then it exits) and client; returns Mb/s
// received.
func iperf(server, client *exec.Cmd) (float64, error) {
	if err := server.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	var out []byte
	var err error
	for range 20 { // until the server listens
		time.Sleep(200 * time.Millisecond)
		c := exec.Command(client.Path, client.Args[1:]...)
		if out, err = c.Output(); err == nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v\n%s", err, out)
	}
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Bytes float64 `json:"bytes"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if rep.End.SumReceived.BitsPerSecond == 0 {
		// Counted as 0 (the pair's ratio is 0, which widens the spread),
		// but said why: seen now and then on the loaded machine
		// (docs/throughput.md).
		fmt.Printf("iperf3 %s: nothing received (sent %.0f bytes, received %.0f; iperf3 error %q)\n",
			strings.Join(client.Args[1:], " "), rep.End.SumSent.Bytes, rep.End.SumReceived.Bytes, rep.Error)
	}
	return rep.End.SumReceived.BitsPerSecond / 1e6, nil
}

// rtt runs ping and returns the median and 99th percentile in milliseconds.
func rtt(cmd *exec.Cmd) (median, p99 float64, err error) {
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ping: %v\n%s", err, out)
	}
	var ms []float64
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "time="); i >= 0 {
			f := strings.Fields(line[i+5:])
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				ms = append(ms, v)
			}
		}
	}
	if len(ms) == 0 {
		return 0, 0, errors.New("ping: no replies")
	}
	sort.Float64s(ms)
	return ms[len(ms)/2], ms[min(len(ms)-1, len(ms)*99/100)], nil
}

// bare sets up one side of the bare cable in the current namespace and waits.
func bare(args []string) error {
	if len(args) != 8 {
		return errors.New("bare: want driver device key peerKey addr peerAddr peerUnderlay readyFile")
	}
	driver, dev, key, peerKey, addr, peerAddr, peerUnderlay, ready := args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7]
	return bareSide(context.Background(), driver, dev, key, peerKey, netip.MustParseAddr(addr), netip.MustParseAddr(peerAddr), netip.MustParseAddr(peerUnderlay), ready)
}
