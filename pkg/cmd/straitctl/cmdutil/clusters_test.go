package cmdutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: "https://127.0.0.1:1001"}}
- {name: b, cluster: {server: "https://127.0.0.1:1002"}}
users: [{name: u, user: {token: t}}]
contexts:
- {name: ca, context: {cluster: a, user: u}}
- {name: cb, context: {cluster: b, user: u}}
current-context: ca
`

func TestClustersConfigs(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.kubeconfig")
	other := filepath.Join(dir, "other.kubeconfig")
	if err := os.WriteFile(one, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte(strings.Replace(twoContexts, "current-context: ca", "current-context: cb", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		files, ctxs []string
		want        string // hosts, comma-separated, or the error
	}{
		{"two files, their current contexts", []string{one, other}, nil, "https://127.0.0.1:1001,https://127.0.0.1:1002"},
		{"one file, two contexts", []string{one}, []string{"cb", "ca"}, "https://127.0.0.1:1002,https://127.0.0.1:1001"},
		{"pairwise", []string{one, other}, []string{"cb", "ca"}, "https://127.0.0.1:1002,https://127.0.0.1:1001"},
		{"counts differ", []string{one, other, one}, []string{"ca", "cb"}, "3 kubeconfigs and 2 contexts"},
		{"missing file", []string{filepath.Join(dir, "nope")}, nil, "no such file"},
		{"unknown context", []string{one}, []string{"ca", "zz"}, `context "zz"`},
	} {
		k := Clusters{Kubeconfigs: tc.files, Contexts: tc.ctxs}
		sources, cfgs, err := k.Configs()
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var hosts []string
			for _, c := range cfgs {
				hosts = append(hosts, c.Host)
			}
			got = strings.Join(hosts, ",")
			if len(sources) != len(cfgs) {
				t.Errorf("%s: %d sources for %d configs", tc.name, len(sources), len(cfgs))
			}
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
