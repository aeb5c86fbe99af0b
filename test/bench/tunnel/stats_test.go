package main

import (
	"math"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		v          []float64
		q, want    float64
		doesNotSay string
	}{
		{nil, 0.5, 0, "empty"},
		{[]float64{3}, 0.5, 3, "one value"},
		{[]float64{3, 1, 2}, 0.5, 2, "odd count, unsorted"},
		{[]float64{4, 1, 3, 2}, 0.5, 2.5, "even count: mean of the middle two"},
		{[]float64{1, 2, 3, 4, 5}, 0.25, 2, "Q1 on an order statistic"},
		{[]float64{1, 2, 3, 4, 5}, 0.75, 4, "Q3 on an order statistic"},
		{[]float64{1, 2, 3, 4}, 0.25, 1.75, "Q1 interpolated"},
		{[]float64{1, 2, 3, 4}, 0.75, 3.25, "Q3 interpolated"},
		{[]float64{5, 1, 9}, 0, 1, "min"},
		{[]float64{5, 1, 9}, 1, 9, "max"},
	} {
		if got := quantile(tc.v, tc.q); !near(got, tc.want) {
			t.Errorf("%s: quantile(%v, %v) = %v, want %v", tc.doesNotSay, tc.v, tc.q, got, tc.want)
		}
	}
	v := []float64{3, 1, 2}
	quantile(v, 0.5)
	if v[0] != 3 || v[1] != 1 || v[2] != 2 {
		t.Errorf("quantile sorted its input: %v", v)
	}
}

func TestRatioStats(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ratios     []float64
		median     float64
		iqr        float64
		conclusive bool
		reason     string
	}{
		{"tight", []float64{0.80, 0.82, 0.81, 0.79, 0.83}, 0.81, 0.02, true, ""},
		// IQR 0.3 of median 0.8 is 37.5 %.
		{"wide", []float64{0.5, 0.7, 0.8, 1.0, 1.1}, 0.8, 0.3, false, "IQR 0.300 is "},
		// Exactly at the threshold still concludes: IQR 1 = 0.2 * 5
		// (values exact in binary).
		{"at the threshold", []float64{4.5, 4.5, 5, 5.5, 5.5}, 5, 1, true, ""},
		{"too few pairs", []float64{0.8, 0.8, 0.8}, 0.8, 0, false, "only 3 pairs, at least 5 needed"},
		{"one wild pair does not decide", []float64{0.80, 0.81, 0.82, 0.80, 3.0}, 0.81, 0.02, true, ""},
		{"no pairs", nil, 0, 0, false, "no pairs"},
	} {
		s := newRatioStats(nil, nil, tc.ratios, LoadStats{})
		if !near(s.Median, tc.median) || math.Abs(s.IQR-tc.iqr) > 1e-9 {
			t.Errorf("%s: median %v IQR %v, want %v and %v", tc.name, s.Median, s.IQR, tc.median, tc.iqr)
		}
		if s.Conclusive != tc.conclusive || !strings.Contains(s.Reason, tc.reason) || (tc.reason == "" && s.Reason != "") {
			t.Errorf("%s: conclusive %v (%q), want %v (%q)", tc.name, s.Conclusive, s.Reason, tc.conclusive, tc.reason)
		}
	}
}

func TestLoadStats(t *testing.T) {
	l := newLoadStats([]float64{9.5, 2.1, 4.0, 3.0})
	if l.Samples != 4 || l.Min != 2.1 || l.Max != 9.5 || !near(l.Median, 3.5) {
		t.Errorf("load stats %+v", l)
	}
	if v, err := loadAvg1(); err != nil || v < 0 {
		t.Errorf("loadAvg1() = %v, %v", v, err)
	}
}
