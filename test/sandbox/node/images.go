package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// The sandbox runs no container images: it maps each image it knows to a set
// of programs on the machine. The table below is that mapping, as data. An
// image is realised as a directory of symlinks (<node dir>/images/<name>/bin),
// which becomes the container's PATH: argv[0] is looked up there, as an OCI
// runtime looks it up in the image's PATH, and an absolute argv[0] such as
// /bin/sh or /coredns maps through the same programs by its base name.

// Image is one image the sandbox can run.
type Image struct {
	// Name is the table's name for the image ("busybox", "nicolaka/netshoot",
	// "strait-gateway"); it also names the realised directory.
	Name string
	// Entrypoint and Cmd are the image's ENTRYPOINT and CMD (OCI image config
	// Entrypoint and Cmd), which a container's command and args override.
	Entrypoint []string
	Cmd        []string
	// Programs maps a program name in the image's PATH to the file on the
	// machine that realises it.
	Programs map[string]string
	// HostTools says the image also has the machine's system programs
	// (iptables, ip, ...) on its PATH after its own: Strait's images are
	// built with the networking tools their binaries run.
	HostTools bool
}

// hostPATH is the system part of Strait images' PATH.
const hostPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PATH is the container's PATH for the image realised in binDir.
func (img *Image) PATH(binDir string) string {
	if img.HostTools {
		return binDir + ":" + hostPATH
	}
	return binDir
}

// ErrUnknownImage is returned for an image that is not in the table; the
// agent reports it as the container's ErrImagePull.
var ErrUnknownImage = errors.New("not an image the sandbox can run")

// imageKind is one row of the image table.
type imageKind struct {
	// name is the table's name, matches reports whether a repository (the
	// image reference without registry-independent tag or digest) is this
	// image, and build fills its entrypoint, command and programs.
	name       string
	matches    func(repo string) bool
	entrypoint []string
	cmd        []string
	// busybox: every busybox applet is a program; debian: these programs
	// come from the machine's Debian packages (hack/prereqs.sh), found on
	// the agent's PATH, and win over busybox applets of the same name; extra:
	// programs from the node's configured directories.
	busybox bool
	debian  []string
	extra   func(cfg Config) map[string]string
}

// lastElems returns the last n slash-separated elements of repo.
func lastElems(repo string, n int) string {
	parts := strings.Split(repo, "/")
	if len(parts) < n {
		return ""
	}
	return strings.Join(parts[len(parts)-n:], "/")
}

// netshootTools are the Debian-packaged programs that make nicolaka/netshoot
// a network-tools image; whichever of them the machine has are in the image.
// Anything else a shell script expects (cat, echo, grep, sleep...) comes
// from busybox, as on the Alpine base netshoot is built on.
var netshootTools = []string{
	"bash", "curl", "dig", "host", "nslookup", "nc", "socat", "ip", "ss", "ping", "ping6",
	"wget", "tcpdump", "iptables", "ip6tables", "nft", "conntrack", "openssl", "jq",
	"iperf3", "traceroute", "mtr", "nmap", "ethtool", "arping", "hostname",
}

// imageTable lists the images the sandbox runs besides Strait's own.
var imageTable = []imageKind{{
	name:    "nicolaka/netshoot",
	matches: func(repo string) bool { return lastElems(repo, 2) == "nicolaka/netshoot" },
	cmd:     []string{"zsh"},
	busybox: true,
	debian:  netshootTools,
	// netshoot's CMD is zsh; the sandbox's is a shell too.
	extra: func(Config) map[string]string { return map[string]string{"zsh": lookHost("bash")} },
}, {
	name:       "alpine/socat",
	matches:    func(repo string) bool { return lastElems(repo, 2) == "alpine/socat" },
	entrypoint: []string{"socat"},
	busybox:    true,
	debian:     []string{"socat"},
}, {
	// docker.io/library/busybox, busybox:1.36, and mirrors of it.
	name:    "busybox",
	matches: func(repo string) bool { return path.Base(repo) == "busybox" },
	cmd:     []string{"sh"},
	busybox: true,
}, {
	name:       "coredns/coredns",
	matches:    func(repo string) bool { return lastElems(repo, 2) == "coredns/coredns" },
	entrypoint: []string{"/coredns"},
	extra: func(cfg Config) map[string]string {
		// Built from source by the sandbox's build; missing, /coredns is
		// a command the image lacks (RunContainerError naming it).
		p := filepath.Join(cfg.KubeBin, "coredns")
		if _, err := os.Stat(p); err != nil {
			return nil
		}
		return map[string]string{"coredns": p}
	},
}, {
	// registry.k8s.io/pause: its /pause holds a pod's namespaces and exits
	// on SIGTERM, which the sandbox's own pause helper does.
	name:       "pause",
	matches:    func(repo string) bool { return path.Base(repo) == "pause" },
	entrypoint: []string{"/pause"},
}}

// repository strips an image reference's digest and tag: what is left names
// the image whatever its tag ("docker.io/library/busybox:1.36" →
// "docker.io/library/busybox"; a registry's port is no tag).
func repository(image string) string {
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo
}

// lookupImage finds image in the table. Strait's images (any registry and
// tag) are those whose last path element, with "strait-" put in front when
// it lacks it, names a binary in cfg.ImageBin: their entrypoint is that
// binary, and it is their only program. The error wraps ErrUnknownImage and
// names the image.
func lookupImage(cfg Config, image string) (*Image, error) {
	repo := repository(image)
	for _, k := range imageTable {
		if !k.matches(repo) {
			continue
		}
		img := &Image{Name: k.name, Entrypoint: k.entrypoint, Cmd: k.cmd, Programs: map[string]string{}}
		if k.busybox {
			bb, err := busyboxApplets()
			if err != nil {
				return nil, fmt.Errorf("image %q needs busybox (hack/prereqs.sh installs it): %w", image, err)
			}
			for _, a := range bb.applets {
				img.Programs[a] = bb.bin
			}
			img.Programs["busybox"] = bb.bin
		}
		for _, p := range k.debian {
			if host := lookHost(p); host != "" {
				img.Programs[p] = host
			}
		}
		if k.extra != nil {
			for name, host := range k.extra(cfg) {
				if host != "" {
					img.Programs[name] = host
				}
			}
		}
		if k.name == "pause" {
			img.Programs["pause"] = pauseProgram
		}
		return img, nil
	}
	name := path.Base(repo)
	if !strings.HasPrefix(name, "strait-") {
		name = "strait-" + name
	}
	bin := filepath.Join(cfg.ImageBin, name)
	if st, err := os.Stat(bin); err != nil || st.IsDir() || name == "strait-sandbox" || cfg.ImageBin == "" {
		return nil, fmt.Errorf("image %q: %w: it runs Strait's own images (their binaries in %s, and %s is not there) and %s",
			image, ErrUnknownImage, cfg.ImageBin, name, strings.Join(tableNames(), ", "))
	}
	return &Image{Name: name, Entrypoint: []string{"/" + name}, Programs: map[string]string{name: bin}, HostTools: true}, nil
}

// pauseProgram marks the pause image's program, which realise writes as a
// script that runs the sandbox's own pause helper.
const pauseProgram = "<strait-sandbox pause>"

func tableNames() []string {
	var names []string
	for _, k := range imageTable {
		names = append(names, k.name)
	}
	return names
}

// lookHost finds a program on the machine: on the agent's PATH, or in the
// sbin directories, which a non-login PATH may lack. "" when it is missing.
func lookHost(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// busybox is the machine's busybox binary and its applets.
type busybox struct {
	bin     string
	applets []string
}

// busyboxApplets finds busybox and lists its applets (busybox --list), once
// per process.
var busyboxApplets = sync.OnceValues(func() (busybox, error) {
	bb := lookHost("busybox")
	if bb == "" {
		return busybox{}, errors.New("busybox not found")
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return busybox{}, fmt.Errorf("%s --list: %w", bb, err)
	}
	return busybox{bin: bb, applets: strings.Fields(string(out))}, nil
})

// containerArgv applies Kubernetes' rules for a container's command and args
// over the image's ENTRYPOINT and CMD (Pod API, Container.command and
// Container.args; "Define a Command and Arguments for a Container"):
// command and args given: both used, ENTRYPOINT and CMD ignored; command
// only: CMD ignored; args only: ENTRYPOINT then args; neither: ENTRYPOINT
// then CMD. An empty result is an error.
func containerArgv(img *Image, command, args []string) ([]string, error) {
	var argv []string
	switch {
	case len(command) > 0:
		argv = append(slices.Clone(command), args...)
	case len(args) > 0:
		argv = append(slices.Clone(img.Entrypoint), args...)
	default:
		argv = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("image %s has no entrypoint or command, and the container gives no command", img.Name)
	}
	return argv, nil
}

// resolve finds argv0 among the image's programs, realised in binDir: a bare
// name as a PATH lookup, an absolute or relative path by its base name; for
// an image with HostTools, then on the machine. It returns the file to
// execute, or an error naming argv0 and the image.
func (img *Image) resolve(binDir, argv0 string) (string, error) {
	name := path.Base(argv0)
	if _, ok := img.Programs[name]; ok && name != "." && name != "/" {
		return filepath.Join(binDir, name), nil
	}
	if img.HostTools {
		if filepath.IsAbs(argv0) {
			if st, err := os.Stat(argv0); err == nil && !st.IsDir() {
				return argv0, nil
			}
		} else if host := lookHost(argv0); host != "" && !strings.Contains(argv0, "/") {
			return host, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in image %s (the sandbox's image has: %s)", argv0, img.Name, img.summary())
}

// summary lists a few of the image's programs for error messages.
func (img *Image) summary() string {
	var names []string
	for n := range img.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 12 {
		names = append(names[:12], "...")
	}
	return strings.Join(names, " ")
}

// tmpSeq makes realise's temporary names unique within the process.
var tmpSeq atomic.Uint64

// realise makes the image's program directory under root
// (root/<image>/bin, one symlink per program) and returns it. It is
// idempotent and safe to run concurrently: each link is written under a
// temporary name and renamed into place when it differs.
func (img *Image) realise(root, sandboxExecutable string) (string, error) {
	dir := filepath.Join(root, strings.ReplaceAll(img.Name, "/", "_"), "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for name, target := range img.Programs {
		p := filepath.Join(dir, name)
		if target == pauseProgram {
			script := fmt.Sprintf("#!/bin/sh\nexec %q pause\n", sandboxExecutable)
			if old, err := os.ReadFile(p); err == nil && string(old) == script {
				continue
			}
			tmp := fmt.Sprintf("%s.tmp%d-%d", p, os.Getpid(), tmpSeq.Add(1))
			if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
				return "", err
			}
			if err := os.Rename(tmp, p); err != nil {
				return "", err
			}
			continue
		}
		if old, err := os.Readlink(p); err == nil && old == target {
			continue
		}
		tmp := fmt.Sprintf("%s.tmp%d-%d", p, os.Getpid(), tmpSeq.Add(1))
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return "", fmt.Errorf("image %s: link %s: %w", img.Name, name, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return "", fmt.Errorf("image %s: link %s: %w", img.Name, name, err)
		}
	}
	return dir, nil
}
