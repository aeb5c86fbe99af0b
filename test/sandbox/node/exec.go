package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mount is one bind mount of a container: a volume (a directory, or a file
// with subPath) or one of the pod's /etc files (resolv.conf, hosts,
// hostname). Target is made when missing, as a directory or an empty file
// like Source.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
}

// ContainerSpec is what container-exec needs to become a container process.
type ContainerSpec struct {
	// Binary is the file to execute: a program of the image's realised
	// directory (a symlink), while Args[0] stays as the pod wrote it.
	Binary     string   `json:"binary"`
	Args       []string `json:"args"` // argv, Args[0] included
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir,omitempty"`
	Mounts     []Mount  `json:"mounts"`
	// CreatedPathsFile records mount points (directories, and empty files
	// for file mounts) made on the host, for the sandbox to remove.
	CreatedPathsFile string `json:"createdPathsFile"`
	// StartedFD, when above 2, is an inherited descriptor (the write end
	// of the agent's pipe) that the helper marks close-on-exec before it
	// execs: the agent's read sees EOF once the container's program runs,
	// or once the helper has failed and exited. runc's exec FIFO serves
	// the same purpose.
	StartedFD int `json:"startedFD,omitempty"`
}

// ContainerExec is the body of the container-exec helper. It runs in a fresh
// mount namespace (the agent starts it with CLONE_NEWNS) inside the pod's
// network namespace, bind-mounts the pod's volumes at their mount paths and
// the pod's resolv.conf, hosts and hostname over /etc's, and replaces itself
// with the container's binary.
func ContainerExec(specPath string) error {
	data, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec ContainerSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("read %s: %w", specPath, err)
	}
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// Hold every source open before the first mount: a volume mounted at
	// /work would otherwise hide sources that live under /work (the
	// sandbox's own state directory may), as runc resolves its mount
	// sources first too.
	for i, m := range spec.Mounts {
		fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
		}
		defer unix.Close(fd)
		spec.Mounts[i].Source = fmt.Sprintf("/proc/self/fd/%d", fd)
	}
	var created []string
	for _, m := range spec.Mounts {
		made, err := mountPoint(m)
		for _, d := range made {
			// /run is the node's own tmpfs: nothing made there reaches the host.
			if d != "/run" && !strings.HasPrefix(d, "/run/") && !strings.HasPrefix(d, "/var/run/") {
				created = append(created, d)
			}
		}
		if err != nil {
			return err
		}
		if err := bindMount(m.Source, m.Target, m.ReadOnly); err != nil {
			return err
		}
	}
	if len(created) > 0 && spec.CreatedPathsFile != "" {
		if f, err := os.OpenFile(spec.CreatedPathsFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			for _, d := range created {
				fmt.Fprintln(f, d)
			}
			f.Close()
		}
	}
	if spec.WorkingDir != "" {
		if err := os.Chdir(spec.WorkingDir); err != nil {
			return fmt.Errorf("working directory %s: %w", spec.WorkingDir, err)
		}
	}
	if spec.StartedFD > 2 {
		unix.CloseOnExec(spec.StartedFD)
	}
	return syscall.Exec(spec.Binary, spec.Args, spec.Env)
}

// mountPoint makes what a mount needs at its target: a directory for a
// directory, an empty file (in a directory) for a file such as a pod's
// /etc/resolv.conf or a subPath of a ConfigMap. It returns what it made,
// outermost first.
func mountPoint(m Mount) ([]string, error) {
	st, err := os.Stat(m.Source)
	if err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
	}
	if st.IsDir() {
		return mkdirAllRecord(m.Target)
	}
	made, err := mkdirAllRecord(filepath.Dir(m.Target))
	if err != nil {
		return made, err
	}
	if _, err := os.Stat(m.Target); errors.Is(err, os.ErrNotExist) {
		f, err := os.OpenFile(m.Target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return made, err
		} else if err == nil {
			f.Close()
			made = append(made, m.Target)
		}
	}
	return made, nil
}

// bindMount bind-mounts source (a directory or a file) at target, read-only
// when asked.
func bindMount(source, target string, readOnly bool) error {
	if err := syscall.Mount(source, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("mount %s at %s: %w", source, target, err)
	}
	if readOnly {
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", target, err)
		}
	}
	return nil
}

// mkdirAllRecord makes dir and its missing parents and returns those it made,
// outermost first.
func mkdirAllRecord(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		missing = append([]string{d}, missing...)
	}
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	return missing, nil
}

func signalNotify(c chan os.Signal) {
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
}
