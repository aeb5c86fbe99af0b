package node

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// imageConfig is a node configuration whose image and Kubernetes binary
// directories hold empty stand-ins for Strait's binaries and coredns.
func imageConfig(t *testing.T) Config {
	t.Helper()
	imageBin, kubeBin := t.TempDir(), t.TempDir()
	for _, b := range []string{"strait-testpod", "strait-gateway", "strait-sandbox"} {
		if err := os.WriteFile(filepath.Join(imageBin, b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(kubeBin, "coredns"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{ImageBin: imageBin, KubeBin: kubeBin, Dir: t.TempDir()}
}

func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := busyboxApplets(); err != nil {
		t.Fatalf("busybox is not installed (hack/prereqs.sh installs it): %v", err)
	}
}

func TestLookupImage(t *testing.T) {
	requireBusybox(t)
	cfg := imageConfig(t)
	for image, want := range map[string]string{
		"strait/testpod":                           "strait-testpod",
		"strait/testpod:e2e":                       "strait-testpod",
		"quay.io/strait/strait-gateway:v0.1.0":     "strait-gateway",
		"registry:5000/strait-gateway@sha256:0123": "strait-gateway",
		"strait-gateway":                           "strait-gateway",
		"nicolaka/netshoot":                        "nicolaka/netshoot",
		"docker.io/nicolaka/netshoot:v0.13":        "nicolaka/netshoot",
		"ghcr.io/nicolaka/netshoot@sha256:abcd":    "nicolaka/netshoot",
		"alpine/socat":                             "alpine/socat",
		"docker.io/alpine/socat:1.8.0.1":           "alpine/socat",
		"busybox":                                  "busybox",
		"busybox:1.36":                             "busybox",
		"docker.io/library/busybox:1.36.1":         "busybox",
		"registry.k8s.io/coredns/coredns:v1.12.1":  "coredns/coredns",
		"registry.k8s.io/pause:3.10":               "pause",
		"localhost:5000/busybox":                   "busybox", // a registry's port is no tag
		"docker.io/library/nginx:1.27":             "",
		"strait/sandbox":                           "", // the sandbox itself is no image
		"alpine":                                   "",
		"netshoot":                                 "",
	} {
		img, err := lookupImage(cfg, image)
		if want == "" {
			if err == nil || !errors.Is(err, ErrUnknownImage) || !strings.Contains(err.Error(), image) {
				t.Errorf("%s: got %v, %v; want ErrUnknownImage naming the image", image, img, err)
			}
			continue
		}
		if err != nil || img.Name != want {
			t.Errorf("%s: got %+v, %v; want %s", image, img, err, want)
		}
	}
}

// TestImagePrograms checks each image has the programs the brief and users
// expect, and that the Debian tools win over busybox's applets.
func TestImagePrograms(t *testing.T) {
	requireBusybox(t)
	cfg := imageConfig(t)
	bb, _ := busyboxApplets()
	for image, want := range map[string][]string{
		"nicolaka/netshoot": {"sh", "nslookup", "dig", "nc", "curl", "socat", "sleep", "cat", "echo", "grep", "ip", "ping", "wget", "hostname", "zsh"},
		"alpine/socat":      {"socat", "sh", "grep", "awk", "tr", "sleep"},
		"busybox":           {"sh", "sleep", "wget", "nslookup", "nc", "grep", "cat"},
		"registry.k8s.io/coredns/coredns:v1.12.1": {"coredns"},
		"registry.k8s.io/pause:3.10":              {"pause"},
		"strait/testpod":                          {"strait-testpod"},
	} {
		img, err := lookupImage(cfg, image)
		if err != nil {
			t.Fatalf("%s: %v", image, err)
		}
		for _, p := range want {
			if _, ok := img.Programs[p]; !ok {
				t.Errorf("%s lacks %s", image, p)
			}
		}
	}
	netshoot, _ := lookupImage(cfg, "nicolaka/netshoot")
	for _, p := range []string{"dig", "nslookup", "nc", "socat", "curl"} {
		if got := netshoot.Programs[p]; got == bb.bin || got == "" {
			t.Errorf("netshoot's %s is %q; want the Debian package's (hack/prereqs.sh)", p, got)
		}
	}
	if got := netshoot.Programs["sleep"]; got != bb.bin {
		t.Errorf("netshoot's sleep is %q; want busybox's applet", got)
	}
	coredns, _ := lookupImage(cfg, "registry.k8s.io/coredns/coredns:v1.12.1")
	if got := coredns.Programs["coredns"]; got != filepath.Join(cfg.KubeBin, "coredns") {
		t.Errorf("coredns program %q; want the one in KubeBin", got)
	}
}

// TestContainerArgv checks Kubernetes' rules for command and args over the
// image's ENTRYPOINT and CMD.
func TestContainerArgv(t *testing.T) {
	img := &Image{Name: "x", Entrypoint: []string{"/ep", "-e"}, Cmd: []string{"cmd", "-c"}}
	bare := &Image{Name: "bare"}
	for _, tc := range []struct {
		name          string
		img           *Image
		command, args []string
		want          string // argv joined by spaces; "error" for an error
	}{
		{"neither: ENTRYPOINT then CMD", img, nil, nil, "/ep -e cmd -c"},
		{"command only: CMD ignored", img, []string{"sh"}, nil, "sh"},
		{"args only: ENTRYPOINT then args", img, nil, []string{"a", "b"}, "/ep -e a b"},
		{"both: image ignored", img, []string{"sh", "-c"}, []string{"echo hi"}, "sh -c echo hi"},
		{"CMD only image", &Image{Name: "busybox", Cmd: []string{"sh"}}, nil, nil, "sh"},
		{"CMD only image, args replace CMD", &Image{Name: "busybox", Cmd: []string{"sh"}}, nil, []string{"sleep", "1"}, "sleep 1"},
		{"nothing to run", bare, nil, nil, "error"},
	} {
		got, err := containerArgv(tc.img, tc.command, tc.args)
		if tc.want == "error" {
			if err == nil || !strings.Contains(err.Error(), tc.img.Name) {
				t.Errorf("%s: got %q, %v; want an error naming the image", tc.name, got, err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// The image's slices are never written through.
	_, _ = containerArgv(img, nil, []string{"x"})
	if !slices.Equal(img.Entrypoint, []string{"/ep", "-e"}) {
		t.Errorf("entrypoint changed to %q", img.Entrypoint)
	}
}

func TestResolveProgram(t *testing.T) {
	requireBusybox(t)
	cfg := imageConfig(t)
	busybox, _ := lookupImage(cfg, "busybox")
	coredns, _ := lookupImage(cfg, "registry.k8s.io/coredns/coredns")
	strait, _ := lookupImage(cfg, "strait/strait-gateway:v1")
	for _, tc := range []struct {
		img   *Image
		argv0 string
		want  string // path under "bin/", or an absolute path; "" for an error
	}{
		{busybox, "sh", "bin/sh"},
		{busybox, "/bin/sh", "bin/sh"},
		{busybox, "/usr/bin/nslookup", "bin/nslookup"},
		{busybox, "curl", ""},
		{busybox, "/", ""},
		{coredns, "/coredns", "bin/coredns"},
		{coredns, "sh", ""},
		{strait, "/strait-gateway", "bin/strait-gateway"},
		{strait, "strait-gateway", "bin/strait-gateway"},
		{strait, "/bin/sh", "/bin/sh"}, // Strait's images carry the machine's tools
		{strait, "no-such-program-here", ""},
	} {
		got, err := tc.img.resolve("bin", tc.argv0)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), tc.argv0) || !strings.Contains(err.Error(), tc.img.Name) {
				t.Errorf("%s %s: got %q, %v; want an error naming command and image", tc.img.Name, tc.argv0, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %s: got %q, %v; want %q", tc.img.Name, tc.argv0, got, err, tc.want)
		}
	}
}

// TestRealise realises images and runs their programs for real: busybox
// applets through PATH lookups in a shell script, socat as alpine/socat's
// entrypoint; concurrent realisations of one image agree.
func TestRealise(t *testing.T) {
	requireBusybox(t)
	cfg := imageConfig(t)
	root := filepath.Join(cfg.Dir, "images")
	busybox, _ := lookupImage(cfg, "docker.io/library/busybox:1.36")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := busybox.realise(root, "/nonexistent/strait-sandbox")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent realise: %v", err)
		}
	}
	dir, err := busybox.realise(root, "/nonexistent/strait-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary links left: %q", leftovers)
	}
	sh, err := busybox.resolve(dir, "/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, "-c", `echo hello | tr a-z A-Z | grep HELLO && sleep 0 && basename "$(command -v wget)"`)
	cmd.Args[0] = "/bin/sh"
	cmd.Env = []string{"PATH=" + busybox.PATH(dir)}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "HELLO\nwget\n" {
		t.Errorf("busybox sh: %q, %v", out, err)
	}

	socat, _ := lookupImage(cfg, "alpine/socat")
	if _, ok := socat.Programs["socat"]; !ok {
		t.Fatal("socat is not installed (hack/prereqs.sh installs it)")
	}
	sdir, err := socat.realise(root, "/nonexistent/strait-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	argv, _ := containerArgv(socat, nil, []string{"-u", "EXEC:echo through-socat", "STDOUT"})
	bin, err := socat.resolve(sdir, argv[0])
	if err != nil {
		t.Fatal(err)
	}
	cmd = &exec.Cmd{Path: bin, Args: argv, Env: []string{"PATH=" + socat.PATH(sdir)}}
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "through-socat\n" {
		t.Errorf("socat entrypoint: %q, %v", out, err)
	}

	pause, _ := lookupImage(cfg, "registry.k8s.io/pause:3.10")
	pdir, err := pause.realise(root, "/opt/strait-sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if script, err := os.ReadFile(filepath.Join(pdir, "pause")); err != nil || !strings.Contains(string(script), `exec "/opt/strait-sandbox" pause`) {
		t.Errorf("pause program: %q, %v", script, err)
	}
}

func TestExpand(t *testing.T) {
	env := []string{"A=alpha", "B=beta", "EMPTY="}
	for in, want := range map[string]string{
		"plain":              "plain",
		"$(A)":               "alpha",
		"x-$(A)-$(B)":        "x-alpha-beta",
		"$(EMPTY)|":          "|",
		"$(UNDEFINED)":       "$(UNDEFINED)",
		"$$(A)":              "$(A)",
		"$$":                 "$",
		"a$b":                "a$b",
		"$(A":                "$(A",
		"end$":               "end$",
		"$(A)$(A)$$$(B)":     "alphaalpha$beta",
		"sh -c 'echo $HOME'": "sh -c 'echo $HOME'",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestContainerCommand checks what the agent runs for a container and the
// waiting reasons of what it cannot run.
func TestContainerCommand(t *testing.T) {
	requireBusybox(t)
	cfg := imageConfig(t)
	w := &podWorker{a: &Agent{cfg: cfg}}
	env := func(path string) ([]string, error) { return []string{"PATH=" + path, "TARGET=world"}, nil }
	images := filepath.Join(cfg.Dir, "images")
	for _, tc := range []struct {
		c                    corev1.Container
		binary, argv, reason string
	}{
		{c: corev1.Container{Image: "docker.io/library/nginx:1.27"}, reason: "ErrImagePull"},
		{c: corev1.Container{Image: "busybox", Command: []string{"no-such-tool"}}, reason: "RunContainerError"},
		{c: corev1.Container{Image: "registry.k8s.io/coredns/coredns:v1.12.1", Args: []string{"-conf", "/etc/coredns/Corefile"}},
			binary: filepath.Join(images, "coredns_coredns", "bin", "coredns"), argv: "/coredns -conf /etc/coredns/Corefile"},
		{c: corev1.Container{Image: "busybox:1.36", Command: []string{"sh", "-c", "echo $(TARGET) $$(TARGET)"}},
			binary: filepath.Join(images, "busybox", "bin", "sh"), argv: "sh -c echo world $(TARGET)"},
		{c: corev1.Container{Image: "busybox:1.36"}, binary: filepath.Join(images, "busybox", "bin", "sh"), argv: "sh"},
		{c: corev1.Container{Image: "strait/testpod:e2e", Args: []string{"serve", "--port=$(TARGET)"}},
			binary: filepath.Join(images, "strait-testpod", "bin", "strait-testpod"), argv: "/strait-testpod serve --port=world"},
	} {
		binary, argv, envv, reason, err := w.containerCommand(&tc.c, env)
		if tc.reason != "" {
			if reason != tc.reason || err == nil {
				t.Errorf("%s %q: got %q, %v; want %s", tc.c.Image, tc.c.Command, reason, err, tc.reason)
			}
			continue
		}
		if err != nil || binary != tc.binary || strings.Join(argv, " ") != tc.argv || !strings.HasPrefix(envv[0], "PATH="+images) {
			t.Errorf("%s: got %q %q %q, %v; want %q %q", tc.c.Image, binary, argv, envv, err, tc.binary, tc.argv)
		}
		if target, err := filepath.EvalSymlinks(binary); err != nil || target == binary {
			t.Errorf("%s: %s is no link to a program: %q, %v", tc.c.Image, binary, target, err)
		}
	}
}
