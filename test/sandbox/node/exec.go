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
)

// Mount is one volume mount of a container.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
}

// ContainerSpec is what container-exec needs to become a container process.
type ContainerSpec struct {
	Binary     string   `json:"binary"`
	Args       []string `json:"args"` // argv, Args[0] included
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir,omitempty"`
	Mounts     []Mount  `json:"mounts"`
	// CreatedPathsFile records mount-point directories made on the host.
	CreatedPathsFile string `json:"createdPathsFile"`
}

// ContainerExec is the body of the container-exec helper. It runs in a fresh
// mount namespace (the agent starts it with CLONE_NEWNS) inside the pod's
// network namespace, bind-mounts the pod's volumes at their mount paths, and
// replaces itself with the container's binary.
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
	var created []string
	for _, m := range spec.Mounts {
		made, err := mkdirAllRecord(m.Target)
		for _, d := range made {
			// /run is the node's own tmpfs: nothing made there reaches the host.
			if d != "/run" && !strings.HasPrefix(d, "/run/") && !strings.HasPrefix(d, "/var/run/") {
				created = append(created, d)
			}
		}
		if err != nil {
			return err
		}
		if err := syscall.Mount(m.Source, m.Target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := syscall.Mount("", m.Target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("make %s read-only: %w", m.Target, err)
			}
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
	return syscall.Exec(spec.Binary, spec.Args, spec.Env)
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
