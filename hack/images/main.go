// Command images builds Strait's container images ("make images"): one OCI
// archive per component in _output/images/<component>.tar, with no container
// daemon and no base image. It is build tooling, not shipped code, so it
// lives in hack/ beside the other tools the Makefile runs (testsplit,
// mcscrds); test/ is for the tests' harnesses.
//
//	go run ./hack/images [-arch amd64,arm64] [-version v0.1.0] [-out _output/images]
//
// Each image has the component's static Go binary as its entrypoint; the
// components that run iptables (gateway, route agent, Globalnet, the test
// workload) also carry Debian's iptables programs with exactly the libraries
// and dynamic loader they load, taken from the Debian packages (fetched with
// apt-get download into a cache, unpacked with dpkg-deb), and those packages'
// copyright files. The test workload's image has iputils' ping as well, in
// a layer of its own over the iptables one. See docs/images.md.
//
// The build is reproducible: the same sources, Go toolchain and cached .deb
// files give byte-identical archives, because every file time is the source
// date (-source-date-epoch: $SOURCE_DATE_EPOCH, else the commit time of
// HEAD), layer entries are sorted with owner 0, the binaries carry no build
// ID or VCS stamp, and the image configs' created time is that date too.
// Each line of output (and of <out>/digests.txt) is "<name> <image index
// digest> <archive>".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg    Config
		arches string
		epoch  string
		only   string
	)
	flag.StringVar(&cfg.Out, "out", "_output/images", "folder of the OCI archives, <out>/<component>.tar")
	flag.StringVar(&cfg.Cache, "cache", "_output/images-cache", "folder that keeps the downloaded Debian packages (delete it to take newer ones)")
	flag.StringVar(&cfg.AptSources, "apt-sources", "/etc/apt/sources.list.d/debian.sources", "apt sources file (deb822) of Debian's archive to download the packages from: the machine's, used by an apt state of the build's own")
	flag.StringVar(&arches, "arch", "amd64", "comma-separated architectures (amd64, arm64)")
	flag.StringVar(&cfg.Repository, "repository", "strait", "repository of the image names, <repository>/<component>:<version> (straitctl join --image-repository)")
	flag.StringVar(&cfg.Version, "version", "devel", "image tag, and the version linked into the binaries (straitctl join's default --image-tag is the same)")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since 1970 for every file time and the images' created time (default $SOURCE_DATE_EPOCH, else HEAD's commit time)")
	flag.StringVar(&only, "only", "", "comma-separated components to build (default all)")
	flag.Parse()

	dir, err := moduleDir()
	if err != nil {
		return err
	}
	cfg.ModuleDir = dir
	cfg.Arches = strings.Split(arches, ",")
	if cfg.Epoch, err = sourceDate(epoch, dir); err != nil {
		return err
	}
	cfg.Components = components
	if only != "" {
		cfg.Components = nil
		for _, name := range strings.Split(only, ",") {
			c, ok := componentNamed(name)
			if !ok {
				return fmt.Errorf("-only %s: no such component", name)
			}
			cfg.Components = append(cfg.Components, c)
		}
	}
	start := time.Now()
	results, err := Build(context.Background(), cfg)
	if err != nil {
		return err
	}
	var lines strings.Builder
	for _, r := range results {
		fmt.Fprintf(&lines, "%s %s %s\n", r.Ref, r.Digest, r.Archive)
	}
	fmt.Print(lines.String())
	if err := os.WriteFile(filepath.Join(cfg.Out, "digests.txt"), []byte(lines.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "images: %d images (%s) in %s, source date %s\n", len(results), arches, time.Since(start).Round(time.Second), cfg.Epoch.UTC().Format(time.RFC3339))
	return nil
}

func componentNamed(name string) (component, bool) {
	for _, c := range components {
		if c.Name == name || c.Name == "strait-"+name {
			return c, true
		}
	}
	return component{}, false
}

// moduleDir is the root of the main module, from go env GOMOD.
func moduleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not in Strait's module (go env GOMOD is %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// sourceDate parses epoch (seconds), or when it is empty takes the commit
// time of HEAD in dir: a fixed time for a given checkout.
func sourceDate(epoch, dir string) (time.Time, error) {
	if epoch == "" {
		out, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("no -source-date-epoch and no commit time (git log -1 --format=%%ct): %w", err)
		}
		epoch = strings.TrimSpace(string(out))
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("source date epoch %q: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}
