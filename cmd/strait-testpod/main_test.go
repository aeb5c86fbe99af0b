package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // a substring, when not empty
		stderr     string // a substring, when not empty
		reportLine bool   // stdout is one JSON report
	}{
		{args: nil, code: exitUsage, stderr: "usage:"},
		{args: []string{"bogus"}, code: exitUsage, stderr: `unknown command "bogus"`},
		{args: []string{"help"}, code: exitOK, stdout: "usage:"},
		{args: []string{"version"}, code: exitOK, stdout: binary + " "},
		{args: []string{"version", "extra"}, code: exitUsage, stderr: "want 0 arguments"},
		{args: []string{"sleep", "--forever"}, code: exitUsage, stderr: "flag provided but not defined: -forever"},
		{args: []string{"serve", "--nope"}, code: exitUsage, stderr: "flag provided but not defined: -nope"},
		{args: []string{"serve", "--http", "http"}, code: exitUsage, stderr: `invalid port "http"`},
		{args: []string{"serve", "--tcp-echo", "0"}, code: exitUsage, stderr: `invalid port "0"`},
		{args: []string{"serve", "9000"}, code: exitUsage, stderr: "want 0 arguments"},
		{args: []string{"serve", "-h"}, code: exitOK, stderr: "-udp-echo"},
		{args: []string{"connect"}, code: exitUsage, stderr: "want one of --tcp, --udp or --http"},
		{args: []string{"connect", "--tcp", "a:1", "--udp", "b:1"}, code: exitUsage, stderr: "only one of"},
		{args: []string{"connect", "--tcp", "127.0.0.1:1", "--bytes", "many"}, code: exitUsage, stderr: `invalid value "many"`},
		{args: []string{"connect", "--tcp", "localhost"}, code: exitUsage, stderr: "missing port", reportLine: true},
		{args: []string{"connect", "--tcp", ""}, code: exitUsage, stderr: "invalid tcp target", reportLine: true},
		{args: []string{"connect", "--udp", "127.0.0.1:9001", "--count", "0"}, code: exitUsage, stderr: "invalid count", reportLine: true},
		{args: []string{"connect", "--http", "localhost:8080/"}, code: exitUsage, stderr: "invalid URL", reportLine: true},
		{args: []string{"connect", "--timeout", "5"}, code: exitUsage, stderr: "invalid value"},
		{args: []string{"dns"}, code: exitUsage, stderr: "want 1 arguments"},
		{args: []string{"dns", "a", "b"}, code: exitUsage, stderr: "want 1 arguments"},
		{args: []string{"dns", "localhost", "--type", "MX"}, code: exitUsage, stderr: "unknown record type", reportLine: true},
		{args: []string{"dns", "localhost", "--server", "dns.google"}, code: exitUsage, stderr: "invalid DNS server", reportLine: true},
		// Flags after the name count too.
		{args: []string{"dns", "localhost", "--type", "A"}, code: exitOK, stdout: `"127.0.0.1"`, reportLine: true},
		{args: []string{"dns", "--type", "A", "localhost"}, code: exitOK, stdout: `"127.0.0.1"`, reportLine: true},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("run(%q) = %d\nstdout: %s\nstderr: %s\nwant %d, stdout containing %q, stderr containing %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			continue
		}
		if tc.reportLine {
			var rep map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || strings.Count(stdout.String(), "\n") != 1 {
				t.Errorf("run(%q) printed %q, want one JSON line: %v", tc.args, stdout.String(), err)
			} else if rep["ok"] != (code == exitOK) {
				t.Errorf("run(%q) reported ok=%v but exited %d", tc.args, rep["ok"], code)
			}
		} else if tc.stdout == "" && stdout.Len() > 0 {
			t.Errorf("run(%q) printed %q on stdout, want nothing", tc.args, stdout.String())
		}
	}
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRunUntilSignal checks that serve and sleep run until SIGTERM and
// then exit 0.
func TestRunUntilSignal(t *testing.T) {
	// Keep SIGTERM from killing the test binary should it arrive before
	// run has registered for it.
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)

	tcpPort := freePort(t)
	for _, args := range [][]string{
		{"sleep"},
		{"serve", "--http", freePort(t), "--tcp-echo", tcpPort, "--udp-echo", freePort(t)},
	} {
		var stdout syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(args, &stdout, &bytes.Buffer{}) }()
		if args[0] == "serve" {
			// Serving: the echo answers a probe through the same binary.
			var probe bytes.Buffer
			deadline := time.Now().Add(30 * time.Second)
			for run([]string{"connect", "--tcp", "127.0.0.1:" + tcpPort, "--timeout", "1s"}, &probe, &bytes.Buffer{}) != exitOK {
				if time.Now().After(deadline) {
					t.Fatalf("serve never answered on %s: %s", tcpPort, probe.String())
				}
				probe.Reset()
				time.Sleep(20 * time.Millisecond)
			}
		}
		// Resend until run notices: the first may come before it listens.
		tick := time.NewTicker(20 * time.Millisecond)
		timeout := time.After(30 * time.Second)
		var code int
	wait:
		for {
			select {
			case code = <-done:
				break wait
			case <-tick.C:
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
			case <-timeout:
				t.Fatalf("run(%q) ignored SIGTERM", args)
			}
		}
		tick.Stop()
		if code != exitOK {
			t.Errorf("run(%q) after SIGTERM = %d, want %d", args, code, exitOK)
		}
		if args[0] == "serve" && strings.Count(stdout.String(), `"msg":"listening"`) != 3 {
			t.Errorf("serve logged %q, want three listening lines", stdout.String())
		}
	}
}
