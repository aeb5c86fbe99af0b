package cmdutil

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// kubeconfig writes a kubeconfig with one context per name, each pointing at
// its own server, and returns its path.
func kubeconfig(t *testing.T, current string, contexts ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\nclusters:\n")
	for _, c := range contexts {
		b.WriteString("- {name: " + c + ", cluster: {server: \"https://" + c + ".example:6443\"}}\n")
	}
	b.WriteString("users:\n")
	for _, c := range contexts {
		b.WriteString("- {name: " + c + ", user: {token: secret-" + c + "}}\n")
	}
	b.WriteString("contexts:\n")
	for _, c := range contexts {
		b.WriteString("- {name: " + c + ", context: {cluster: " + c + ", user: " + c + ", namespace: ns-" + c + "}}\n")
	}
	if current != "" {
		b.WriteString("current-context: " + current + "\n")
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubeLoadingRules(t *testing.T) {
	f1 := kubeconfig(t, "a", "a")
	f2 := kubeconfig(t, "", "b", "c")
	home := t.TempDir()

	// $KUBECONFIG as a list of files, merged as kubectl merges them.
	t.Setenv("KUBECONFIG", f1+string(os.PathListSeparator)+f2)
	k := Kube{Contexts: []string{"b", "a", "b"}}
	ts, err := k.Targets()
	if err != nil {
		t.Fatalf("Targets over $KUBECONFIG=%s: %v", os.Getenv("KUBECONFIG"), err)
	}
	var got []string
	for _, x := range ts {
		got = append(got, x.Context+"="+x.Config.Host+"/"+x.Namespace)
	}
	if want := "b=https://b.example:6443/ns-b a=https://a.example:6443/ns-a"; strings.Join(got, " ") != want {
		t.Errorf("targets %v, want %s (duplicates once, in order)", got, want)
	}
	// No --context: the current one of the merged files (the first file's).
	k = Kube{}
	tg, err := k.Target()
	if err != nil || tg.Context != "a" || tg.Config.Host != "https://a.example:6443" {
		t.Errorf("current context: %+v, %v; want a", tg, err)
	}
	// A one-cluster command refuses several contexts.
	k = Kube{Contexts: []string{"a", "b"}}
	if _, err := k.Config(); err == nil || !strings.Contains(err.Error(), "one cluster") {
		t.Errorf("Config with two contexts: %v, want a one-cluster error", err)
	}
	// An unknown context is named.
	k = Kube{Context: "nope"}
	if _, err := k.Config(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown context: %v", err)
	}
	// --kubeconfig wins over $KUBECONFIG, and a missing file is an error.
	k = Kube{Kubeconfig: f2, Context: "c"}
	if cfg, err := k.Config(); err != nil || cfg.Host != "https://c.example:6443" {
		t.Errorf("--kubeconfig %s --context c: %v", f2, err)
	}
	k = Kube{Kubeconfig: filepath.Join(home, "missing")}
	if _, err := k.Config(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing --kubeconfig: %v", err)
	}

	// Neither flag nor $KUBECONFIG: ~/.kube/config, which client-go
	// locates once at start-up, so only its absence can be tested here.
	t.Setenv("KUBECONFIG", "")
	if _, err := os.Stat(clientcmd.RecommendedHomeFile); err == nil {
		t.Logf("%s exists: not testing the error for no kubeconfig at all", clientcmd.RecommendedHomeFile)
		return
	}
	k = Kube{}
	if _, err := k.Config(); err == nil || !strings.Contains(err.Error(), "no cluster given") {
		t.Errorf("no kubeconfig anywhere: %v, want 'no cluster given'", err)
	}
}

func TestPrint(t *testing.T) {
	type rec struct {
		Name string `json:"name"`
	}
	tables := []Table{
		{Noun: "things", Headers: []string{"NAME", "NOTE"}, Rows: []Row{
			{Context: "c1", Cells: []string{"x", ""}, Object: rec{"x"}},
			{Context: "c2", Cells: []string{"y", "long note"}, Object: rec{"y"}},
		}},
		{Noun: "others", Headers: []string{"NAME"}, Errors: []ContextError{{Context: "c2", Error: "cannot reach the API server"}}},
	}
	for _, tc := range []struct {
		format string
		multi  bool
		want   string
	}{
		{"table", false, "THINGS:\nNAME  NOTE\nx     -\ny     long note\n\nOTHERS:\nerror: context c2: cannot reach the API server\n"},
		{"table", true, "THINGS:\nCONTEXT  NAME  NOTE\nc1       x     -\nc2       y     long note\n\nOTHERS:\nerror: context c2: cannot reach the API server\n"},
	} {
		var b bytes.Buffer
		o := Output{Format: tc.format}
		if err := o.Print(&b, tables, tc.multi); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("%s multi=%v:\n%s\nwant:\n%s", tc.format, tc.multi, b.String(), tc.want)
		}
	}
	// The Cells were not changed by printing them.
	if tables[0].Rows[0].Cells[1] != "" {
		t.Errorf("Print changed a row's cells: %q", tables[0].Rows[0].Cells)
	}

	want := map[string]any{
		"things": []any{map[string]any{"name": "x", "context": "c1"}, map[string]any{"name": "y", "context": "c2"}},
		"others": []any{},
		"errors": []any{map[string]any{"context": "c2", "error": "cannot reach the API server"}},
	}
	for _, format := range []string{"json", "yaml"} {
		var b bytes.Buffer
		o := Output{Format: format}
		if err := o.Print(&b, tables, true); err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := yaml.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v\n%s", format, err, b.String())
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("-o %s: %s, want %s", format, g, w)
		}
	}
	var b bytes.Buffer
	if err := (&Output{Format: "table"}).Print(&b, []Table{{Noun: "exports", Headers: []string{"NAME"}}}, false); err != nil || b.String() != "no exports\n" {
		t.Errorf("empty table: %q, %v", b.String(), err)
	}
	if err := (&Output{Format: "wide"}).Validate(); err == nil || !strings.Contains(err.Error(), "table, json or yaml") {
		t.Errorf("-o wide: %v", err)
	}
}
