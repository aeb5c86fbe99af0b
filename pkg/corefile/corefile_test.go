package corefile

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// kubeadm is the Corefile kubeadm installs (v1.3x), as kube-system/coredns
// holds it (testdata/kubeadm.Corefile; pkg/member's tests read it too).
var kubeadm = func() string {
	b, err := os.ReadFile("testdata/kubeadm.Corefile")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// withOthers has more server blocks, a snippet, an import and comments,
// one of which mentions clusterset.local.
const withOthers = `# cluster DNS; see the runbook
(common) {
    errors
    cache 30
}
.:53 {
    import common
    kubernetes cluster.local in-addr.arpa ip6.arpa
    forward . 8.8.8.8
    reload
}
corp.example:53 {
    import common
    forward . 10.0.0.53 # not clusterset.local { }
}
`

var (
	v4   = []netip.Addr{netip.MustParseAddr("10.96.0.20")}
	v4b  = []netip.Addr{netip.MustParseAddr("10.96.0.21")}
	dual = []netip.Addr{netip.MustParseAddr("10.96.0.20"), netip.MustParseAddr("fd00:96::20")}
)

const block4 = "# BEGIN strait clusterset.local: added by straitctl join, removed by straitctl leave\n" +
	"clusterset.local:53 {\n" +
	"    forward . 10.96.0.20\n" +
	"}\n" +
	"# END strait clusterset.local\n"

func TestBlock(t *testing.T) {
	if got := Block(v4, "\n"); got != block4 {
		t.Errorf("got\n%s\nwant\n%s", got, block4)
	}
	if got := Block(dual, "\r\n"); !strings.Contains(got, "    forward . 10.96.0.20 fd00:96::20\r\n") || strings.Count(got, "\r\n") != 5 {
		t.Errorf("dual-stack, CRLF: got %q", got)
	}
}

// Each case adds the forward to a Corefile, checks the result, adds it again
// (no change), then removes it: back to the Corefile byte for byte.
func TestSetAndRemoveForward(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"kubeadm", kubeadm, kubeadm + block4},
		{"other server blocks", withOthers, withOthers + block4},
		{"no final newline", strings.TrimSuffix(kubeadm, "\n"), kubeadm + strings.TrimSuffix(block4, "\n")},
		{"CRLF", crlf(kubeadm), crlf(kubeadm + block4)},
		{"CRLF, no final line ending", strings.TrimSuffix(crlf(kubeadm), "\r\n"), strings.TrimSuffix(crlf(kubeadm+block4), "\r\n")},
		{"trailing blank lines", kubeadm + "\n\n", kubeadm + "\n\n" + block4},
		{"empty", "", block4},
		{"subzone of its own", kubeadm + "svc.clusterset.local:53 {\n    whoami\n}\n", kubeadm + "svc.clusterset.local:53 {\n    whoami\n}\n" + block4},
		{"clusterset.local on another port", kubeadm + "clusterset.local:5300 {\n    whoami\n}\n", kubeadm + "clusterset.local:5300 {\n    whoami\n}\n" + block4},
		{"clusterset.local over TLS", kubeadm + "tls://clusterset.local {\n    whoami\n}\n", kubeadm + "tls://clusterset.local {\n    whoami\n}\n" + block4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetForward(tc.in, v4)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("added:\n%q\nwant\n%q", got, tc.want)
			}
			again, err := SetForward(got, v4)
			if err != nil || again != got {
				t.Errorf("added again: %v, changed to\n%q", err, again)
			}
			back, found, err := RemoveForward(got)
			if err != nil || !found || back != tc.in {
				t.Errorf("removed: %v found=%v\n%q\nwant\n%q", err, found, back, tc.in)
			}
			if back, found, err := RemoveForward(tc.in); err != nil || found || back != tc.in {
				t.Errorf("removed from the Corefile without it: %v found=%v, %q", err, found, back)
			}
		})
	}
}

func TestSetForwardReplaces(t *testing.T) {
	after := "extra:53 {\n    whoami\n}\n"
	joined := kubeadm + block4 + after // the user added a block after ours
	// Each case's Corefile without the marked block is kubeadm+after but
	// for the last.
	for _, tc := range []struct {
		name, in string
		servers  []netip.Addr
		want     string
	}{
		{"a changed address", joined, v4b, kubeadm + strings.Replace(block4, "10.96.0.20", "10.96.0.21", 1) + after},
		{"dual-stack", joined, dual, kubeadm + strings.Replace(block4, "10.96.0.20", "10.96.0.20 fd00:96::20", 1) + after},
		{"a hand edit between the markers", kubeadm + strings.Replace(block4, "    forward . 10.96.0.20\n", "    log\n    forward . 1.2.3.4\n", 1) + after, v4, joined},
		{"a hand-edited BEGIN line", kubeadm + strings.Replace(block4, ": added by straitctl join", " (do not touch)", 1) + after, v4, joined},
		{"indented markers", kubeadm + strings.Replace(strings.Replace(block4, "# END", "  # END", 1), "# BEGIN", "\t# BEGIN", 1) + after, v4, joined},
		{"two marked blocks", kubeadm + block4 + after + block4, v4, joined},
		{"no final newline, changed", kubeadm + strings.TrimSuffix(block4, "\n"), v4b, kubeadm + strings.TrimSuffix(strings.Replace(block4, "10.96.0.20", "10.96.0.21", 1), "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetForward(tc.in, tc.servers)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			base := kubeadm + after
			if !strings.HasSuffix(tc.in, "\n") {
				base = strings.TrimSuffix(kubeadm, "\n")
			}
			if back, _, err := RemoveForward(got); err != nil || back != base {
				t.Errorf("removed: %v\n%s", err, back)
			}
		})
	}
}

// A server block of the user's own for clusterset.local on port 53 makes
// SetForward refuse (CoreDNS would refuse two), in any of the ways a
// Corefile may write its keys; RemoveForward still removes the marked block
// and nothing else.
func TestZoneServed(t *testing.T) {
	for _, tc := range []struct {
		name, corefile string
		line           int
	}{
		{"after the default block", kubeadm + "clusterset.local:53 {\n    forward . 10.0.0.9\n}\n", 24},
		{"no port", "clusterset.local {\n    whoami\n}\n", 1},
		{"fully qualified, scheme", "dns://clusterset.local.:53 {\n    whoami\n}\n", 1},
		{"upper case", "ClusterSet.Local:53 {\n    whoami\n}\n", 1},
		{"among other keys", "cluster.local:53 clusterset.local:53 {\n    whoami\n}\n", 1},
		{"keys continued by a comma", "example.org:53,\n  clusterset.local:53 {\n    whoami\n}\n", 2},
		{"brace on its own line", "clusterset.local:53\n{\n    whoami\n}\n", 2},
		{"CRLF", crlf(kubeadm + "clusterset.local:53 {\n    whoami\n}\n"), 24},
		{"beside a marked block", kubeadm + block4 + "clusterset.local:53 {\n    whoami\n}\n", 29},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetForward(tc.corefile, v4)
			var zs *ZoneServedError
			if !errors.As(err, &zs) {
				t.Fatalf("got %v, want a *ZoneServedError", err)
			}
			if zs.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", zs.Line, tc.line, err)
			}
			if got != tc.corefile {
				t.Errorf("the Corefile changed:\n%s", got)
			}
		})
	}
	// The block the user wrote is theirs: leave takes only the marked one.
	own := "clusterset.local:53 {\n    forward . 10.0.0.9\n}\n"
	if back, found, err := RemoveForward(kubeadm + block4 + own); err != nil || !found || back != kubeadm+own {
		t.Errorf("removed: %v found=%v\n%s", err, found, back)
	}
}

func TestMarkersThatDoNotPair(t *testing.T) {
	begin, rest, _ := strings.Cut(block4, "\n")
	body, end, _ := strings.Cut(rest, "# END")
	end = "# END" + end
	for name, c := range map[string]string{
		"BEGIN without END":   kubeadm + begin + "\n" + body,
		"END without BEGIN":   kubeadm + body + end,
		"BEGIN inside BEGIN":  kubeadm + begin + "\n" + block4,
		"END before BEGIN":    kubeadm + end + begin + "\n" + body,
		"BEGIN after a block": kubeadm + block4 + begin + "\n",
	} {
		if got, err := SetForward(c, v4); !errors.Is(err, ErrMarkers) || got != c {
			t.Errorf("%s: set: %v, want ErrMarkers and no change", name, err)
		}
		if got, found, err := RemoveForward(c); !errors.Is(err, ErrMarkers) || got != c || found {
			t.Errorf("%s: remove: %v, want ErrMarkers and no change", name, err)
		}
	}
	if _, err := SetForward(kubeadm, nil); err == nil {
		t.Error("no servers: want an error")
	}
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// For any Corefile without markers that SetForward accepts, adding the
// forward twice changes it once, and removing it gives the Corefile back.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{kubeadm, withOthers, crlf(kubeadm), "", "x", "\n", "a {\n}", "clusterset.local:5300 {}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if strings.Contains(in, "# BEGIN strait") || strings.Contains(in, "# END strait") {
			return
		}
		added, err := SetForward(in, dual)
		if err != nil {
			return
		}
		if again, err := SetForward(added, dual); err != nil || again != added {
			t.Fatalf("added again to %q: %v, %q", added, err, again)
		}
		back, found, err := RemoveForward(added)
		if err != nil || !found || back != in {
			t.Fatalf("%q: added %q, removed %q (%v, found=%v)", in, added, back, err, found)
		}
	})
}
