package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The tests build every image, which takes minutes (docs/images.md has the
// figures), so they run only when asked: STRAIT_IMAGES_TEST=1, as
// "make test-images" sets it. STRAIT_IMAGES_ARCH (default amd64) picks the
// architectures.
func requireImagesTest(t *testing.T) {
	t.Helper()
	if os.Getenv("STRAIT_IMAGES_TEST") == "" {
		t.Skip("builds every image (minutes): set STRAIT_IMAGES_TEST=1, or run make test-images")
	}
}

func testConfig(t *testing.T, out string) Config {
	t.Helper()
	dir, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := sourceDate(os.Getenv("SOURCE_DATE_EPOCH"), dir)
	if err != nil {
		t.Fatal(err)
	}
	arches := []string{"amd64"}
	if a := os.Getenv("STRAIT_IMAGES_ARCH"); a != "" {
		arches = strings.Split(a, ",")
	}
	return Config{
		ModuleDir: dir, Out: out,
		// The cache "make images" uses: the same packages for both
		// builds, downloaded once.
		Cache:      filepath.Join(dir, "_output", "images-cache"),
		AptSources: "/etc/apt/sources.list.d/debian.sources",
		Arches:     arches, Repository: "strait", Version: "test", Epoch: epoch,
		Components: components,
	}
}

// firstBuild is one build shared by the tests: its output folder and results.
var (
	firstOnce    sync.Once
	firstOut     string
	firstResults []Result
	firstErr     error
)

func buildFirst(t *testing.T) (string, []Result) {
	t.Helper()
	firstOnce.Do(func() {
		firstOut, firstErr = os.MkdirTemp("", "strait-images-test-")
		if firstErr != nil {
			return
		}
		firstResults, firstErr = Build(context.Background(), testConfig(t, firstOut))
	})
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return firstOut, firstResults
}

func TestMain(m *testing.M) {
	code := m.Run()
	if firstOut != "" {
		os.RemoveAll(firstOut)
	}
	os.Exit(code)
}

// TestReproducible builds every image twice into two folders and wants the
// same image index digest and byte-identical archives.
func TestReproducible(t *testing.T) {
	requireImagesTest(t)
	_, first := buildFirst(t)
	second, err := Build(context.Background(), testConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(components) || len(second) != len(first) {
		t.Fatalf("built %d and %d images, want %d each", len(first), len(second), len(components))
	}
	for i := range first {
		a, b := first[i], second[i]
		t.Logf("%s %s", a.Ref, a.Digest)
		if a.Ref != b.Ref || a.Digest != b.Digest {
			t.Errorf("%s: first build %s %s, second %s %s", a.Component, a.Ref, a.Digest, b.Ref, b.Digest)
		}
		if ha, hb := fileSHA256(t, a.Archive), fileSHA256(t, b.Archive); ha != hb {
			t.Errorf("%s: archives differ: sha256 %s and %s", a.Component, ha, hb)
		}
	}
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rootfs unpacks the archive's image for linux/arch into a new folder (the
// layers applied in order, as a runtime does) and returns the folder and the
// image's config.
func rootfs(t *testing.T, archive, arch string) (string, *v1.ConfigFile) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xf %s: %v: %s", archive, err, out)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil || len(tm.Manifests) != 1 {
		t.Fatalf("%s: index.json: want one image index, got %v (%v)", archive, tm, err)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			if img, err = idx.Image(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatalf("%s has no image for linux/%s", archive, arch)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tar", "-x", "-C", root)
	cmd.Stdin = mutate.Extract(img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v: %s", archive, err, out)
	}
	return root, cfg
}

func resultFor(t *testing.T, results []Result, name string) Result {
	t.Helper()
	for _, r := range results {
		if r.Component == name {
			return r
		}
	}
	t.Fatalf("no image %s built", name)
	return Result{}
}

// iptablesScript is iptables-restore input in the shape pkg/nodenet writes:
// our own chains jumped to once from built-in ones, comments, the NAT targets
// Globalnet and the route agent use. ip6 is the IPv6 variant.
func iptablesScript(ip6 bool) string {
	src, dst, to := "10.1.0.0/16", "242.0.0.1/32", "10.1.0.5"
	if ip6 {
		src, dst, to = "fd00:1::/64", "fd00:242::1/128", "fd00:1::5"
	}
	return fmt.Sprintf(`*filter
:STRAIT-TEST-FWD - [0:0]
-A FORWARD -m comment --comment "strait: test" -j STRAIT-TEST-FWD
-A STRAIT-TEST-FWD -s %[1]s -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
*nat
:STRAIT-TEST-PRE - [0:0]
:STRAIT-TEST-POST - [0:0]
-A PREROUTING -j STRAIT-TEST-PRE
-A POSTROUTING -j STRAIT-TEST-POST
-A STRAIT-TEST-PRE -d %[2]s -j DNAT --to-destination %[3]s
-A STRAIT-TEST-POST -s %[1]s -m mark --mark 0x40000/0x40000 -j MASQUERADE
COMMIT
`, src, dst, to)
}

// TestIptablesInImage unpacks the gateway image and runs its iptables
// programs chrooted into it, in a throwaway network namespace: they must
// work with nothing but the image's own loader and libraries, and commit
// and read back rules of the kind Strait writes, in both families. It also
// wants each Debian package's copyright file in every image that has files
// of it, and no iptables in the images that do not run it.
func TestIptablesInImage(t *testing.T) {
	requireImagesTest(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: chroot and a network namespace")
	}
	_, results := buildFirst(t)
	root, cfg := rootfs(t, resultFor(t, results, "strait-gateway").Archive, runtime.GOARCH)
	if got := cfg.Config.User; got != rootUser {
		t.Errorf("gateway image's user %q, want %q", got, rootUser)
	}

	ns := fmt.Sprintf("strait-imgtest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	// in runs argv in the image's root in the namespace, with the image's
	// PATH and no other environment.
	in := func(stdin string, argv ...string) string {
		t.Helper()
		args := append([]string{"netns", "exec", ns, "chroot", root}, argv...)
		cmd := exec.Command("ip", args...)
		cmd.Env = []string{envPATH}
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s in the image: %v: %s", strings.Join(argv, " "), err, out.String())
		}
		return out.String()
	}

	if v := in("", "iptables", "-V"); !strings.Contains(v, "nf_tables") {
		t.Errorf("iptables -V: %q, want the nf_tables backend", v)
	}
	// ip, which straitctl gather runs in the route agent's pod.
	if r := in("", "ip", "rule", "show"); !strings.Contains(r, "lookup main") {
		t.Errorf("ip rule show: %q, want the main table's rule", r)
	}
	if l := in("", "ip", "-d", "link", "show"); !strings.Contains(l, "lo:") {
		t.Errorf("ip -d link show: %q, want lo", l)
	}
	for _, fam := range []struct {
		prefix string
		ip6    bool
		want   []string
	}{
		{"iptables", false, []string{
			`-A FORWARD -m comment --comment "strait: test" -j STRAIT-TEST-FWD`,
			"-A STRAIT-TEST-FWD -s 10.1.0.0/16 -p tcp -m tcp --dport 80 -j ACCEPT",
			"-A STRAIT-TEST-POST -s 10.1.0.0/16 -m mark --mark 0x40000/0x40000 -j MASQUERADE",
			"-A STRAIT-TEST-PRE -d 242.0.0.1/32 -j DNAT --to-destination 10.1.0.5",
		}},
		{"ip6tables", true, []string{
			"-A STRAIT-TEST-FWD -s fd00:1::/64 -p tcp -m tcp --dport 80 -j ACCEPT",
			"-A STRAIT-TEST-PRE -d fd00:242::1/128 -j DNAT --to-destination fd00:1::5",
		}},
	} {
		in(iptablesScript(fam.ip6), fam.prefix+"-restore", "--noflush", "-w")
		saved := in("", fam.prefix+"-save")
		for _, w := range fam.want {
			if !strings.Contains(saved, w) {
				t.Errorf("%s-save lacks %q; it printed:\n%s", fam.prefix, w, saved)
			}
		}
		if l := in("", fam.prefix, "-L", "STRAIT-TEST-FWD", "-n"); !strings.Contains(l, "tcp dpt:80") {
			t.Errorf("%s -L STRAIT-TEST-FWD: %s", fam.prefix, l)
		}
	}

	// The copyright file of every Debian package the image has files of.
	status, err := os.ReadDir(filepath.Join(root, "var/lib/dpkg/status.d"))
	if err != nil || len(status) == 0 {
		t.Fatalf("the gateway image lists no Debian packages in /var/lib/dpkg/status.d: %v", err)
	}
	for _, e := range status {
		if _, err := os.Stat(filepath.Join(root, "usr/share/doc", e.Name(), "copyright")); err != nil {
			t.Errorf("package %s without its copyright file: %v", e.Name(), err)
		}
	}

	// The images that do not run iptables have none, and run as nonroot.
	for _, c := range components {
		if c.Iptables {
			continue
		}
		r, cfg := rootfs(t, resultFor(t, results, c.Name).Archive, runtime.GOARCH)
		if _, err := os.Lstat(filepath.Join(r, "usr/sbin/iptables")); err == nil {
			t.Errorf("%s has iptables", c.Name)
		}
		if _, err := os.Stat(filepath.Join(r, c.Name)); err != nil {
			t.Errorf("%s lacks its binary: %v", c.Name, err)
		}
		if cfg.Config.User != nonrootUser || cfg.Config.Entrypoint[0] != "/"+c.Name {
			t.Errorf("%s: user %q entrypoint %q", c.Name, cfg.Config.User, cfg.Config.Entrypoint)
		}
	}
}

// TestTestpodImage runs the test workload image's programs chrooted into
// it, in a throwaway network namespace, as straitctl and the e2e exec them
// in the workload's pods: strait-testpod by name (the link on the PATH),
// and ping over both families of the loopback, with the image's own loader
// and libraries only. It wants the copyright file of each package ping came
// from, and no ping in the images without it.
func TestTestpodImage(t *testing.T) {
	requireImagesTest(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: chroot and a network namespace")
	}
	_, results := buildFirst(t)
	root, _ := rootfs(t, resultFor(t, results, "strait-testpod").Archive, runtime.GOARCH)
	ns := fmt.Sprintf("strait-imgping-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	in := func(argv ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "chroot", root}, argv...)...)
		cmd.Env = []string{envPATH}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s in the image: %v: %s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	if v := in("strait-testpod", "version"); !strings.Contains(v, "strait-testpod") {
		t.Errorf("strait-testpod version, by name on the PATH: %q", v)
	}
	in("ip", "link", "set", "lo", "up")
	for _, addr := range []string{"127.0.0.1", "::1"} {
		if out := in("ping", "-c", "1", "-s", "3000", "-W", "2", addr); !strings.Contains(out, "1 received") {
			t.Errorf("ping %s in the image: %s", addr, out)
		}
	}
	for _, pkg := range pingPackages {
		if _, err := os.Stat(filepath.Join(root, "usr/share/doc", pkg, "copyright")); err != nil {
			t.Errorf("package %s without its copyright file: %v", pkg, err)
		}
	}
	for _, c := range components {
		if c.Ping {
			continue
		}
		r, _ := rootfs(t, resultFor(t, results, c.Name).Archive, runtime.GOARCH)
		if _, err := os.Lstat(filepath.Join(r, strings.TrimPrefix(pingProgram, "/"))); err == nil {
			t.Errorf("%s has ping", c.Name)
		}
	}
}

// elfMachines are the ELF machines of the architectures.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestArchitectures wants every ELF file of the gateway image of each
// architecture built (its Go binary, the iptables programs, the libraries,
// the loader) to be for that architecture, and the config to say so.
func TestArchitectures(t *testing.T) {
	requireImagesTest(t)
	_, results := buildFirst(t)
	for _, arch := range testConfig(t, "").Arches {
		root, cfg := rootfs(t, resultFor(t, results, "strait-gateway").Archive, arch)
		if cfg.Architecture != arch || cfg.OS != "linux" {
			t.Errorf("%s image config says %s/%s", arch, cfg.OS, cfg.Architecture)
		}
		n := 0
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			f, err := elf.Open(p)
			if err != nil {
				return nil // not ELF
			}
			defer f.Close()
			n++
			if f.Machine != elfMachines[arch] {
				t.Errorf("%s image: %s is for %s", arch, strings.TrimPrefix(p, root), f.Machine)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			t.Errorf("%s image: %d ELF files, want the binary, iptables, its libraries and loader", arch, n)
		}
		t.Logf("%s: %d ELF files checked for %s", arch, n, elfMachines[arch])
	}
}
