// Package corednstest runs a CoreDNS binary (stock CoreDNS built by "make
// kube-binaries", or strait-dns) on loopback for benchmarks and reference
// tests: it writes the Corefile, starts the process through package proc
// (so it never outlives its parent), waits until the ready plugin reports
// every plugin ready, and reads the process's RSS.
package corednstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/proc"
)

// ReadyTimeout bounds a server's start: syncing 10,000 objects through the
// informers' paged lists takes a few seconds on two cores; this only
// catches a server that never gets there.
const ReadyTimeout = 90 * time.Second

// stopGrace is how long a server gets to exit after SIGTERM.
const stopGrace = 5 * time.Second

// StockBinary returns the path of stock CoreDNS as "make kube-binaries"
// builds it: _output/kube/<version>/coredns.
func StockBinary() (string, error) {
	dir, err := kubetest.BinDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "coredns")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("stock CoreDNS: %w (run 'make kube-binaries')", err)
	}
	return path, nil
}

// Options say what to run.
type Options struct {
	// Name names the server's files in Dir.
	Name string
	// Binary is the CoreDNS executable.
	Binary string
	// Corefile renders the Corefile for the DNS port and the ready
	// plugin's port. It must bind the DNS port on 127.0.0.1 and have
	// "ready 127.0.0.1:<readyPort>" in one server block.
	Corefile func(port, readyPort int) string
	// Dir holds the Corefile and the log.
	Dir string
	// CPUs, if set, pins the server with taskset (its list syntax).
	CPUs string
}

// Server is a running CoreDNS.
type Server struct {
	// Addr is the DNS address, 127.0.0.1:port, UDP and TCP.
	Addr string
	// Log is the path of the server's output.
	Log string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's result, once exited is closed
}

// Start starts a server and waits until it is ready. On error nothing is
// left running.
func Start(ctx context.Context, o Options) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	readyPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(o.Dir, o.Name+".Corefile")
	if err := os.WriteFile(conf, []byte(o.Corefile(port, readyPort)), 0o644); err != nil {
		return nil, err
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Log: filepath.Join(o.Dir, o.Name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(s.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{o.Binary, "-conf", conf}
	if o.CPUs != "" {
		args = append([]string{"taskset", "-c", o.CPUs}, args...)
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := proc.Start(s.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", readyPort)
	deadline := time.Now().Add(ReadyTimeout)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%s exited: %v; its log:\n%s", o.Name, s.err, s.Tail())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		default:
		}
		// The ready plugin can say yes a moment before the DNS listener
		// is open: wait for both.
		if ready(ctx, url) && answers(s.Addr) {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("%s not ready after %s; its log:\n%s", o.Name, ReadyTimeout, s.Tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// answers reports whether a DNS server answers on addr over UDP: any
// reply counts, REFUSED included.
func answers(addr string) bool {
	m := new(dns.Msg)
	m.SetQuestion("probe.corednstest.invalid.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	_, _, err := c.Exchange(m, addr)
	return err == nil
}

// Stop stops the server and waits until it has exited. It may be called
// more than once.
func (s *Server) Stop() {
	proc.StopWaiting(s.cmd, stopGrace, s.exited)
}

// PID is the server's process ID.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// RSS returns the server's resident set size in bytes (VmRSS in
// /proc/PID/status).
func (s *Server) RSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.PID()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) != 2 || fields[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
			}
			kb, err := strconv.ParseInt(fields[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// CPUTime returns the CPU time the server has used so far, user and
// system, all threads (utime and stime in /proc/PID/stat).
func (s *Server) CPUTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.PID()))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(data), ')')
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", s.PID())
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ticks) * (time.Second / 100), nil
}

// Tail returns the last 30 lines of the server's log.
func (s *Server) Tail() string {
	data, _ := os.ReadFile(s.Log)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a loopback port that is free for both TCP and UDP
// (CoreDNS binds both).
func FreePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no loopback port free for both TCP and UDP")
}
