// Package benchmark measures the throughput and the round-trip times
// between clusters with the Strait test workload: a pod on each cluster's
// active gateway node and one on a non-gateway node (whose traffic also
// crosses the route agents' overlay), each pair of clusters in turn, one
// measurement at a time so that they do not share the cable. It is the
// library of "straitctl benchmark".
package benchmark

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"text/tabwriter"
	"time"

	"strait.dev/strait/pkg/probe"
)

// Kinds of benchmark.
const (
	Throughput = "throughput"
	Latency    = "latency"
)

const (
	// DefaultDuration is how long each measurement runs: long enough for
	// TCP's window to open and for a thousand RTT samples at
	// latencyInterval.
	DefaultDuration = 5 * time.Second
	// latencyInterval is the UDP probe's interval: fine-grained, light
	// enough not to load the path it measures.
	latencyInterval = 5 * time.Millisecond
	namespacePrefix = "strait-benchmark"
)

// Options say what to measure.
type Options struct {
	// Kind is Throughput or Latency.
	Kind string
	// Image is the test workload's image (probe.DefaultImage).
	Image string
	// Duration is each measurement's; 0 is DefaultDuration.
	Duration time.Duration
	// Log receives progress lines, printf-style; nil drops them.
	Log func(format string, args ...any)
}

// Result is one measurement between two test pods.
type Result struct {
	From      string          `json:"from"`
	To        string          `json:"to"`
	Placement probe.Placement `json:"placement"`
	// Gbps is the throughput in gigabits (10^9 bits) per second, as the
	// receiving pod counted it (throughput).
	Gbps float64 `json:"gbps,omitempty"`
	// RTTP50Ms, RTTP99Ms and RTTMaxMs are round-trip times in
	// milliseconds, and Sent and Lost the probes (latency).
	RTTP50Ms float64 `json:"rttP50Ms,omitempty"`
	RTTP99Ms float64 `json:"rttP99Ms,omitempty"`
	RTTMaxMs float64 `json:"rttMaxMs,omitempty"`
	Sent     int64   `json:"sent,omitempty"`
	Lost     int64   `json:"lost,omitempty"`
	// Error says why the measurement failed.
	Error string `json:"error,omitempty"`
}

// Report is a whole run.
type Report struct {
	Kind     string   `json:"kind"`
	Duration string   `json:"duration"`
	Results  []Result `json:"results"`
}

// Err is nil when every measurement ran.
func (r *Report) Err() error {
	n := 0
	for _, x := range r.Results {
		if x.Error != "" {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("%d of %d measurements failed", n, len(r.Results))
	}
	return nil
}

// PrintTable writes the results as a table.
func (r *Report) PrintTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if r.Kind == Throughput {
		fmt.Fprintln(tw, "FROM\tTO\tPLACEMENT\tGBIT/S\tERROR")
		for _, x := range r.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.From, x.To, x.Placement, figure(x.Error, "%.3f", x.Gbps), dash(x.Error))
		}
	} else {
		fmt.Fprintln(tw, "FROM\tTO\tPLACEMENT\tRTT P50 MS\tRTT P99 MS\tRTT MAX MS\tLOST\tERROR")
		for _, x := range r.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.From, x.To, x.Placement, figure(x.Error, "%.3f", x.RTTP50Ms),
				figure(x.Error, "%.3f", x.RTTP99Ms), figure(x.Error, "%.3f", x.RTTMaxMs), figure(x.Error, "%d/%d", x.Lost, x.Sent), dash(x.Error))
		}
	}
	return tw.Flush()
}

func figure(err, format string, a ...any) string {
	if err != "" {
		return "-"
	}
	return fmt.Sprintf(format, a...)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Run measures between every two clusters (at least two), from the first
// to the second of each pair, once per placement both have. A measurement
// that fails is a Result with Error; errors are what kept the run from
// measuring (test pods that never became ready, say). The test namespace is
// deleted before Run returns.
func Run(ctx context.Context, clusters []*probe.Cluster, o Options) (*Report, error) {
	if len(clusters) < 2 {
		return nil, fmt.Errorf("benchmark needs at least two clusters, got %d: give several --kubeconfig or --context", len(clusters))
	}
	if o.Kind != Throughput && o.Kind != Latency {
		return nil, fmt.Errorf("benchmark %q: want %s or %s", o.Kind, Throughput, Latency)
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			o.Log(format, args...)
		}
	}
	specs := map[*probe.Cluster][]probe.PodSpec{}
	placements := map[string][]probe.Placement{}
	for _, c := range clusters {
		n, err := probe.FindNodes(ctx, c)
		if err != nil {
			return nil, err
		}
		if n.ActiveGateway == "" {
			return nil, fmt.Errorf("%s has no active gateway: see straitctl show gateways", c.ID)
		}
		for _, pl := range []probe.Placement{probe.OnGateway, probe.OffGateway} {
			if node := n.Node(pl); node != "" {
				placements[c.ID] = append(placements[c.ID], pl)
				specs[c] = append(specs[c], probe.PodSpec{
					Name: "benchmark-" + string(pl), Node: node, Ready: probe.HTTPPort,
					Args: []string{"serve", "--http", strconv.Itoa(probe.HTTPPort), "--udp-echo", strconv.Itoa(probe.UDPEchoPort),
						"--sink", strconv.Itoa(probe.SinkPort)},
				})
			}
		}
	}
	s, err := probe.NewSession(ctx, clusters, namespacePrefix, o.Image)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.Log = o.Log
	logf("test namespace %s; starting test pods (image %s)", s.Namespace, o.Image)
	pods, err := s.StartPods(ctx, specs)
	if err != nil {
		return nil, err
	}
	rep := &Report{Kind: o.Kind, Duration: o.Duration.String()}
	for i, a := range clusters {
		for _, b := range clusters[i+1:] {
			for _, pl := range placements[a.ID] {
				from, to := pods[a.ID+"/benchmark-"+string(pl)], pods[b.ID+"/benchmark-"+string(pl)]
				if to == nil {
					continue
				}
				logf("%s: %s/%s (%s) -> %s/%s (%s), %s", o.Kind, a.ID, pl, from.Node, b.ID, pl, to.Node, o.Duration)
				res := Result{From: a.ID + "/" + from.Node, To: b.ID + "/" + to.Node, Placement: pl}
				if o.Kind == Throughput {
					measureThroughput(ctx, s, from, to, o.Duration, &res)
				} else {
					measureLatency(ctx, s, from, to, o.Duration, &res)
				}
				rep.Results = append(rep.Results, res)
				if err := ctx.Err(); err != nil {
					return rep, err
				}
			}
		}
	}
	return rep, nil
}

func measureThroughput(ctx context.Context, s *probe.Session, from, to *probe.Pod, d time.Duration, res *Result) {
	var r probe.ThroughputReport
	err := s.Testpod(ctx, from, &r, "throughput", "--tcp", net.JoinHostPort(to.IP, strconv.Itoa(probe.SinkPort)), "--duration", d.String())
	switch {
	case err != nil:
		res.Error = err.Error()
	case !r.OK:
		res.Error = r.Error
	default:
		res.Gbps = r.Gbps
	}
}

func measureLatency(ctx context.Context, s *probe.Session, from, to *probe.Pod, d time.Duration, res *Result) {
	var r probe.PingReport
	err := s.Testpod(ctx, from, &r, "ping", "--udp", net.JoinHostPort(to.IP, strconv.Itoa(probe.UDPEchoPort)),
		"--interval", latencyInterval.String(), "--duration", d.String())
	switch {
	case err != nil:
		res.Error = err.Error()
	case !r.OK:
		res.Error = r.Error
	default:
		res.RTTP50Ms, res.RTTP99Ms, res.RTTMaxMs, res.Sent, res.Lost = r.RTTP50Ms, r.RTTP99Ms, r.RTTMaxMs, r.Sent, r.Lost
	}
}
