// Command dns is "make bench-dns": it measures strait-dns (CoreDNS with
// Strait's lighthouse plugin, answering clusterset.local) against stock
// CoreDNS's kubernetes plugin answering the equivalent cluster.local names,
// in the same run, on the same cores, with the same query file.
//
// One real kube-apiserver (test/kubetest, Strait's CRDs) holds N
// ServiceImports with the EndpointSlices Lighthouse writes for them, and
// the N equivalent ordinary Services with their EndpointSlices (every
// tenth headless, with three ready endpoints and one not ready). Both
// servers run on loopback, pinned to the same CPU, without the cache
// plugin; a Go load generator over github.com/miekg/dns's wire format,
// pinned to the other CPUs, sends the query file (hits, search-path
// misses, headless A, SRV) from W workers in a closed loop for a fixed
// time, alternating the servers over several rounds. Memory is each
// server's RSS when it has synced with nothing loaded and with its own N
// objects loaded.
//
// The figures go to _output/bench/dns.json; a summary is printed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"strait.dev/strait/test/corednstest"
	"strait.dev/strait/test/kubetest"
)

// Defaults of the flags; each can also be set by the environment variable
// named beside it, so that "make bench-dns" takes them too.
const (
	// defaultImports is the figure: 5,000 imports.
	defaultImports = 5000
	// defaultNamespaces spreads them as a cluster with many teams would.
	defaultNamespaces = 50
	// defaultHeadlessEvery makes 10% of the services headless.
	defaultHeadlessEvery = 10
	// defaultHeadlessEndpoints ready endpoints per headless service: an
	// answer of a few A records, as a small StatefulSet gives.
	defaultHeadlessEndpoints = 3
	// defaultWorkers saturates one CPU of CoreDNS on loopback.
	defaultWorkers = 16
	// defaultDuration and defaultRounds: 2 sides x 4 rounds x (5 s + 1 s
	// warm-up + 2.5 s at one worker) keeps the measuring near 70 s.
	defaultDuration = 5 * time.Second
	defaultRounds   = 4
	// defaultQueries is the length of the query file: more distinct names
	// than the 5,000 services, so that no side gains from repetition.
	defaultQueries = 20000
	defaultMix     = "hit=40,miss=40,headless=10,srv=10"
	// warmup runs before each measurement and is not recorded.
	warmup = time.Second
	// starvedCPU: a server less busy than this under the closed loop was
	// held back by the load generator, not by its own work (about 0.9 on
	// an idle two-core machine).
	starvedCPU = 0.5
	// settle is how long a freshly synced server idles before its RSS is
	// read, so that start-up garbage has been collected once.
	settle = 2 * time.Second
)

type config struct {
	Imports           int     `json:"imports"`
	Namespaces        int     `json:"namespaces"`
	HeadlessEvery     int     `json:"headlessEvery"`
	HeadlessEndpoints int     `json:"headlessEndpoints"`
	Workers           int     `json:"workers"`
	DurationS         float64 `json:"durationSeconds"`
	Rounds            int     `json:"rounds"`
	Queries           int     `json:"queries"`
	Mix               string  `json:"mix"`
	ServerCPUs        string  `json:"serverCpus"`
	LoadCPUs          string  `json:"loadGeneratorCpus"`
	NumCPU            int     `json:"numCpu"`

	duration time.Duration
	sides    []string
	strait   string
	stock    string
	out      string
}

// sideResult is one side's figures.
type sideResult struct {
	side
	QPS       float64   `json:"qps"`
	QPSRounds []float64 `json:"qpsRounds"`
	// QPSMedian is the median of the rounds: one round disturbed by
	// something else on the machine moves it less than the total.
	QPSMedian float64 `json:"qpsMedianRound"`
	Answered  int     `json:"answered"`
	Timeouts  int     `json:"timeouts"`
	Wrong     int     `json:"wrongAnswers"`
	// ServerCPU is the server's CPU time over the saturated
	// measurements' wall time (1.0 is one CPU busy): well below the CPUs
	// it is pinned to means the load generator, not the server, was the
	// limit. CPUPerQueryUs is its CPU time per answered query, which does
	// not depend on how hard it was pushed.
	ServerCPU     float64 `json:"serverCpu"`
	CPUPerQueryUs float64 `json:"serverCpuPerQueryUs"`
	// QPSPerCPU is answered queries per second of server CPU: the
	// throughput of one saturated CPU, which the load generator on two
	// cores cannot reach.
	QPSPerCPU float64 `json:"qpsPerServerCpu"`
	// Latency under saturation (Workers in a closed loop), all kinds and
	// by kind.
	Latency       latencyStats            `json:"latency"`
	LatencyByKind map[string]latencyStats `json:"latencyByKind"`
	// Latency of one worker alone: the server's own time per query
	// plus loopback, without queueing.
	SingleLatency latencyStats `json:"singleWorkerLatency"`
	Memory        memory       `json:"memory"`
}

// memory is a side's RSS at each stage, in MiB, and the growth per 1,000
// of its own objects (imports for clusterset.local sides, Services for
// stock's cluster.local).
type memory struct {
	EmptyMiB       float64 `json:"rssEmptyMiB"`
	ImportsMiB     float64 `json:"rssImportsLoadedMiB"`
	AllMiB         float64 `json:"rssAllLoadedMiB"`
	AfterBenchMiB  float64 `json:"rssAfterBenchMiB"`
	PerThousandMiB float64 `json:"perThousandOwnObjectsMiB"`
	// OtherMiB is what the other side's N objects added: ordinary
	// Services for a clusterset.local side, imports for stock.
	OtherMiB float64 `json:"otherSideObjectsMiB"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-dns:", err)
		os.Exit(1)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseFlags() (config, error) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		return config{}, err
	}
	var c config
	var sides string
	defaultStock, _ := corednstest.StockBinary()
	flag.IntVar(&c.Imports, "imports", envInt("BENCH_DNS_IMPORTS", defaultImports), "imports (and as many ordinary Services) to load [$BENCH_DNS_IMPORTS]")
	flag.IntVar(&c.Namespaces, "namespaces", envInt("BENCH_DNS_NAMESPACES", defaultNamespaces), "namespaces to spread them over [$BENCH_DNS_NAMESPACES]")
	flag.IntVar(&c.HeadlessEvery, "headless-every", envInt("BENCH_DNS_HEADLESS_EVERY", defaultHeadlessEvery), "every n-th service is headless; 0 for none [$BENCH_DNS_HEADLESS_EVERY]")
	flag.IntVar(&c.HeadlessEndpoints, "headless-endpoints", envInt("BENCH_DNS_HEADLESS_ENDPOINTS", defaultHeadlessEndpoints), "ready endpoints per headless service (1-3) [$BENCH_DNS_HEADLESS_ENDPOINTS]")
	flag.IntVar(&c.Workers, "workers", envInt("BENCH_DNS_WORKERS", defaultWorkers), "concurrent query workers [$BENCH_DNS_WORKERS]")
	flag.DurationVar(&c.duration, "duration", envDuration("BENCH_DNS_DURATION", defaultDuration), "length of one measurement [$BENCH_DNS_DURATION]")
	flag.IntVar(&c.Rounds, "rounds", envInt("BENCH_DNS_ROUNDS", defaultRounds), "alternating rounds [$BENCH_DNS_ROUNDS]")
	flag.IntVar(&c.Queries, "queries", envInt("BENCH_DNS_QUERIES", defaultQueries), "length of the query file [$BENCH_DNS_QUERIES]")
	flag.StringVar(&c.Mix, "mix", envString("BENCH_DNS_MIX", defaultMix), "percent of each query kind [$BENCH_DNS_MIX]")
	flag.StringVar(&sides, "sides", envString("BENCH_DNS_SIDES", "strait,stock"), "servers to measure: strait, stock, stock-mcs (stock CoreDNS's multicluster option) [$BENCH_DNS_SIDES]")
	flag.StringVar(&c.strait, "strait-dns", envString("BENCH_DNS_STRAIT", filepath.Join(root, "_output", "bin", "strait-dns")), "strait-dns binary [$BENCH_DNS_STRAIT]")
	flag.StringVar(&c.stock, "coredns", envString("BENCH_DNS_COREDNS", defaultStock), "stock CoreDNS binary [$BENCH_DNS_COREDNS]")
	flag.StringVar(&c.ServerCPUs, "server-cpus", envString("BENCH_DNS_SERVER_CPUS", ""), "CPUs for the DNS servers (taskset list); default the last CPU when there are two or more [$BENCH_DNS_SERVER_CPUS]")
	flag.StringVar(&c.out, "out", filepath.Join(root, "_output", "bench", "dns.json"), "where to write the JSON")
	flag.Parse()
	c.DurationS = c.duration.Seconds()
	c.sides = strings.Split(sides, ",")
	c.NumCPU = runtime.NumCPU()
	if c.Imports < 1 || c.Namespaces < 1 || c.Workers < 1 || c.Rounds < 1 || c.Queries < 100 {
		return c, errors.New("imports, namespaces, workers and rounds must be positive, queries at least 100")
	}
	if c.HeadlessEndpoints < 1 || c.HeadlessEndpoints > 3 {
		return c, errors.New("headless-endpoints must be 1, 2 or 3")
	}
	if _, err := parseMix(c.Mix); err != nil {
		return c, err
	}
	if c.ServerCPUs == "" && c.NumCPU >= 2 {
		c.ServerCPUs = strconv.Itoa(c.NumCPU - 1)
	}
	return c, nil
}

func run() error {
	cfg, err := parseFlags()
	if err != nil {
		return err
	}
	m, _ := parseMix(cfg.Mix)
	var sides []side
	for _, name := range cfg.sides {
		switch name {
		case "strait":
			if _, err := os.Stat(cfg.strait); err != nil {
				return fmt.Errorf("strait-dns: %w (run 'make build', or BENCH_DNS_SIDES=stock-mcs,stock to compare stock's multicluster option instead)", err)
			}
			sides = append(sides, straitSide(cfg.strait))
		case "stock":
			sides = append(sides, stockSide(cfg.stock))
		case "stock-mcs":
			sides = append(sides, stockMCSSide(cfg.stock))
		default:
			return fmt.Errorf("unknown side %q: strait, stock or stock-mcs", name)
		}
	}
	if _, err := os.Stat(cfg.stock); err != nil {
		return fmt.Errorf("stock CoreDNS: %w (run 'make kube-binaries')", err)
	}

	// The load generator (and the apiserver and etcd it starts) keep off
	// the servers' CPUs.
	if cfg.ServerCPUs != "" {
		server, err := cpuList(cfg.ServerCPUs)
		if err != nil {
			return err
		}
		var rest []int
		for c := range cfg.NumCPU {
			if !server[c] {
				rest = append(rest, c)
			}
		}
		if len(rest) > 0 {
			if err := pinSelf(rest); err != nil {
				return err
			}
			// Go sized GOMAXPROCS from the CPUs it had at start; more Ps
			// than CPUs only adds spinning threads to the generator.
			runtime.GOMAXPROCS(len(rest))
			cfg.LoadCPUs = joinInts(rest)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	fmt.Printf("bench-dns: %d imports and %d Services over %d namespaces; sides %s; servers on CPU %s, load generator on %s\n",
		cfg.Imports, cfg.Imports, cfg.Namespaces, strings.Join(cfg.sides, ","), orAll(cfg.ServerCPUs), orAll(cfg.LoadCPUs))
	env, err := kubetest.Start(ctx, kubetest.Options{APIServerArgs: []string{
		// 5,000 ClusterIPs do not fit the harness's /24.
		"--service-cluster-ip-range=10.96.0.0/16",
	}})
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	defer env.Stop()
	dir, err := os.MkdirTemp("", "strait-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	set := dataSet(cfg.Imports, cfg.Namespaces, cfg.HeadlessEvery, cfg.HeadlessEndpoints)
	if err := createNamespaces(ctx, cs, set); err != nil {
		return err
	}
	qs := queryFile(set, m, cfg.Queries)
	wires := map[string][]wire{}
	for _, s := range sides {
		wires[s.Name] = render(qs, set, s.Zone)
	}
	results := make([]sideResult, len(sides))
	for i, s := range sides {
		results[i].side = s
		results[i].LatencyByKind = map[string]latencyStats{}
	}

	// startAll starts every side fresh, checks the answers of those whose
	// objects are loaded, and reads the RSS.
	startAll := func(stage string, loaded func(side) bool, rss func(*memory) *float64) ([]*corednstest.Server, error) {
		var servers []*corednstest.Server
		for i, s := range sides {
			srv, err := s.start(ctx, env.Kubeconfig, dir, cfg.ServerCPUs)
			if err != nil {
				return servers, err
			}
			servers = append(servers, srv)
			if loaded(s) {
				if err := check(srv.Addr, wires[s.Name]); err != nil {
					return servers, fmt.Errorf("%s answers wrong (%s): %w", s.Name, stage, err)
				}
			}
			time.Sleep(settle)
			b, err := srv.RSS()
			if err != nil {
				return servers, err
			}
			*rss(&results[i].Memory) = mib(b)
			fmt.Printf("  %-9s %-16s RSS %6.1f MiB\n", s.Name, stage, mib(b))
		}
		return servers, nil
	}
	stopAll := func(servers []*corednstest.Server) {
		for _, s := range servers {
			s.Stop()
		}
	}
	clusterset := func(s side) bool { return s.Zone != "cluster.local" }
	none := func(side) bool { return false }
	all := func(side) bool { return true }

	fmt.Println("memory:")
	servers, err := startAll("nothing loaded", none, func(m *memory) *float64 { return &m.EmptyMiB })
	stopAll(servers)
	if err != nil {
		return err
	}
	t := time.Now()
	if err := loadImports(ctx, env.Config, set); err != nil {
		return err
	}
	fmt.Printf("  loaded %d ServiceImports and their EndpointSlices in %s\n", len(set), time.Since(t).Round(time.Millisecond))
	servers, err = startAll("imports loaded", clusterset, func(m *memory) *float64 { return &m.ImportsMiB })
	stopAll(servers)
	if err != nil {
		return err
	}
	t = time.Now()
	if err := loadServices(ctx, env.Config, set); err != nil {
		return err
	}
	fmt.Printf("  loaded %d Services and their EndpointSlices in %s\n", len(set), time.Since(t).Round(time.Millisecond))
	servers, err = startAll("all loaded", all, func(m *memory) *float64 { return &m.AllMiB })
	defer stopAll(servers)
	if err != nil {
		return err
	}

	fmt.Printf("queries: %d workers, %s per measurement, %d rounds, %d queries (%s)\n", cfg.Workers, cfg.duration, cfg.Rounds, len(qs), cfg.Mix)
	sat := make([]measurement, len(sides))
	single := make([]measurement, len(sides))
	cpu := make([]time.Duration, len(sides))
	// One unrecorded round first: the apiserver and etcd, which share the
	// load generator's CPUs, are still busy for a few seconds after the
	// bulk load, and the first round measured them.
	for i, srv := range servers {
		if _, err := blast(srv.Addr, wires[sides[i].Name], cfg.Workers, 3*warmup); err != nil {
			return err
		}
	}
	for r := range cfg.Rounds {
		// Alternate the order, so that neither side always goes first.
		for j := range sides {
			i := (j + r) % len(sides)
			srv, w := servers[i], wires[sides[i].Name]
			if _, err := blast(srv.Addr, w, cfg.Workers, warmup); err != nil {
				return err
			}
			before, err := srv.CPUTime()
			if err != nil {
				return err
			}
			res, err := blast(srv.Addr, w, cfg.Workers, cfg.duration)
			if err != nil {
				return err
			}
			after, err := srv.CPUTime()
			if err != nil {
				return err
			}
			cpu[i] += after - before
			one, err := blast(srv.Addr, w, 1, cfg.duration/2)
			if err != nil {
				return err
			}
			qps := float64(res.answered) / res.elapsed.Seconds()
			results[i].QPSRounds = append(results[i].QPSRounds, round1(qps))
			fmt.Printf("  round %d %-9s %8.0f q/s  server CPU %3.0f%%  timeouts %d  wrong %d\n", r+1, sides[i].Name, qps,
				100*(after-before).Seconds()/res.elapsed.Seconds(), res.timeouts, res.wrong)
			merge(&sat[i], res)
			merge(&single[i], one)
		}
	}
	for i, srv := range servers {
		b, err := srv.RSS()
		if err != nil {
			return err
		}
		res := &results[i]
		res.Memory.AfterBenchMiB = mib(b)
		res.QPS = round1(float64(sat[i].answered) / sat[i].elapsed.Seconds())
		res.QPSMedian = median(res.QPSRounds)
		res.Answered, res.Timeouts, res.Wrong = sat[i].answered, sat[i].timeouts, sat[i].wrong
		res.ServerCPU = float64(int(cpu[i].Seconds()/sat[i].elapsed.Seconds()*1000+0.5)) / 1000
		if sat[i].answered > 0 {
			res.CPUPerQueryUs = round1(float64(cpu[i].Microseconds()) / float64(sat[i].answered))
		}
		if cpu[i] > 0 {
			res.QPSPerCPU = round1(float64(sat[i].answered) / cpu[i].Seconds())
		}
		var everything, one []time.Duration
		for k := range kinds {
			everything = append(everything, sat[i].lat[k]...)
			one = append(one, single[i].lat[k]...)
			res.LatencyByKind[k.String()] = stats(sat[i].lat[k])
		}
		res.Latency, res.SingleLatency = stats(everything), stats(one)
		own, other := res.Memory.ImportsMiB-res.Memory.EmptyMiB, res.Memory.AllMiB-res.Memory.ImportsMiB
		if !clusterset(res.side) {
			own, other = other, own
		}
		res.Memory.PerThousandMiB = round1(own / (float64(cfg.Imports) / 1000))
		res.Memory.OtherMiB = round1(other)
	}

	var rat *ratios
	if a, b := find(results, "strait"), find(results, "stock"); a != nil && b != nil {
		rat = ratio(a, b)
	} else if a, b := find(results, "stock-mcs"), find(results, "stock"); a != nil && b != nil {
		rat = ratio(a, b)
	}
	report := map[string]any{
		"date":    time.Now().UTC().Format(time.RFC3339),
		"config":  cfg,
		"sides":   results,
		"ratios":  rat,
		"seconds": round1(time.Since(began).Seconds()),
		"notes": []string{
			"ratios are the first clusterset.local side over stock: qps > 1 and latency < 1 favour it",
			"no cache plugin on any side; latency is under load by the workers in a closed loop, singleWorkerLatency with one worker",
			"serverCpu below the CPUs the servers are pinned to means the load generator was the limit of qps; qpsPerServerCpu (answers per second of server CPU) is then the throughput figure",
			"misses are the search-path names ndots:5 produces, under each side's own zone (its own NXDOMAIN path)",
			"memory per 1,000 is the RSS growth from the side's own objects: imports for clusterset.local sides, Services for stock",
		},
	}
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(report, "", "  ")
	if err := os.WriteFile(cfg.out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	printSummary(cfg, results, rat)
	fmt.Printf("\nwritten %s in %s\n", cfg.out, time.Since(began).Round(time.Second))
	for _, r := range results {
		if r.Wrong > 0 || r.Timeouts > r.Answered/1000 {
			return fmt.Errorf("%s: %d wrong answers and %d timeouts of %d: the figures measure errors", r.Name, r.Wrong, r.Timeouts, r.Answered)
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return round1((s[len(s)/2-1] + s[len(s)/2]) / 2)
}

func merge(into *measurement, r measurement) {
	into.answered += r.answered
	into.timeouts += r.timeouts
	into.wrong += r.wrong
	into.elapsed += r.elapsed
	for k := range kinds {
		into.lat[k] = append(into.lat[k], r.lat[k]...)
	}
}

func find(rs []sideResult, name string) *sideResult {
	for i := range rs {
		if rs[i].Name == name {
			return &rs[i]
		}
	}
	return nil
}

// ratios are one side's figures over stock's.
type ratios struct {
	// Side is the side compared with stock: strait, or stock-mcs when
	// strait is not measured.
	Side              string  `json:"side"`
	QPS               float64 `json:"qps"`
	QPSPerCPU         float64 `json:"qpsPerServerCpu"`
	QPSMedian         float64 `json:"qpsMedianRound"`
	LatencyMean       float64 `json:"latencyMean"`
	LatencyP50        float64 `json:"latencyP50"`
	LatencyP99        float64 `json:"latencyP99"`
	SingleWorkerMean  float64 `json:"singleWorkerLatencyMean"`
	CPUPerQuery       float64 `json:"serverCpuPerQuery"`
	MemoryPerThousand float64 `json:"memoryPerThousand"`
	RSSAllLoaded      float64 `json:"rssAllLoaded"`
}

func ratio(a, b *sideResult) *ratios {
	div := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return float64(int(x/y*1000+0.5)) / 1000
	}
	return &ratios{
		Side:              a.Name,
		QPS:               div(a.QPS, b.QPS),
		QPSPerCPU:         div(a.QPSPerCPU, b.QPSPerCPU),
		QPSMedian:         div(a.QPSMedian, b.QPSMedian),
		LatencyMean:       div(a.Latency.MeanMs, b.Latency.MeanMs),
		LatencyP50:        div(a.Latency.P50Ms, b.Latency.P50Ms),
		LatencyP99:        div(a.Latency.P99Ms, b.Latency.P99Ms),
		SingleWorkerMean:  div(a.SingleLatency.MeanMs, b.SingleLatency.MeanMs),
		CPUPerQuery:       div(a.CPUPerQueryUs, b.CPUPerQueryUs),
		MemoryPerThousand: div(a.Memory.PerThousandMiB, b.Memory.PerThousandMiB),
		RSSAllLoaded:      div(a.Memory.AllMiB, b.Memory.AllMiB),
	}
}

func printSummary(cfg config, rs []sideResult, rat *ratios) {
	fmt.Printf("\nbench-dns: %d imports / Services, %d workers, %d x %s per side, CPU %s for the servers\n",
		cfg.Imports, cfg.Workers, cfg.Rounds, cfg.duration, orAll(cfg.ServerCPUs))
	fmt.Printf("%-10s %-32s %8s %8s %9s %8s %8s %8s %9s %9s %8s %9s\n", "SIDE", "PLUGIN", "QPS", "SRV CPU", "QPS/CPU", "MEAN ms", "P50 ms", "P99 ms", "1-WKR ms", "RSS0 MiB", "RSS MiB", "MiB/1000")
	for _, r := range rs {
		fmt.Printf("%-10s %-32s %8.0f %8.2f %9.0f %8.3f %8.3f %8.3f %9.3f %9.1f %8.1f %9.2f\n", r.Name, r.Plugin, r.QPS, r.ServerCPU, r.QPSPerCPU,
			r.Latency.MeanMs, r.Latency.P50Ms, r.Latency.P99Ms, r.SingleLatency.MeanMs,
			r.Memory.EmptyMiB, r.Memory.AllMiB, r.Memory.PerThousandMiB)
	}
	for _, r := range rs {
		fmt.Printf("%-10s QPS by round %v, median %.0f\n", r.Name, r.QPSRounds, r.QPSMedian)
	}
	fmt.Printf("\n%-10s", "KIND p99")
	for _, r := range rs {
		fmt.Printf(" %14s", r.Name+" ms")
	}
	fmt.Println()
	for k := range kinds {
		fmt.Printf("%-10s", k)
		for _, r := range rs {
			l := r.LatencyByKind[k.String()]
			fmt.Printf(" %7.3f/%6.3f", l.MeanMs, l.P99Ms)
		}
		fmt.Println()
	}
	fmt.Println("(mean/p99 per kind)")
	for _, r := range rs {
		if r.ServerCPU < starvedCPU {
			fmt.Printf("\nwarning: %s was only %.0f%% busy: the load generator was starved (is something else running on the machine?); QPS and latency measure that, QPS per server CPU less so\n", r.Name, 100*r.ServerCPU)
		}
	}
	if rat != nil {
		fmt.Printf("\n%s/stock: QPS %.3fx (median round %.3fx), QPS per server CPU %.3fx, mean latency %.3fx, p99 %.3fx, one-worker mean %.3fx, memory per 1,000 %.3fx\n", rat.Side,
			rat.QPS, rat.QPSMedian, rat.QPSPerCPU, rat.LatencyMean, rat.LatencyP99, rat.SingleWorkerMean, rat.MemoryPerThousand)
	}
}

func mib(b int64) float64 { return round1(float64(b) / (1 << 20)) }

func round1(f float64) float64 { return float64(int(f*10+0.5)) / 10 }

// cpuList parses taskset's list syntax ("1", "0,2", "2-3").
func cpuList(s string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		for c := a; c <= b; c++ {
			out[c] = true
		}
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func orAll(cpus string) string {
	if cpus == "" {
		return "any"
	}
	return cpus
}
