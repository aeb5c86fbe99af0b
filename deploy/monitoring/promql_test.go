package monitoring

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// promqlWords are PromQL's keywords and aggregation operators: identifiers
// that are not metric names although no parenthesis may follow them
// ("sum by (x) (...)", "a and on (x) b", "x offset 5m").
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "inf": true, "nan": true,
}

// labelLists are the keywords followed by a list of label names.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// metricNames returns the metric names a PromQL expression selects, sorted
// and once each: the identifiers that are neither keywords, functions
// (followed by a parenthesis), label names (in braces and label lists),
// strings, numbers, durations (in brackets, or after offset) nor Grafana
// variables ($name). It reads names, not the whole grammar: promtool
// checks the syntax. Errors: an unterminated string, brace or bracket.
func metricNames(expr string) ([]string, error) {
	var out []string
	s := []byte(expr)
	i := 0
	skipSpace := func(j int) int {
		for j < len(s) && strings.IndexByte(" \t\r\n", s[j]) >= 0 {
			j++
		}
		return j
	}
	// skipTo returns the index after the close matching the open at j,
	// stepping over strings.
	skipTo := func(j int, open, close byte) (int, error) {
		depth := 0
		for ; j < len(s); j++ {
			switch s[j] {
			case '"', '\'', '`':
				end, err := skipString(s, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unterminated %c in %q", open, expr)
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			end, err := skipTo(i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = end
		case c == '[':
			end, err := skipTo(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#': // a comment, to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '$' || c >= '0' && c <= '9' || c == '.':
			// A Grafana variable, a number or a duration.
			i++
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := string(s[i:j])
			next := skipSpace(j)
			switch {
			case labelLists[strings.ToLower(word)] && next < len(s) && s[next] == '(':
				end, err := skipTo(next, '(', ')')
				if err != nil {
					return nil, err
				}
				j = end
			case promqlWords[strings.ToLower(word)]:
			case next < len(s) && s[next] == '(': // a function
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// skipString returns the index after the string that starts at s[i],
// honouring backslash escapes except in backquoted strings.
func skipString(s []byte, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string in %q", s)
}

func TestMetricNamesOfExpr(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{"up", []string{"up"}},
		{`(max(strait_gateway_active) or vector(0)) < 1`, []string{"strait_gateway_active"}},
		{`sum by (instance) (rate(coredns_lighthouse_watch_errors_total{type="a{b}[c]",x!~'y"z'}[5m])) > 0`, []string{"coredns_lighthouse_watch_errors_total"}},
		{"a_total / on (job) group_left (node) b_info offset 5m and bool c:rule", []string{"a_total", "b_info", "c:rule"}},
		{"sum without(x)(a) unless ignoring(y) b", []string{"a", "b"}},
		{"rate(x_bytes_total[$__rate_interval]) * 1e3 + 0.5 - time() - $var", []string{"x_bytes_total"}},
		{`max(strait_globalnet_allocated_ips) / max(strait_globalnet_pool_ips) > 0.9`, []string{"strait_globalnet_allocated_ips", "strait_globalnet_pool_ips"}},
		{"topk(3, x) # a comment naming y\n+ z", []string{"x", "z"}},
		{`{__name__="x"}`, nil},
	} {
		got, err := metricNames(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`x{a="b}`, "rate(x[5m)", `"abc`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
