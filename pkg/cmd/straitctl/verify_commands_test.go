package straitctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyDiagnoseBenchmarkErrors: bad command lines and unreachable
// clusters give one line and the right exit code before any pod is made.
func TestVerifyDiagnoseBenchmarkErrors(t *testing.T) {
	dir := t.TempDir()
	unreachable := filepath.Join(dir, "unreachable.kubeconfig")
	if err := os.WriteFile(unreachable, []byte(`apiVersion: v1
kind: Config
clusters: [{name: x, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: x, user: {token: t}}]
contexts: [{name: x, context: {cluster: x, user: x}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"verify", "--kubeconfig", unreachable + "," + unreachable}, ExitError, "cannot reach the API server"},
		{[]string{"verify", "--kubeconfig", unreachable, "-o", "xml"}, ExitError, `-o "xml"`},
		{[]string{"verify", "--kubeconfig", unreachable + "," + unreachable, "--context", "x,x,x"}, ExitError, "2 kubeconfigs and 3 contexts"},
		{[]string{"verify", "extra"}, ExitUsage, "unknown command"},
		{[]string{"diagnose", "--kubeconfig", unreachable}, ExitError, "cannot reach the API server"},
		{[]string{"benchmark"}, ExitUsage, "accepts 1 arg"},
		{[]string{"benchmark", "widgets", "--kubeconfig", unreachable}, ExitUsage, "invalid argument"},
		{[]string{"benchmark", "latency", "--kubeconfig", filepath.Join(dir, "missing")}, ExitError, "no such file"},
	} {
		var out, errOut bytes.Buffer
		t.Setenv("KUBECONFIG", "")
		code := Main(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("straitctl %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}

// TestHelpHasExamples: every command's --help shows an example.
func TestNewCommandsHaveExamples(t *testing.T) {
	for _, c := range NewCommand().Commands() {
		switch c.Name() {
		case "verify", "diagnose", "benchmark":
			if !strings.Contains(c.Example, "straitctl "+c.Name()) {
				t.Errorf("%s --help has no example", c.Name())
			}
		}
	}
}
