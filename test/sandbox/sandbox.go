// Package sandbox runs several real Kubernetes clusters on one Linux machine,
// each host in its own network namespace: per cluster a control-plane host
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from
// source), node hosts on a bridged node network running kube-proxy and the
// sandbox node agent (package node, a small kubelet), and a shared "internet"
// that links gateway-capable nodes of all clusters, optionally through a NAT
// router.
//
// "up" starts a supervisor process that owns everything and survives the
// command; "down" stops it and removes every namespace, process and file the
// sandbox made. Every process the sandbox starts carries the environment
// variable MarkerEnv, so leftovers of a crashed sandbox can be found and ended
// without touching anything else on the machine.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"strait.dev/strait/test/proc"
)

// MarkerEnv is set, to the state directory, in the environment of every
// process the sandbox starts.
const MarkerEnv = "STRAIT_SANDBOX"

const (
	// upTimeout bounds "up": a warm start takes well under a minute, a cold
	// machine a little more; past this something is broken.
	upTimeout = 5 * time.Minute
	// downTimeout is how long the supervisor gets to stop its children before
	// "down" kills them.
	downTimeout = 60 * time.Second
)

// State is what the supervisor records for the other commands.
type State struct {
	Options       Options       `json:"options"`
	Clusters      []ClusterPlan `json:"clusters"`
	SupervisorPID int           `json:"supervisorPID"`
	// APIServers maps a cluster to the loopback URL its kubeconfig uses.
	APIServers map[string]string `json:"apiServers"`
	StartedAt  time.Time         `json:"startedAt"`
	Ready      bool              `json:"ready"`
	Error      string            `json:"error,omitempty"`
}

// Layout names the files under the state directory.
type Layout struct{ Dir string }

func (l Layout) statePath() string   { return filepath.Join(l.Dir, "state.json") }
func (l Layout) optionsPath() string { return filepath.Join(l.Dir, "options.json") }

// Kubeconfig is the admin kubeconfig of a cluster, usable from the root namespace.
func (l Layout) Kubeconfig(cluster string) string {
	return filepath.Join(l.Dir, cluster+".kubeconfig")
}

// AdminKubeconfig is the admin kubeconfig of a cluster for use on the admin
// host (strait-sandbox admin), at the apiserver's public address.
func (l Layout) AdminKubeconfig(cluster string) string {
	return filepath.Join(l.Dir, "admin", cluster+".kubeconfig")
}

// AdminCommand returns a command that runs argv on the admin host.
func AdminCommand(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", AdminNS}, argv...)...)
}

func (l Layout) cluster(name string) clusterFiles {
	return clusterFiles{dir: filepath.Join(l.Dir, "clusters", name)}
}

// NodeDir holds a node's agent configuration, pods and logs.
func (l Layout) NodeDir(node string) string { return filepath.Join(l.Dir, "nodes", node) }

// ReadState reads the supervisor's state.
func (l Layout) ReadState() (*State, error) {
	data, err := os.ReadFile(l.statePath())
	if err != nil {
		return nil, err
	}
	s := &State{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("read %s: %w", l.statePath(), err)
	}
	return s, nil
}

func (l Layout) writeState(s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.statePath())
}

// Up cleans what an earlier sandbox left, starts the supervisor in the
// background and waits until every cluster has Ready nodes.
func Up(ctx context.Context, l Layout, opts Options, progress io.Writer) (*State, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the sandbox needs root (network namespaces, links, iptables)")
	}
	start := time.Now()
	if err := CleanLeftovers(l, io.Discard); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	data, _ := json.Marshal(opts)
	if err := os.WriteFile(l.optionsPath(), data, 0o644); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(l.Dir, "supervisor.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(self, "supervise", "--state-dir", l.Dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), MarkerEnv+"="+l.Dir)
	// Its own session: the supervisor outlives this command and its terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	fmt.Fprintf(progress, "supervisor started (pid %d), log %s\n", pid, logFile.Name())

	ctx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()
	for {
		if s, err := l.ReadState(); err == nil && s.SupervisorPID == pid {
			if s.Error != "" {
				return nil, fmt.Errorf("sandbox failed: %s (see %s)", s.Error, logFile.Name())
			}
			if s.Ready {
				fmt.Fprintf(progress, "sandbox up in %s\n", time.Since(start).Round(100*time.Millisecond))
				return s, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("supervisor exited before the sandbox was ready; see %s", logFile.Name())
		case <-ctx.Done():
			return nil, fmt.Errorf("sandbox not ready after %s; see %s", upTimeout, logFile.Name())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Down stops the supervisor and removes everything the sandbox made. It works
// after a crash too: it ends every process marked with MarkerEnv for this
// state directory and deletes every namespace with the sandbox prefix.
func Down(l Layout, progress io.Writer) error {
	var errs []error
	if s, err := l.ReadState(); err == nil && s.SupervisorPID > 0 && markedBy(s.SupervisorPID, l.Dir) {
		fmt.Fprintf(progress, "stopping supervisor (pid %d)\n", s.SupervisorPID)
		_ = syscall.Kill(s.SupervisorPID, syscall.SIGTERM)
		deadline := time.Now().Add(downTimeout)
		for proc.Alive(s.SupervisorPID) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n := killMarked(l.Dir); n > 0 {
		fmt.Fprintf(progress, "ended %d leftover sandbox processes\n", n)
	}
	if err := deleteNamespaces(); err != nil {
		errs = append(errs, err)
	}
	if err := removeCreatedPaths(l); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CleanLeftovers removes what an earlier sandbox left on the machine: one
// of l's that is still up, or one ended without "down" (its processes
// killed, its network namespaces still mounted), whatever its state
// directory. It is what Up does first; a caller that must see the machine
// as it is without any sandbox (the e2e teardown check) does it before
// looking.
//
// It returns an error, and removes nothing, when a supervisor of another
// state directory is alive: namespaces are machine-wide, so that sandbox
// must be taken down by its owner first. Other errors are Down's.
func CleanLeftovers(l Layout, progress io.Writer) error {
	if other := otherSandbox(l.Dir); other != "" {
		return fmt.Errorf("another sandbox is up (state directory %s); namespaces are machine-wide, so take it down first: strait-sandbox down --state-dir %s", other, other)
	}
	if err := Down(l, progress); err != nil {
		return fmt.Errorf("clean up an earlier sandbox: %w", err)
	}
	return nil
}

// otherSandbox returns the state directory of a live sandbox supervisor that
// is not dir's, if there is one.
func otherSandbox(dir string) string {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "\x00supervise\x00") {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, MarkerEnv+"="); ok && v != dir && proc.Alive(pid) {
				return v
			}
		}
	}
	return ""
}

// markedBy reports whether pid carries MarkerEnv=dir in its environment.
func markedBy(pid int, dir string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	want := MarkerEnv + "=" + dir
	for _, kv := range strings.Split(string(env), "\x00") {
		if kv == want {
			return true
		}
	}
	return false
}

// MarkedProcesses lists the live processes marked for the state directory.
func MarkedProcesses(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if markedBy(pid, dir) && proc.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killMarked SIGKILLs every process marked for dir until none is left.
func killMarked(dir string) int {
	killed := 0
	for range 50 {
		pids := MarkedProcesses(dir)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return killed
}

// createdPathsFile lists directories the node agents created on the host file
// system as mount points for pod volumes, so that down can remove them.
func (l Layout) createdPathsFile() string { return filepath.Join(l.Dir, "created-paths") }

func removeCreatedPaths(l Layout) error {
	data, err := os.ReadFile(l.createdPathsFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	// Deepest first; only empty directories and empty files (mount points
	// for files) go, so nothing of anyone else's.
	for i := len(lines) - 1; i >= 0; i-- {
		if p := strings.TrimSpace(lines[i]); p != "" {
			if errors.Is(syscall.Rmdir(p), syscall.ENOTDIR) {
				if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Size() == 0 {
					_ = os.Remove(p)
				}
			}
		}
	}
	return nil
}
