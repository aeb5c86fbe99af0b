package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// minPairs is the fewest A/B pairs a ratio needs to be called conclusive:
// with fewer, one noisy pair moves the median and the quartiles say little.
const minPairs = 5

// maxIQRFraction is the widest spread a ratio may have and still be called
// conclusive: the interquartile range of the pair ratios at most this
// fraction of their median. 0.2 means the middle half of the pairs lies
// within about ±10 % of the median, about the size of the differences the
// issues ask about (0.8 against 0.9 of a bare cable); wider, and two runs of
// the same code can land on either side of such a goal.
const maxIQRFraction = 0.2

// RatioStats is one throughput ratio measured in A/B pairs: Strait's run
// (A) and its baseline's (B) alternate, each pair gives a ratio A/B, and
// the median of those ratios is the figure.
type RatioStats struct {
	// StraitMbps and BaseMbps are the per-run throughputs in Mb/s (iperf3's
	// received rate), in run order; pair i is StraitMbps[i] and
	// BaseMbps[i].
	StraitMbps []float64 `json:"straitMbps"`
	BaseMbps   []float64 `json:"baseMbps"`
	// PairRatios are StraitMbps[i] / BaseMbps[i] (for Globalnet, see
	// Result.Globalnet).
	PairRatios []float64 `json:"pairRatios"`
	// Median, Min, Max, Q1, Q3 and IQR (Q3 - Q1) describe PairRatios;
	// quartiles are linearly interpolated between order statistics.
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
	IQR    float64 `json:"iqr"`
	// Conclusive is false when there are fewer than minPairs pairs or the
	// IQR exceeds maxIQRFraction of the median; Reason says which.
	Conclusive bool   `json:"conclusive"`
	Reason     string `json:"reason,omitempty"`
	// Load is the machine's 1-minute load average while the pairs ran.
	Load LoadStats `json:"loadAvg1"`
}

// newRatioStats summarises pair ratios (one per pair, any order) with the
// runs' throughputs and the load while they ran.
func newRatioStats(strait, base, ratios []float64, load LoadStats) RatioStats {
	s := RatioStats{StraitMbps: strait, BaseMbps: base, PairRatios: ratios, Load: load}
	if len(ratios) == 0 {
		s.Reason = "no pairs"
		return s
	}
	s.Median = quantile(ratios, 0.5)
	s.Q1, s.Q3 = quantile(ratios, 0.25), quantile(ratios, 0.75)
	s.IQR = s.Q3 - s.Q1
	s.Min, s.Max = quantile(ratios, 0), quantile(ratios, 1)
	s.Conclusive, s.Reason = verdict(len(ratios), s.Median, s.IQR)
	return s
}

// verdict says whether n pair ratios with this median and IQR support a
// conclusion, and if not, why.
func verdict(n int, median, iqr float64) (bool, string) {
	switch {
	case n < minPairs:
		return false, fmt.Sprintf("only %d pairs, at least %d needed", n, minPairs)
	case median <= 0:
		return false, "median ratio is not positive"
	case iqr > maxIQRFraction*median:
		return false, fmt.Sprintf("IQR %.3f is %.0f%% of the median %.3f, over %.0f%%", iqr, 100*iqr/median, median, 100*maxIQRFraction)
	}
	return true, ""
}

// quantile is the q-quantile (0 <= q <= 1) of v, linearly interpolated
// between the order statistics (R's type 7, numpy's default); 0 for an
// empty v. v is not modified.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	h := q * float64(len(s)-1)
	lo := int(math.Floor(h))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}

// median is quantile(v, 0.5): the middle value, or the mean of the two
// middle ones.
func median(v []float64) float64 { return quantile(v, 0.5) }

// LoadStats is the 1-minute load average (/proc/loadavg's first field)
// sampled every loadInterval while a measurement ran.
type LoadStats struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	Median  float64 `json:"median"`
	Max     float64 `json:"max"`
}

func newLoadStats(v []float64) LoadStats {
	if len(v) == 0 {
		return LoadStats{}
	}
	return LoadStats{Samples: len(v), Min: quantile(v, 0), Median: quantile(v, 0.5), Max: quantile(v, 1)}
}

func (l LoadStats) String() string {
	return fmt.Sprintf("%.1f/%.1f/%.1f", l.Min, l.Median, l.Max)
}

// loadInterval is how often the load average is sampled: the kernel
// updates it every 5 s, so 1 s misses no change.
const loadInterval = time.Second

// loadSampler reads /proc/loadavg every loadInterval from start until
// stop.
type loadSampler struct {
	mu      sync.Mutex
	samples []float64
	done    chan struct{}
	wg      sync.WaitGroup
}

func startLoad() *loadSampler {
	l := &loadSampler{done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(loadInterval)
		defer t.Stop()
		for {
			if v, err := loadAvg1(); err == nil {
				l.mu.Lock()
				l.samples = append(l.samples, v)
				l.mu.Unlock()
			}
			select {
			case <-l.done:
				return
			case <-t.C:
			}
		}
	}()
	return l
}

// stop ends the sampling and returns its figures.
func (l *loadSampler) stop() LoadStats {
	close(l.done)
	l.wg.Wait()
	return newLoadStats(l.samples)
}

// loadAvg1 is the 1-minute load average from /proc/loadavg.
func loadAvg1() (float64, error) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/loadavg: empty")
	}
	return strconv.ParseFloat(f[0], 64)
}
