package straitctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestErrorsAndExitCodes(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.strait")
	if err := os.WriteFile(garbage, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A join file holding only its version field.
	versionOnly := filepath.Join(dir, "version-only.strait")
	if err := os.WriteFile(versionOnly, []byte(`{"version": "strait.dev/broker-info/v1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A kubeconfig whose server refuses connections: port 1 on loopback.
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
		{[]string{"version"}, ExitOK, ""},
		{[]string{"bogus"}, ExitUsage, "unknown command"},
		{[]string{"join"}, ExitUsage, "accepts 1 arg"},
		{[]string{"join", "x.strait", "--no-such-flag"}, ExitUsage, "unknown flag"},
		{[]string{"join", "x.strait", "--kubeconfig", unreachable}, ExitUsage, "clusterid"},
		{[]string{"join", filepath.Join(dir, "missing.strait"), "--clusterid", "c1", "--kubeconfig", unreachable}, ExitError, "no such file"},
		{[]string{"join", garbage, "--clusterid", "c1", "--kubeconfig", unreachable}, ExitError, "is not a broker info file"},
		{[]string{"show", "clusters", "--kubeconfig", unreachable}, ExitError, "cannot reach the API server"},
		{[]string{"show", "clusters", "--kubeconfig", filepath.Join(dir, "missing.kubeconfig")}, ExitError, "kubeconfig"},
		{[]string{"show", "widgets", "--kubeconfig", unreachable}, ExitError, "want clusters, endpoints, gateways or connections"},
		{[]string{"deploy-broker", "--kubeconfig", unreachable, "--globalnet-cidr", "242.0.0.0/33"}, ExitError, "--globalnet-cidr"},
		{[]string{"join", versionOnly, "--clusterid", "c1", "--kubeconfig", unreachable}, ExitError, "is incomplete: no apiServer, caBundle, namespace, token"},
		// Globalnet does not exist yet: the flag is refused before the
		// cluster is reached.
		{[]string{"deploy-broker", "--kubeconfig", unreachable, "--globalnet-cidr", "242.0.0.0/8"}, ExitError, "Globalnet is not available yet"},
	} {
		var out, errOut bytes.Buffer
		t.Setenv("KUBECONFIG", "")
		code := Main(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("straitctl %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
		if lines := strings.Count(strings.TrimSpace(errOut.String()), "\n") + 1; tc.code == ExitError && lines != 1 {
			t.Errorf("straitctl %v: %d lines on stderr, want one:\n%s", tc.args, lines, errOut.String())
		}
		if strings.Contains(errOut.String(), "goroutine ") {
			t.Errorf("straitctl %v printed a stack trace", tc.args)
		}
	}
}
