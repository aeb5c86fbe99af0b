package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Config is what Build builds.
type Config struct {
	// ModuleDir is the root of Strait's module (where go.mod is).
	ModuleDir string
	// Out is the folder of the archives, <Out>/<component>.tar.
	Out string
	// Cache keeps the downloaded .deb files, <Cache>/debs/<arch>/, and
	// apt's own state for them, <Cache>/apt/<arch>/.
	Cache string
	// AptSources is the deb822 sources file of Debian's archive that apt
	// downloads from (the machine's own).
	AptSources string
	// Arches are the architectures, GOARCH names (amd64, arm64).
	Arches []string
	// Repository and Version make the image names,
	// <Repository>/<component>:<Version>; Version is also linked into the
	// binaries (pkg/version).
	Repository, Version string
	// Epoch is every file's time and the images' created time.
	Epoch time.Time
	// Components are the images to build.
	Components []component
}

// Result is one image built.
type Result struct {
	Component string
	// Ref is the image's name, <Repository>/<component>:<Version>.
	Ref string
	// Digest is the digest of the image index (one manifest per
	// architecture): what a registry reports for Ref once it is pushed.
	Digest v1.Hash
	// Archive is the OCI archive's path.
	Archive string
}

// envPATH is the images' PATH: the usual one, where the iptables programs
// (in /usr/sbin) are found by name as pkg/nodenet runs them.
const envPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Build builds every component's image for every architecture and writes
// one OCI archive per component into cfg.Out: a tar of an OCI image layout
// whose index.json names one image index (annotated with the tag as
// org.opencontainers.image.ref.name and the full name as
// io.containerd.image.name) that holds one image manifest per architecture.
func Build(ctx context.Context, cfg Config) ([]Result, error) {
	work, err := os.MkdirTemp("", "strait-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}

	base, err := layer(baseFiles(), cfg.Epoch)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	// manifests[component] holds one image per architecture, in cfg.Arches' order.
	manifests := map[string][]mutate.IndexAddendum{}
	for _, arch := range cfg.Arches {
		p, ok := platforms[arch]
		if !ok {
			return nil, fmt.Errorf("architecture %q: want one of amd64, arm64", arch)
		}
		bins := filepath.Join(work, "bin", arch)
		if err := goBuild(ctx, cfg, p, bins); err != nil {
			return nil, err
		}
		var iptables, ping v1.Layer
		if needsIptables(cfg.Components) {
			if iptables, ping, err = debianLayers(ctx, cfg, p, filepath.Join(work, "debs", p.Debian)); err != nil {
				return nil, err
			}
		}
		for _, c := range cfg.Components {
			img, err := image(cfg, c, p, base, iptables, ping, filepath.Join(bins, c.Name))
			if err != nil {
				return nil, fmt.Errorf("image %s for %s: %w", c.Name, arch, err)
			}
			manifests[c.Name] = append(manifests[c.Name], mutate.IndexAddendum{
				Add: img,
				Descriptor: v1.Descriptor{Platform: &v1.Platform{
					OS: "linux", Architecture: p.GOARCH, Variant: p.Variant,
				}},
			})
		}
	}

	var results []Result
	for _, c := range cfg.Components {
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), manifests[c.Name]...)
		digest, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		ref := cfg.Repository + "/" + c.Name + ":" + cfg.Version
		dir := filepath.Join(work, "layout", c.Name)
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			return nil, err
		}
		if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": cfg.Version,
			"io.containerd.image.name":          ref,
		})); err != nil {
			return nil, fmt.Errorf("write %s: %w", c.Name, err)
		}
		archive := filepath.Join(cfg.Out, c.Name+".tar")
		if err := archiveDir(dir, archive, cfg.Epoch); err != nil {
			return nil, fmt.Errorf("archive %s: %w", c.Name, err)
		}
		results = append(results, Result{Component: c.Name, Ref: ref, Digest: digest, Archive: archive})
	}
	return results, nil
}

func needsIptables(cs []component) bool {
	return slices.ContainsFunc(cs, func(c component) bool { return c.Iptables })
}

func needsPing(cs []component) bool {
	return slices.ContainsFunc(cs, func(c component) bool { return c.Ping })
}

// debianLayers are the layers made of Debian's packages for p: iptables
// (iptablesFiles), and ping (pingProgram and what it needs beyond the
// iptables layer, which is below it) when a component has it, else nil.
// The packages are unpacked under work.
func debianLayers(ctx context.Context, cfg Config, p platform, work string) (iptables, ping v1.Layer, err error) {
	pkgs := slices.Clone(iptablesPackages)
	if needsPing(cfg.Components) {
		pkgs = append(pkgs, pingPackages...)
	}
	apt := aptConfig{Dir: filepath.Join(cfg.Cache, "apt"), Sources: cfg.AptSources}
	debs, err := fetchDebs(ctx, filepath.Join(cfg.Cache, "debs", p.Debian), apt, p, pkgs)
	if err != nil {
		return nil, nil, err
	}
	trees, err := unpackDebs(ctx, work, pkgs, debs)
	if err != nil {
		return nil, nil, err
	}
	files, err := iptablesFiles(trees, p)
	if err != nil {
		return nil, nil, fmt.Errorf("iptables for %s: %w", p.GOARCH, err)
	}
	if iptables, err = layer(files, cfg.Epoch); err != nil {
		return nil, nil, fmt.Errorf("iptables layer for %s: %w", p.GOARCH, err)
	}
	if !needsPing(cfg.Components) {
		return iptables, nil, nil
	}
	pf, err := programFiles(trees, p, []string{pingProgram}, files)
	if err != nil {
		return nil, nil, fmt.Errorf("ping for %s: %w", p.GOARCH, err)
	}
	if ping, err = layer(pf, cfg.Epoch); err != nil {
		return nil, nil, fmt.Errorf("ping layer for %s: %w", p.GOARCH, err)
	}
	return iptables, ping, nil
}

// baseFiles are in every image: users root and nonroot (for the uid:gid in
// the image config, and for programs that look their user up) and a /tmp.
func baseFiles() fileset {
	return fileset{
		"etc/passwd": {Path: "etc/passwd", Mode: 0o644, Data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n")},
		"etc/group": {Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		"tmp":       {Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// goBuild builds the components' binaries for p into dir, reproducibly:
// static (CGO_ENABLED=0), paths trimmed, no VCS stamp, an empty build ID,
// no symbol table or DWARF (panics still print file:line, from pclntab).
func goBuild(ctx context.Context, cfg Config, p platform, dir string) error {
	ldflags := "-buildid= -s -w -X strait.dev/strait/pkg/version.Version=" + cfg.Version
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=" + ldflags, "-o", dir + "/"}
	for _, c := range cfg.Components {
		args = append(args, c.Package)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.GOARCH)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (GOARCH=%s): %w: %s", strings.Join(args, " "), p.GOARCH, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// image is one component's image for p: the base layer, the iptables and
// ping layers when the component has them, and the binary as /<name>, its
// entrypoint (the path the sandbox gives Strait's images too), with its link
// on the PATH when the component is OnPATH.
func image(cfg Config, c component, p platform, base, iptables, ping v1.Layer, bin string) (v1.Image, error) {
	created := v1.Time{Time: cfg.Epoch}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.GOARCH,
		Variant:      p.Variant,
		OS:           "linux",
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{"/" + c.Name},
			Env:        []string{envPATH},
			User:       c.User,
			WorkingDir: "/",
			Labels: map[string]string{
				"org.opencontainers.image.title":   c.Name,
				"org.opencontainers.image.version": cfg.Version,
			},
		},
	})
	if err != nil {
		return nil, err
	}
	adds := []mutate.Addendum{{Layer: base, History: v1.History{Created: created, CreatedBy: "hack/images: /etc/passwd, /etc/group, /tmp"}}}
	if c.Iptables {
		adds = append(adds, mutate.Addendum{Layer: iptables, History: v1.History{Created: created,
			CreatedBy: "hack/images: iptables (nf_tables) from Debian packages " + strings.Join(iptablesPackages, " ")}})
	}
	if c.Ping {
		if !c.Iptables {
			return nil, errors.New("ping without iptables: its layer leaves out the libraries the iptables layer has")
		}
		adds = append(adds, mutate.Addendum{Layer: ping, History: v1.History{Created: created,
			CreatedBy: "hack/images: ping from Debian packages " + strings.Join(pingPackages, " ")}})
	}
	files := fileset{c.Name: {Path: c.Name, Mode: 0o755, Src: bin}}
	createdBy := "hack/images: /" + c.Name + " (go build " + c.Package + ")"
	if c.OnPATH {
		link := path.Join(pathDir, c.Name)
		files.add(fsEntry{Path: link, Mode: fs.ModeSymlink | 0o777, Link: "/" + c.Name})
		createdBy += ", linked from /" + link
	}
	bl, err := layer(files, cfg.Epoch)
	if err != nil {
		return nil, err
	}
	adds = append(adds, mutate.Addendum{Layer: bl, History: v1.History{Created: created, CreatedBy: createdBy}})
	return mutate.Append(img, adds...)
}
