package node

import (
	"archive/tar"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/proc"
)

// How the agent runs Strait's own images (Config.Runtime): the components'
// and the test workload's. Tool images (netshoot, socat, busybox, coredns,
// pause) keep their host mapping under both.
const (
	// RuntimeHost runs an image's binary from the sandbox's _output/bin as a
	// process in the pod's namespaces (images.go's mapping).
	RuntimeHost = "host"
	// RuntimeOCI unpacks the image from its OCI archive (make images) and
	// runs it as a container under crun, Debian's OCI runtime.
	RuntimeOCI = "oci"
)

// Runtimes are the values of Config.Runtime (and strait-sandbox up --runtime).
var Runtimes = []string{RuntimeHost, RuntimeOCI}

// ociImages are the images the OCI runtime runs from their archives: every
// component straitctl join deploys, and the test workload that the e2e and
// straitctl verify deploy (strait/testpod). What they exec in the
// workload's pods (strait-testpod by name, ip, ping) is in its image
// (hack/images).
var ociImages = []string{"strait-gateway", "strait-routeagent", "strait-lighthouse", "strait-dns", "strait-globalnet", "strait-testpod"}

// defaultCaps is the bounding set of an unprivileged container that asks for
// no capabilities: containerd's and CRI-O's default list, which a pod's
// securityContext.capabilities adds to and drops from.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps is every capability Linux 6.x defines (capability.h, 0 to 40): a
// privileged container's set, and what capabilities.add: [ALL] gives.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
	"CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// ociRuntime runs Strait's images under crun. Images are read from OCI
// archives (<Archives>/<component>.tar, as make images writes them), and the
// linux/<GOARCH> image's layers are unpacked once per image digest into
// <Cache>/rootfs/<digest>, which every container of the image reads through
// an overlay of its own (a restart starts from the image again, as under a
// kubelet). cgroups are not used (crun --cgroup-manager=disabled): the
// sandbox enforces no resource limits.
type ociRuntime struct {
	// Crun is the crun binary; Root its state directory (crun --root).
	Crun, Root string
	// Archives holds the images' OCI archives; Cache the unpacked images,
	// shared by every node of the sandbox.
	Archives, Cache string

	mu     sync.Mutex
	images map[string]*ociImage // by archive path
	stamps map[string]string    // archive path -> size and mtime it was read at
}

// ociImage is one image unpacked for the OCI runtime.
type ociImage struct {
	// Digest is the linux/<GOARCH> image manifest's digest; Rootfs its
	// layers, unpacked; Config the image config (Entrypoint, Cmd, Env,
	// User, WorkingDir).
	Digest v1.Hash
	Rootfs string
	Config v1.Config
}

// archive is the OCI archive the runtime runs image from: "" for an image it
// leaves to the host mapping (a tool image).
func (r *ociRuntime) archive(image string) string {
	name := path.Base(repository(image))
	if !strings.HasPrefix(name, "strait-") {
		name = "strait-" + name
	}
	if !slices.Contains(ociImages, name) {
		return ""
	}
	return filepath.Join(r.Archives, name+".tar")
}

// pull returns the image of archive, unpacking it when the archive is new or
// changed since it was last read. Errors name the archive; a missing one
// says how to build it.
func (r *ociRuntime) pull(archive string) (*ociImage, error) {
	st, err := os.Stat(archive)
	if err != nil {
		return nil, fmt.Errorf("image archive %s (make images IMAGES_ARCH=%s builds it): %w", archive, runtime.GOARCH, err)
	}
	stamp := fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
	r.mu.Lock()
	defer r.mu.Unlock()
	if img := r.images[archive]; img != nil && r.stamps[archive] == stamp {
		return img, nil
	}
	img, err := r.unpack(archive)
	if err != nil {
		return nil, fmt.Errorf("image archive %s: %w", archive, err)
	}
	if r.images == nil {
		r.images, r.stamps = map[string]*ociImage{}, map[string]string{}
	}
	r.images[archive], r.stamps[archive] = img, stamp
	return img, nil
}

// unpack reads archive's OCI layout (untarred into a temporary directory),
// picks the linux/<GOARCH> image and unpacks its layers into the cache
// unless an image of the same digest is there already. Several node agents
// share the cache: each unpacks into a directory of its own and renames it
// into place, and the loser of a race removes its copy.
func (r *ociRuntime) unpack(archive string) (*ociImage, error) {
	if err := os.MkdirAll(filepath.Join(r.Cache, "rootfs"), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(r.Cache, "layout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	err = untar(f, tmp)
	f.Close()
	if err != nil {
		return nil, err
	}
	img, digest, err := platformImage(tmp)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	out := &ociImage{Digest: digest, Rootfs: filepath.Join(r.Cache, "rootfs", digest.Hex), Config: cf.Config}
	if _, err := os.Stat(out.Rootfs); err == nil {
		return out, nil
	}
	dir, err := os.MkdirTemp(r.Cache, "rootfs-")
	if err != nil {
		return nil, err
	}
	rc := mutate.Extract(img)
	err = untar(rc, dir)
	rc.Close()
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("unpack %s: %w", digest, err)
	}
	if err := os.Rename(dir, out.Rootfs); err != nil {
		os.RemoveAll(dir)
		if _, serr := os.Stat(out.Rootfs); serr != nil {
			return nil, err
		}
	}
	return out, nil
}

// platformImage finds the linux/<GOARCH> image in the OCI layout dir: its
// index.json names an image index per image (make images) or images
// directly.
func platformImage(dir string) (v1.Image, v1.Hash, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("read OCI layout: %w", err)
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	var find func(idx v1.ImageIndex, depth int) (v1.Image, v1.Hash, error)
	find = func(idx v1.ImageIndex, depth int) (v1.Image, v1.Hash, error) {
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, v1.Hash{}, err
		}
		var seen []string
		for _, d := range m.Manifests {
			switch {
			case d.MediaType.IsIndex() && depth < 2:
				child, err := idx.ImageIndex(d.Digest)
				if err != nil {
					return nil, v1.Hash{}, err
				}
				if img, h, err := find(child, depth+1); err == nil {
					return img, h, nil
				}
			case d.MediaType.IsImage():
				if d.Platform != nil {
					seen = append(seen, d.Platform.String())
					if !d.Platform.Satisfies(want) {
						continue
					}
				}
				img, err := idx.Image(d.Digest)
				return img, d.Digest, err
			}
		}
		return nil, v1.Hash{}, fmt.Errorf("no %s image (it has: %s)", want.String(), strings.Join(seen, ", "))
	}
	return find(idx, 0)
}

// untar writes the tar stream r under dir: directories, regular files,
// symlinks and hard links with their modes and owners. Names that climb out
// of dir are refused. The archives are the sandbox's own builds.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		target := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, mode); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			_ = os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			_ = os.Remove(target)
			if err := os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), target); err != nil {
				return err
			}
		default:
			continue
		}
		if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeSymlink {
			// After the chown, which clears setuid bits; and past the umask.
			if err := os.Chmod(target, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode)); err != nil {
				return err
			}
		}
	}
}

// modeBits converts the setuid, setgid and sticky bits of a tar header's
// mode (Unix values) to Go's.
func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// ociContainer is what the agent decided for one container, in the OCI
// runtime's terms.
type ociContainer struct {
	// ID is crun's name for the container, unique on the node; Bundle the
	// directory of its config.json and rootfs (an overlay mount point).
	ID, Bundle string
	Image      *ociImage
	// Args is argv; Env the whole environment (image, then pod); Cwd the
	// working directory.
	Args, Env []string
	Cwd       string
	User      specs.User
	// Caps is the bounding set; effective and permitted for uid 0, empty
	// otherwise (Kubernetes gives a non-root process no capabilities).
	Caps         []string
	Privileged   bool
	ReadOnlyRoot bool
	NoNewPrivs   bool
	Mounts       []Mount
	Sysctls      map[string]string
	// NetNS and UTSNS are namespace files (/proc/<pause>/ns/net) to join;
	// "" keeps the agent's, the node's (hostNetwork).
	NetNS, UTSNS string
}

// spec is the OCI runtime spec of c: new mount, PID and IPC namespaces, the
// pod's network and UTS namespaces joined, /proc, /dev, /sys, and the pod's
// volumes and /etc files bind-mounted.
func (c *ociContainer) spec() *specs.Spec {
	caps := slices.Clone(c.Caps)
	pcaps := &specs.LinuxCapabilities{Bounding: caps}
	if c.User.UID == 0 {
		pcaps.Effective, pcaps.Permitted = caps, caps
	}
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	if c.Privileged {
		sysOpts[3] = "rw"
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
	}
	for _, m := range c.Mounts {
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source, Options: opts})
	}
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.MountNamespace}}
	if c.NetNS != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: c.NetNS})
	}
	if c.UTSNS != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UTSNamespace, Path: c.UTSNS})
	}
	linux := &specs.Linux{Namespaces: ns, Sysctl: c.Sysctls}
	if c.Privileged {
		// A privileged container sees the node's devices; the components
		// need only the TUN device (userspace WireGuard, VPN tools).
		if st, err := os.Stat("/dev/net/tun"); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			linux.Devices = []specs.LinuxDevice{{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200, FileMode: ptrMode(0o666)}}
		}
	} else {
		linux.MaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"}
		linux.ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	}
	return &specs.Spec{
		Version: ociSpecVersion,
		Process: &specs.Process{
			User: c.User, Args: c.Args, Env: c.Env, Cwd: c.Cwd,
			Capabilities: pcaps, NoNewPrivileges: c.NoNewPrivs,
		},
		Root:   &specs.Root{Path: "rootfs", Readonly: c.ReadOnlyRoot},
		Mounts: mounts,
		Linux:  linux,
	}
}

// ociSpecVersion is the runtime spec version the configs declare: Debian 12's
// crun 1.8.1 refuses any but 1.0.x ("unknown version specified"), and every
// field written here is in 1.0.
const ociSpecVersion = "1.0.2"

func ptrMode(m os.FileMode) *os.FileMode { return &m }

// containerCaps is the bounding set of a container with sc: all for a
// privileged one; else the default set, emptied by drop ALL, filled by add
// ALL, then sc's other adds and drops ("NET_ADMIN" or "CAP_NET_ADMIN").
func containerCaps(sc *corev1.SecurityContext) []string {
	set := wantCaps(sc)
	// No more than the agent has: a runtime cannot pass on a capability
	// outside its own bounding set (this machine lacks CAP_SYS_RESOURCE
	// there), and crun's capset fails on one.
	have := boundingCaps()
	return slices.DeleteFunc(set, func(c string) bool { return !have[c] })
}

// wantCaps is containerCaps before the agent's own bounding set limits it.
func wantCaps(sc *corev1.SecurityContext) []string {
	if sc == nil {
		return slices.Clone(defaultCaps)
	}
	if sc.Privileged != nil && *sc.Privileged {
		return slices.Clone(allCaps)
	}
	set := slices.Clone(defaultCaps)
	name := func(c corev1.Capability) string {
		s := strings.ToUpper(string(c))
		if s != "ALL" && !strings.HasPrefix(s, "CAP_") {
			s = "CAP_" + s
		}
		return s
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Drop {
			if name(c) == "ALL" {
				set = nil
			}
		}
		for _, c := range sc.Capabilities.Add {
			if n := name(c); n == "ALL" {
				set = slices.Clone(allCaps)
			} else if !slices.Contains(set, n) {
				set = append(set, n)
			}
		}
		for _, c := range sc.Capabilities.Drop {
			n := name(c)
			set = slices.DeleteFunc(set, func(s string) bool { return s == n })
		}
	}
	return set
}

// boundingCaps is the agent's own capability bounding set (CapBnd of
// /proc/self/status), by name; every capability when it cannot be read.
var boundingCaps = sync.OnceValue(func() map[string]bool {
	have := map[string]bool{}
	mask := ^uint64(0)
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
					mask = m
				}
			}
		}
	}
	for i, c := range allCaps {
		if mask&(1<<i) != 0 {
			have[c] = true
		}
	}
	return have
})

// containerUser is the container's uid and gid: securityContext's
// runAsUser/runAsGroup (the container's over the pod's), else the image
// config's User ("uid" or "uid:gid", numeric as Strait's images write it),
// else root. Supplemental groups come from the pod.
func containerUser(pod *corev1.Pod, c *corev1.Container, image string) (specs.User, error) {
	var u specs.User
	if image != "" {
		uid, gid, _ := strings.Cut(image, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return u, fmt.Errorf("image user %q: only numeric users are supported", image)
		}
		u.UID = uint32(n)
		if gid != "" {
			if n, err = strconv.ParseUint(gid, 10, 32); err != nil {
				return u, fmt.Errorf("image user %q: only numeric groups are supported", image)
			}
			u.GID = uint32(n)
		}
	}
	var runAsUser, runAsGroup *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		runAsUser, runAsGroup = psc.RunAsUser, psc.RunAsGroup
		for _, g := range psc.SupplementalGroups {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
		if psc.FSGroup != nil {
			u.AdditionalGids = append(u.AdditionalGids, uint32(*psc.FSGroup))
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			runAsGroup = sc.RunAsGroup
		}
	}
	if runAsUser != nil {
		u.UID = uint32(*runAsUser)
	}
	if runAsGroup != nil {
		u.GID = uint32(*runAsGroup)
	}
	return u, nil
}

// imageEnv merges the container's environment over the image's: the image's
// variables first (PATH among them), each of the pod's replacing one of the
// same name.
func imageEnv(image, pod []string) []string {
	env := slices.Clone(image)
	for _, kv := range pod {
		k, v, _ := strings.Cut(kv, "=")
		env = setEnv(env, k, v)
	}
	return env
}

// imagePATH is the PATH of the image's config, or the usual one.
func imagePATH(cfg v1.Config) string {
	for _, kv := range cfg.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return hostPATH
}

// prepare writes c's bundle: an overlay of the image's rootfs (a fresh
// upper layer each time) at <Bundle>/rootfs, and config.json. Any earlier
// container of the same ID is deleted first (crun delete --force).
func (r *ociRuntime) prepare(c *ociContainer) error {
	r.cleanup(c)
	rootfs := filepath.Join(c.Bundle, "rootfs")
	for _, d := range []string{rootfs, filepath.Join(c.Bundle, "upper"), filepath.Join(c.Bundle, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", c.Image.Rootfs, filepath.Join(c.Bundle, "upper"), filepath.Join(c.Bundle, "work"))
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the image's overlay at %s: %w", rootfs, err)
	}
	data, err := json.Marshal(c.spec())
	if err == nil {
		err = os.WriteFile(filepath.Join(c.Bundle, "config.json"), data, 0o600)
	}
	if err != nil {
		r.cleanup(c)
		return err
	}
	return nil
}

// command is crun run of c's bundle in the foreground: the container's
// process inherits its stdout and stderr, crun exits with the container's
// exit status (128+n when signal n ended it), and it writes the container's
// PID (in the agent's PID namespace) to pidFile once the container is made.
func (r *ociRuntime) command(c *ociContainer, pidFile string) *exec.Cmd {
	return exec.Command(r.Crun, "--root", r.Root, "--cgroup-manager=disabled", "run", "--bundle", c.Bundle, "--pid-file", pidFile, c.ID)
}

// kill sends sig to the container's first process (crun kill), as a CRI
// runtime's StopContainer does; SIGKILL ends the whole container, whose PID
// namespace dies with its init.
func (r *ociRuntime) kill(id string, sig syscall.Signal) error {
	out, err := exec.Command(r.Crun, "--root", r.Root, "kill", id, strconv.Itoa(int(sig))).CombinedOutput()
	if err != nil {
		return fmt.Errorf("crun kill %s %d: %w: %s", id, sig, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// execCommand is argv run in the running container id (crun exec): with the
// container's environment, user, working directory and capabilities.
func (r *ociRuntime) execCommand(id string, argv []string) *exec.Cmd {
	return exec.Command(r.Crun, append([]string{"--root", r.Root, "exec", id}, argv...)...)
}

// cleanup deletes the container from crun's state and unmounts and removes
// its overlay: the writable layer goes with the container, as under a
// kubelet.
func (r *ociRuntime) cleanup(c *ociContainer) {
	_ = exec.Command(r.Crun, "--root", r.Root, "delete", "--force", c.ID).Run()
	rootfs := filepath.Join(c.Bundle, "rootfs")
	// Unmount every overlay stacked there (one, unless an earlier
	// cleanup was cut short).
	for {
		if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil {
			break
		}
	}
	_ = os.RemoveAll(c.Bundle)
}

// waitPID waits for crun to write the container's PID to pidFile, for crun
// to exit (a container that failed to start), or for timeout: 0 when there
// is none.
func waitPID(pidFile string, exited <-chan struct{}, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				return pid
			}
		}
		select {
		case <-exited:
			return 0
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0
		}
	}
}

// mountCgroup2 gives the agent's mount namespace a cgroup2 file system at
// /sys/fs/cgroup when it has none there: "ip netns exec" mounts a fresh
// sysfs over /sys, where /sys/fs/cgroup is empty, and crun refuses to run
// without a cgroup file system it knows there, even with its cgroup manager
// disabled (and refuses a hybrid v1/v2 one too).
func mountCgroup2() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount cgroup2 at /sys/fs/cgroup for crun: %w", err)
	}
	return nil
}

// startOCI starts container c of pod from the image's OCI archive under
// crun. Failures are the container's waiting state, as for the host runtime:
// ErrImagePull for an archive that cannot be read, CreateContainerConfigError
// for environment, user or volume errors, RunContainerError for crun's.
func (w *podWorker) startOCI(ctx context.Context, pod *corev1.Pod, c *containerState, archive string) {
	fail := func(reason string, err error, after time.Duration) {
		c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		c.nextStart = time.Now().Add(after)
	}
	rt := w.a.oci
	img, err := rt.pull(archive)
	if err != nil {
		fail("ErrImagePull", err, backoffMax)
		return
	}
	env, err := w.a.containerEnv(ctx, pod, &c.spec, imagePATH(img.Config))
	if err != nil {
		fail("CreateContainerConfigError", err, backoffBase)
		return
	}
	env = imageEnv(img.Config.Env, env)
	argv, err := containerArgv(&Image{Name: c.spec.Image, Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd}, c.spec.Command, c.spec.Args)
	if err != nil {
		fail("RunContainerError", err, backoffMax)
		return
	}
	for i := range argv {
		argv[i] = expand(argv[i], env)
	}
	user, err := containerUser(pod, &c.spec, img.Config.User)
	if err != nil {
		fail("CreateContainerConfigError", err, backoffBase)
		return
	}
	mounts, err := w.containerMounts(&c.spec)
	if err != nil {
		fail("CreateContainerConfigError", err, backoffBase)
		return
	}
	oc := &ociContainer{
		ID:     w.uid + "-" + c.spec.Name,
		Bundle: filepath.Join(w.dir, "oci", c.spec.Name),
		Image:  img, Args: argv, Env: env, User: user, Mounts: mounts,
		Cwd:  cmp.Or(c.spec.WorkingDir, img.Config.WorkingDir, "/"),
		Caps: containerCaps(c.spec.SecurityContext),
	}
	if sc := c.spec.SecurityContext; sc != nil {
		oc.Privileged = ptr.Deref(sc.Privileged, false)
		oc.ReadOnlyRoot = ptr.Deref(sc.ReadOnlyRootFilesystem, false)
		oc.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	}
	if psc := pod.Spec.SecurityContext; psc != nil && len(psc.Sysctls) > 0 {
		oc.Sysctls = map[string]string{}
		for _, s := range psc.Sysctls {
			oc.Sysctls[s.Name] = s.Value
		}
	}
	if w.sandbox != nil {
		pid := w.sandbox.pause.Process.Pid
		oc.NetNS, oc.UTSNS = fmt.Sprintf("/proc/%d/ns/net", pid), fmt.Sprintf("/proc/%d/ns/uts", pid)
	}
	if err := rt.prepare(oc); err != nil {
		fail("RunContainerError", err, backoffBase)
		return
	}
	logFile, err := openContainerLog(w.dir, c.spec.Name, logAttempt(c))
	if err != nil {
		rt.cleanup(oc)
		fail("RunContainerError", err, backoffBase)
		return
	}
	pidFile := filepath.Join(oc.Bundle, "pid")
	cmd := rt.command(oc, pidFile)
	cmd.Stdout, cmd.Stderr = logFile.Stdout, logFile.Stderr
	cmd.Env = []string{w.a.cfg.MarkerEnv}
	err = proc.Start(cmd)
	logFile.Started()
	if err != nil {
		logFile.Finished()
		rt.cleanup(oc)
		fail("RunContainerError", err, backoffBase)
		return
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Finished()
		rt.cleanup(oc)
		close(exited)
		w.wake()
	}()
	// The container counts as started once crun has made it (its PID file),
	// as a CRI runtime's StartContainer returns; exec and logs enter it by
	// that PID.
	c.pid = waitPID(pidFile, exited, execWait)
	c.oci = oc
	c.cmd, c.exited, c.running, c.waiting = cmd, exited, true, nil
	c.startedAt = metav1.Now()
	c.ready = false
	if c.lastExit != nil {
		c.restarts++
	}
	c.probes = map[string]*probeState{"readiness": {last: time.Now()}, "liveness": {last: time.Now()}}
	w.a.log.Info("container started", "pod", pod.Name, "container", c.spec.Name, "runtime", RuntimeOCI, "image", img.Digest.String(), "pid", c.pid)
}

// stopContainer ends a running container: SIGTERM, then SIGKILL once grace
// is over, and returns when it has exited. A container under crun gets
// them through crun kill (its init, then its whole PID namespace); a host
// process's group gets them directly.
func (w *podWorker) stopContainer(c *containerState, grace time.Duration) {
	if c.oci == nil {
		proc.StopWaiting(c.cmd, grace, c.exited)
		return
	}
	if err := w.a.oci.kill(c.oci.ID, syscall.SIGTERM); err != nil {
		w.a.log.Debug("stop container", "container", c.spec.Name, "err", err)
	}
	select {
	case <-c.exited:
		return
	case <-time.After(grace):
	}
	if err := w.a.oci.kill(c.oci.ID, syscall.SIGKILL); err != nil {
		// crun has lost the container: end crun, whose exit ends the wait.
		proc.StopWaiting(c.cmd, 0, c.exited)
		return
	}
	<-c.exited
}

// killContainer kills a running container at once (a failed liveness probe).
func (w *podWorker) killContainer(c *containerState) {
	if c.oci != nil {
		if w.a.oci.kill(c.oci.ID, syscall.SIGKILL) == nil {
			return
		}
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	_ = c.cmd.Process.Kill()
}

// containerPID is the PID exec and logs enter: the container's own process
// under crun, the process itself on the host.
func (c *containerState) containerPID() int {
	if c.oci != nil && c.pid > 0 {
		return c.pid
	}
	return c.cmd.Process.Pid
}

// newOCIRuntime is the agent's OCI runtime for cfg.Runtime oci (nil for
// host): crun from the machine (hack/prereqs.sh installs it), its state
// under the node's directory, and a cgroup file system crun accepts in the
// agent's mount namespace.
func newOCIRuntime(cfg Config) (*ociRuntime, error) {
	switch cfg.Runtime {
	case "", RuntimeHost:
		return nil, nil
	case RuntimeOCI:
	default:
		return nil, fmt.Errorf("runtime %q: must be %s", cfg.Runtime, strings.Join(Runtimes, " or "))
	}
	crun := lookHost("crun")
	if crun == "" {
		return nil, errors.New("runtime oci needs crun (hack/prereqs.sh installs it)")
	}
	if cfg.ImageArchives == "" || cfg.ImageCache == "" {
		return nil, errors.New("runtime oci needs the image archives' and the image cache's directories")
	}
	if err := mountCgroup2(); err != nil {
		return nil, err
	}
	r := &ociRuntime{Crun: crun, Root: filepath.Join(cfg.Dir, "crun"), Archives: cfg.ImageArchives, Cache: cfg.ImageCache}
	r.removeLeftovers()
	return r, nil
}

// removeLeftovers kills and deletes the containers an earlier agent of the
// node left in crun's state: crun dies with the agent (its parent-death
// signal), but a container's process is crun's child in a PID namespace of
// its own and outlives it, where a host process would have died. The
// pods' workers start their containers again.
func (r *ociRuntime) removeLeftovers() {
	entries, _ := os.ReadDir(r.Root)
	for _, e := range entries {
		if e.IsDir() {
			_ = r.kill(e.Name(), syscall.SIGKILL)
			_ = exec.Command(r.Crun, "--root", r.Root, "delete", "--force", e.Name()).Run()
		}
	}
}
