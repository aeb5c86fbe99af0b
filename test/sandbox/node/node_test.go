package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostVethName(t *testing.T) {
	a, b := hostVethName("5b8e7c1a-0000-4000-8000-000000000001"), hostVethName("5b8e7c1a-0000-4000-8000-000000000002")
	if len(a) > 15 || a == b || !strings.HasPrefix(a, "veth") {
		t.Errorf("names %q %q: want distinct, veth-prefixed, at most 15 characters", a, b)
	}
}

func TestResolveImage(t *testing.T) {
	dir := t.TempDir()
	for _, b := range []string{"strait-testpod", "strait-gateway", "strait-sandbox"} {
		if err := os.WriteFile(filepath.Join(dir, b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := &podWorker{a: &Agent{cfg: Config{ImageBin: dir}}}
	for image, want := range map[string]string{
		"strait/testpod":                           "strait-testpod",
		"strait/testpod:e2e":                       "strait-testpod",
		"quay.io/strait/strait-gateway:v0.1.0":     "strait-gateway",
		"registry:5000/strait-gateway@sha256:0123": "strait-gateway",
		"strait-gateway":                           "strait-gateway",
		"docker.io/library/nginx:1.27":             "",
		"strait/sandbox":                           "", // the sandbox itself is no image
	} {
		got, err := w.resolveImage(image)
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), image) {
				t.Errorf("%s: got %q, %v; want an error naming the image", image, got, err)
			}
			continue
		}
		if err != nil || got != filepath.Join(dir, want) {
			t.Errorf("%s: got %q, %v; want %s", image, got, err, want)
		}
	}
}
