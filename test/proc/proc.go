// Package proc starts child processes that cannot outlive the process that
// started them, and stops them together with everything they started.
//
// Linux sends a child its parent-death signal when the *thread* that forked it
// exits, not the process, and the Go runtime may run cmd.Start on any thread.
// So every child is forked from one OS thread that this package locks and never
// releases: the children get SIGKILL exactly when this process dies, whether it
// returns, panics, or is killed by a test timeout.
package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

type startRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnerOnce sync.Once
	spawnQueue  chan startRequest
)

func spawner() {
	runtime.LockOSThread() // never unlocked: this thread lives as long as the process
	for req := range spawnQueue {
		req.done <- req.cmd.Start()
	}
}

// Start starts cmd in its own process group, with SIGKILL as its
// parent-death signal, from the spawner thread.
func Start(cmd *exec.Cmd) error {
	spawnerOnce.Do(func() {
		spawnQueue = make(chan startRequest)
		go spawner()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error, 1)
	spawnQueue <- startRequest{cmd: cmd, done: done}
	return <-done
}

// Stop sends SIGTERM to cmd's process group, waits up to grace for cmd to
// exit, then kills the group. It returns once cmd has been reaped; callers must
// not call cmd.Wait themselves when they use Stop, unless they pass a wait
// function through StopWaiting.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	StopWaiting(cmd, grace, exited)
}

// StopWaiting is Stop for a command that another goroutine already waits on;
// exited must be closed when that wait returns.
func StopWaiting(cmd *exec.Cmd, grace time.Duration, exited <-chan struct{}) {
	if cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	// Anything the child left behind in its group goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Alive reports whether a process with the given PID exists and is not a zombie.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	for i := len(stat) - 1; i > 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
		}
	}
	return true
}
