package main

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// platform is one architecture the images are built for, in Go's, Debian's
// and the C toolchain's names.
type platform struct {
	GOARCH  string // amd64, arm64: also the OCI platform's architecture
	Debian  string // Debian's architecture name (dpkg --print-architecture)
	Triplet string // the multiarch library directory, /usr/lib/<Triplet>
	Variant string // the OCI platform variant ("v8" for arm64)
}

// platforms are the architectures the tool knows.
var platforms = map[string]platform{
	"amd64": {GOARCH: "amd64", Debian: "amd64", Triplet: "x86_64-linux-gnu"},
	"arm64": {GOARCH: "arm64", Debian: "arm64", Triplet: "aarch64-linux-gnu", Variant: "v8"},
}

// fetchDebs returns the .deb file of each package for p, from dir (the
// cache, <cache>/debs/<arch>) or, when dir lacks it, downloaded there with
// apt-get download through apt's own client and signature checks, from the
// machine's Debian sources (aptSources) at the version apt picks. A cached
// package is used as it is, so that a rebuild takes the same bytes: delete
// the cache to take Debian's newer versions.
func fetchDebs(ctx context.Context, dir string, a aptConfig, p platform, pkgs []string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cached := func(pkg string) ([]string, error) {
		return filepath.Glob(filepath.Join(dir, pkg+"_*_*.deb"))
	}
	var missing []string
	for _, pkg := range pkgs {
		m, err := cached(pkg)
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			missing = append(missing, pkg+":"+p.Debian)
		}
	}
	if len(missing) > 0 {
		if err := a.download(ctx, p, dir, missing); err != nil {
			return nil, err
		}
	}
	debs := map[string]string{}
	for _, pkg := range pkgs {
		m, err := cached(pkg)
		if err != nil {
			return nil, err
		}
		if len(m) != 1 {
			return nil, fmt.Errorf("package %s for %s: want one .deb in %s, found %d (%s): remove the stale ones", pkg, p.Debian, dir, len(m), strings.Join(m, " "))
		}
		debs[pkg] = m[0]
	}
	return debs, nil
}

// aptConfig runs apt-get with a state of its own, per architecture, under
// Dir (package lists, apt's download cache, an empty dpkg status), and the
// sources in Sources alone: the machine's apt configuration, its dpkg
// architectures and its package lists are neither used nor changed, so
// arm64 packages come on an amd64 machine without dpkg --add-architecture.
type aptConfig struct {
	Dir     string // <cache>/apt
	Sources string // a deb822 .sources file: the machine's Debian archive
}

// options are apt-get's -o options for p's private state.
func (a aptConfig) options(p platform) ([]string, error) {
	root := filepath.Join(a.Dir, p.Debian)
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	src, err := os.ReadFile(a.Sources)
	if err != nil {
		return nil, fmt.Errorf("apt sources (-apt-sources): %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "sources.list.d", "debian.sources"), src, 0o644); err != nil {
		return nil, err
	}
	// No sources.list and no pins: only the sources above count.
	status, empty := filepath.Join(root, "status"), filepath.Join(root, "empty")
	for _, f := range []string{status, empty} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return nil, err
		}
	}
	opts := []string{
		"Dir::State=" + filepath.Join(root, "state"),
		"Dir::State::status=" + status,
		"Dir::Cache=" + filepath.Join(root, "cache"),
		"Dir::Etc::SourceList=" + empty,
		"Dir::Etc::SourceParts=" + filepath.Join(root, "sources.list.d"),
		"Dir::Etc::Preferences=" + empty,
		"Dir::Etc::PreferencesParts=" + filepath.Join(root, "preferences.d"),
		"APT::Architecture=" + p.Debian,
		"APT::Architectures::=" + p.Debian,
		// As root apt downloads as the user _apt, which may not write
		// to our folders; the files are checked against the signed
		// package lists all the same.
		"APT::Sandbox::User=root",
	}
	var args []string
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	return args, nil
}

// download runs apt-get download of pkgs (name:arch) in dir, first
// fetching the package lists when there are none, and again when the
// download fails (lists older than the archive name versions it no longer
// has).
func (a aptConfig) download(ctx context.Context, p platform, dir string, pkgs []string) error {
	opts, err := a.options(p)
	if err != nil {
		return err
	}
	run := func(dir string, args ...string) error {
		cmd := exec.CommandContext(ctx, "apt-get", append(append([]string{"-q"}, opts...), args...)...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	}
	lists, _ := filepath.Glob(filepath.Join(a.Dir, p.Debian, "state", "lists", "*_Packages*"))
	if len(lists) == 0 {
		if err := run(dir, "update"); err != nil {
			return err
		}
	}
	args := append([]string{"download"}, pkgs...)
	if err := run(dir, args...); err != nil {
		if uerr := run(dir, "update"); uerr != nil {
			return errors.Join(err, uerr)
		}
		return run(dir, args...)
	}
	return nil
}

// debTree is one package unpacked with dpkg-deb -x.
type debTree struct {
	Pkg     string
	Root    string // the unpacked files
	Control []byte // dpkg-deb -f: the package's control fields
}

// unpackDebs unpacks each package into its own folder under dir, so that
// every file is known by the package it came from.
func unpackDebs(ctx context.Context, dir string, pkgs []string, debs map[string]string) ([]debTree, error) {
	var trees []debTree
	for _, pkg := range pkgs {
		root := filepath.Join(dir, pkg)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[pkg], root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[pkg], err, bytes.TrimSpace(out))
		}
		control, err := exec.CommandContext(ctx, "dpkg-deb", "-f", debs[pkg]).Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg-deb -f %s: %w", debs[pkg], err)
		}
		trees = append(trees, debTree{Pkg: pkg, Root: root, Control: control})
	}
	return trees, nil
}

// iptablesFiles selects from the unpacked packages what the iptables
// programs need to run in an image with nothing else: xtables-nft-multi and
// every extension it loads (/usr/lib/<triplet>/xtables/*.so), iproute2's
// ip (ipProgram), what they need (programFiles), and the links
// iptablesPrograms.
func iptablesFiles(trees []debTree, p platform) (fileset, error) {
	roots := []string{"/usr/sbin/" + iptablesMulti, ipProgram}
	extDir := "/usr/lib/" + p.Triplet + "/xtables"
	for _, t := range trees {
		entries, err := os.ReadDir(filepath.Join(t.Root, extDir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".so") {
				roots = append(roots, path.Join(extDir, e.Name()))
			}
		}
	}
	if len(roots) == 2 {
		return nil, fmt.Errorf("no iptables extensions in %s of the packages %s", extDir, pkgNames(trees))
	}
	files, err := programFiles(trees, p, roots, nil)
	if err != nil {
		return nil, err
	}
	for _, name := range iptablesPrograms {
		files.add(fsEntry{Path: "usr/sbin/" + name, Mode: fs.ModeSymlink | 0o777, Link: iptablesMulti})
	}
	return files, nil
}

// programFiles selects from the unpacked packages the files roots (absolute
// paths in the image) and what they need: the files links point to, the
// libraries of ELF files, found by their DT_NEEDED entries, and the dynamic
// loader named by PT_INTERP (read from the files, so it works for any
// architecture, unlike ldd); and for each package a file was taken from,
// its copyright file and its control fields in
// /var/lib/dpkg/status.d/<pkg> (where scanners of minimal images look for
// installed packages). What lower (a layer below, or nil) holds already is
// left out. A library that none of the packages has is an error that names
// it and who needs it.
func programFiles(trees []debTree, p platform, roots []string, lower fileset) (fileset, error) {
	s := &selector{trees: trees, p: p, files: fileset{}, lower: lower, used: map[string]bool{}}
	for _, r := range roots {
		if err := s.take(r, "the image"); err != nil {
			return nil, err
		}
	}
	for _, t := range trees {
		if !s.used[t.Pkg] {
			continue
		}
		cp := path.Join("/usr/share/doc", t.Pkg, "copyright")
		if _, err := os.Stat(filepath.Join(t.Root, cp)); err != nil {
			return nil, fmt.Errorf("package %s has no %s: %w", t.Pkg, cp, err)
		}
		s.files.add(fsEntry{Path: cp[1:], Mode: 0o644, Src: filepath.Join(t.Root, cp)})
		s.files.add(fsEntry{Path: "var/lib/dpkg/status.d/" + t.Pkg, Mode: 0o644, Data: t.Control})
	}
	return s.files, nil
}

func pkgNames(trees []debTree) string {
	var n []string
	for _, t := range trees {
		n = append(n, t.Pkg)
	}
	return strings.Join(n, " ")
}

// selector gathers files from the unpacked packages, following links and
// shared library dependencies.
type selector struct {
	trees []debTree
	p     platform
	files fileset
	lower fileset         // files a layer below has: not taken again
	used  map[string]bool // packages a file was taken from
}

// lookup finds the absolute image path name in the packages: the package's
// tree and the file's Lstat.
func (s *selector) lookup(name string) (*debTree, fs.FileInfo, bool) {
	for i := range s.trees {
		if st, err := os.Lstat(filepath.Join(s.trees[i].Root, name)); err == nil {
			return &s.trees[i], st, true
		}
	}
	return nil, nil, false
}

// take adds the absolute path name (and what it links to, and for an ELF
// file its loader and libraries) to the files; by says who needs it, for
// the error when no package has it.
func (s *selector) take(name, by string) error {
	rel := strings.TrimPrefix(path.Clean(name), "/")
	if _, ok := s.files[rel]; ok {
		return nil
	}
	if _, ok := s.lower[rel]; ok {
		return nil
	}
	t, st, ok := s.lookup(name)
	if !ok {
		return fmt.Errorf("%s needs %s, which none of the packages %s has: add the package that does (dpkg -S %s)", by, name, pkgNames(s.trees), path.Base(name))
	}
	s.used[t.Pkg] = true
	host := filepath.Join(t.Root, name)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(host)
		if err != nil {
			return err
		}
		s.files.add(fsEntry{Path: rel, Mode: fs.ModeSymlink | 0o777, Link: link})
		target := link
		if !path.IsAbs(link) {
			target = path.Join(path.Dir(name), link)
		}
		return s.take(target, name)
	case st.Mode().IsRegular():
		s.files.add(fsEntry{Path: rel, Mode: st.Mode().Perm(), Src: host})
		return s.takeELFDeps(name, host)
	default:
		return fmt.Errorf("%s in package %s is neither a file nor a link", name, t.Pkg)
	}
}

// takeELFDeps takes the loader and the libraries of the ELF file at host
// (the image's path name); a file that is not ELF needs nothing.
func (s *selector) takeELFDeps(name, host string) error {
	f, err := elf.Open(host)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) {
			return nil
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return fmt.Errorf("read %s's interpreter: %w", name, err)
		}
		if err := s.take(string(bytes.TrimRight(b, "\x00")), name); err != nil {
			return err
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read %s's libraries: %w", name, err)
	}
	slices.Sort(libs)
	for _, lib := range libs {
		found := ""
		// The loader's default search path on Debian (multiarch first);
		// the image has no /etc/ld.so.cache.
		for _, dir := range []string{"/lib/" + s.p.Triplet, "/usr/lib/" + s.p.Triplet, "/lib", "/usr/lib"} {
			if _, _, ok := s.lookup(path.Join(dir, lib)); ok {
				found = path.Join(dir, lib)
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs the library %s, which none of the packages %s has: add the package that does (dpkg -S %s)", name, lib, pkgNames(s.trees), lib)
		}
		if err := s.take(found, name); err != nil {
			return err
		}
	}
	return nil
}
