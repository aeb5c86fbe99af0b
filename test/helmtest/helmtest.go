// Package helmtest runs the helm CLI that "make helm" builds from source
// (_output/bin/helm) over Strait's chart, and compares sets of Kubernetes
// objects, for the tests that check the chart against what straitctl
// renders.
package helmtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"strait.dev/strait/pkg/kubeapply"
)

// root is the repository's root, from this file's place in it.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ChartDir is the path of Strait's chart, deploy/charts/strait.
func ChartDir() string { return filepath.Join(root(), "deploy", "charts", "strait") }

// Helm returns the path of the helm CLI: $STRAIT_HELM, else
// _output/bin/helm. It fails the test when there is none, saying to run
// make helm.
func Helm(t testing.TB) string {
	t.Helper()
	p := os.Getenv("STRAIT_HELM")
	if p == "" {
		p = filepath.Join(root(), "_output", "bin", "helm")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the helm CLI: %v (run make helm, or set STRAIT_HELM)", err)
	}
	return p
}

// Run runs helm with args and returns its stdout; it fails the test with
// stderr when helm fails. Helm's cache, configuration and data live in a
// temporary folder of the test (HELM_CACHE_HOME and friends), not in the
// user's home: helm install writes there.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(Helm(t), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// Parse splits a multi-document YAML stream (helm template's, or
// straitctl's -o yaml) into its objects (kubeapply.ParseObjects), failing
// the test on a document that is not YAML.
func Parse(t testing.TB, stream string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kubeapply.ParseObjects(stream)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Key names an object: "<kind> <namespace>/<name>".
func Key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// ByKey indexes objs by Key, failing the test on a key seen twice.
func ByKey(t testing.TB, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if out[Key(o)] != nil {
			t.Errorf("%s twice", Key(o))
		}
		out[Key(o)] = o
	}
	return out
}

// Compare fails the test for every object only one of the sets has and
// every object that differs, whatever their order. Objects are compared as
// JSON, so that YAML's number and map types do not matter.
func Compare(t testing.TB, aName string, a map[string]*unstructured.Unstructured, bName string, b map[string]*unstructured.Unstructured) {
	t.Helper()
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if a[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case a[k] == nil:
			t.Errorf("%s: only in %s", k, bName)
		case b[k] == nil:
			t.Errorf("%s: only in %s", k, aName)
		default:
			ja, jb := normal(t, a[k]), normal(t, b[k])
			if !reflect.DeepEqual(ja, jb) {
				sa, _ := json.Marshal(ja)
				sb, _ := json.Marshal(jb)
				t.Errorf("%s differs:\n%s: %s\n%s: %s", k, aName, sa, bName, sb)
			}
		}
	}
}

// normal is o's object through a JSON round trip.
func normal(t testing.TB, o *unstructured.Unstructured) any {
	t.Helper()
	b, err := json.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
