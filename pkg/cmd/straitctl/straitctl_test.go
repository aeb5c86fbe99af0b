package straitctl

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
		{[]string{"show", "widgets", "--kubeconfig", unreachable}, ExitError, "want all, clusters, networks, endpoints"},
		{[]string{"deploy-broker", "--kubeconfig", unreachable, "--globalnet-cidr", "242.0.0.0/33"}, ExitError, "--globalnet-cidr"},
		{[]string{"join", versionOnly, "--clusterid", "c1", "--kubeconfig", unreachable}, ExitError, "is incomplete: no apiServer, caBundle, namespace, token"},
		{[]string{"join", "x.strait", "--clusterid", "c1", "--kubeconfig", unreachable, "--globalnet", "--globalnet-cidr-size", "1000"}, ExitError, "--globalnet-cidr-size: global CIDR size 1000"},
		{[]string{"join", "x.strait", "--clusterid", "c1", "--kubeconfig", unreachable, "--globalnet-cidr-size", "1024"}, ExitError, "needs --globalnet"},
		{[]string{"join", "x.strait", "--clusterid", "c1", "--kubeconfig", unreachable, "--globalnet-cidr", "242.0.0.0"}, ExitError, "--globalnet-cidr \"242.0.0.0\""},
		// A bad pool is refused before the cluster is reached.
		{[]string{"deploy-broker", "--kubeconfig", unreachable, "--globalnet-cidr", "fd00::/8"}, ExitError, "only IPv4 pools"},
		{[]string{"deploy-broker", "--kubeconfig", unreachable, "--globalnet-cidr", "242.0.0.0/28"}, ExitError, "a /8 to a /24"},
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

// TestKubeconfigList: $KUBECONFIG may list several files, as kubectl
// reads it; a context of the second file is found.
func TestKubeconfigList(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.kubeconfig")
	if err := os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreachable := filepath.Join(dir, "unreachable.kubeconfig")
	if err := os.WriteFile(unreachable, []byte(`apiVersion: v1
kind: Config
clusters: [{name: x, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: x, user: {token: t}}]
contexts: [{name: x, context: {cluster: x, user: x}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", empty+string(os.PathListSeparator)+unreachable)
	var out, errOut bytes.Buffer
	code := Main([]string{"show", "clusters", "--context", "x"}, &out, &errOut)
	if code != ExitError || !strings.Contains(errOut.String(), "cannot reach the API server") {
		t.Errorf("show with $KUBECONFIG=%s: exit %d, stderr %q; want exit 1 and 'cannot reach the API server' (the kubeconfig loaded)", os.Getenv("KUBECONFIG"), code, errOut.String())
	}
}

// TestEveryCommandHasExample: each command's --help shows how to use it.
func TestEveryCommandHasExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" && c.Name() != "help" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := NewCommand()
	for _, c := range root.Commands() {
		walk(c)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"export", "service", "--help"}, &out, &errOut); code != ExitOK || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("export service --help: exit %d\n%s", code, out.String())
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_straitctl", "zsh": "#compdef straitctl", "fish": "complete -c straitctl"} {
		var out, errOut bytes.Buffer
		if code := Main([]string{"completion", shell}, &out, &errOut); code != ExitOK || !strings.Contains(out.String(), want) {
			t.Errorf("completion %s: exit %d, no %q; stderr %q", shell, code, want, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"completion", "tcsh"}, &out, &errOut); code != ExitUsage || !strings.Contains(errOut.String(), "invalid argument") {
		t.Errorf("completion tcsh: exit %d, stderr %q; want exit 2", code, errOut.String())
	}
	// show's nouns complete.
	out.Reset()
	if code := Main([]string{"__complete", "show", "ex"}, &out, &errOut); code != ExitOK || !strings.Contains(out.String(), "exports") {
		t.Errorf("completing 'show ex': exit %d, %q", code, out.String())
	}
}
