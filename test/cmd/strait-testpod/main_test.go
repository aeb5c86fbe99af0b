package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/test/testpod"
	"strait.dev/strait/test/testutil"
)

func TestRunExitCodes(t *testing.T) {
	closedPort := freePort(t)
	// A file where the cable device's WireGuard socket goes: found on
	// whatever node the test runs on.
	wgDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(wgDir, nodenet.CableDevice+".sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
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
		{args: []string{"ping"}, code: exitUsage, stderr: "missing target", reportLine: true},
		{args: []string{"ping", "--udp", "localhost"}, code: exitUsage, stderr: "missing port", reportLine: true},
		{args: []string{"ping", "--udp", "127.0.0.1:9001", "--interval", "0s"}, code: exitUsage, stderr: "invalid interval", reportLine: true},
		{args: []string{"ping", "--udp", "127.0.0.1:9001", "--interval", "10"}, code: exitUsage, stderr: `invalid value "10"`},
		{args: []string{"ping", "--udp", "127.0.0.1:9001", "--duration", "-1s"}, code: exitUsage, stderr: "invalid duration", reportLine: true},
		{args: []string{"ping", "127.0.0.1:9001"}, code: exitUsage, stderr: "want 0 arguments"},
		{args: []string{"dns"}, code: exitUsage, stderr: "want 1 arguments"},
		{args: []string{"dns", "a", "b"}, code: exitUsage, stderr: "want 1 arguments"},
		{args: []string{"dns", "localhost", "--type", "MX"}, code: exitUsage, stderr: "unknown record type", reportLine: true},
		{args: []string{"dns", "localhost", "--server", "dns.google"}, code: exitUsage, stderr: "invalid DNS server", reportLine: true},
		// Flags after the name count too.
		{args: []string{"dns", "localhost", "--type", "A"}, code: exitOK, stdout: `"127.0.0.1"`, reportLine: true},
		{args: []string{"dns", "--type", "A", "localhost"}, code: exitOK, stdout: `"127.0.0.1"`, reportLine: true},
		{args: []string{"pmtu"}, code: exitUsage, stderr: "invalid target", reportLine: true},
		{args: []string{"pmtu", "--udp", "127.0.0.1:9", "--max", "100"}, code: exitUsage, stderr: "<= max (100)", reportLine: true},
		{args: []string{"pmtu", "--udp", "127.0.0.1:9", "--max", "1500", "--count", "0"}, code: exitUsage, stderr: "count", reportLine: true},
		{args: []string{"dns-flood"}, code: exitUsage, stderr: "missing --server", reportLine: true},
		{args: []string{"dns-flood", "--server", "kube-dns"}, code: exitUsage, stderr: "invalid DNS server", reportLine: true},
		{args: []string{"dns-flood", "--server", "127.0.0.1", "--count", "0"}, code: exitUsage, stderr: "invalid count", reportLine: true},
		{args: []string{"dns-flood", "--server", "127.0.0.1", "--rate", "-5"}, code: exitUsage, stderr: "invalid rate", reportLine: true},
		{args: []string{"dns-flood", "--server", "127.0.0.1", "--seed", "x"}, code: exitUsage, stderr: `invalid value "x"`},
		{args: []string{"dns-flood", "127.0.0.1"}, code: exitUsage, stderr: "want 0 arguments"},
		{args: []string{"dns-flood", "-h"}, code: exitOK, stderr: "-seed"},
		{args: []string{"node-state", "extra"}, code: exitUsage, stderr: "want 0 arguments"},
		{args: []string{"node-state", "-h"}, code: exitOK, stderr: "-wireguard-dir"},
		{args: []string{"node-state", "--wireguard-dir", wgDir}, code: exitFailed, stdout: "strait-cable.sock (not a socket)",
			stderr: "the node holds Strait's state", reportLine: true},
		// A closed port: the final question finds nobody.
		{args: []string{"dns-flood", "--server", "127.0.0.1:" + closedPort, "--count", "50", "--timeout", "300ms"}, code: exitFailed, stderr: "no answer", reportLine: true},
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
		var stdout testutil.SyncBuffer
		done := make(chan int, 1)
		go func() { done <- run(args, &stdout, &bytes.Buffer{}) }()
		if args[0] == "serve" {
			// Serving: the echo answers a probe through the same binary.
			var probe bytes.Buffer
			if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
				probe.Reset()
				return run([]string{"connect", "--tcp", "127.0.0.1:" + tcpPort, "--timeout", "1s"}, &probe, &bytes.Buffer{}) == exitOK, nil
			}); err != nil {
				t.Fatalf("serve never answered on %s: %s", tcpPort, probe.String())
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

// udpEcho serves a UDP echo on a free loopback port until the test ends.
func udpEcho(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := testpod.Listen(ctx, testpod.ServeConfig{UDPEcho: []string{"127.0.0.1:0"}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s.UDPEchoAddrs()[0].String()
}

func TestRunPing(t *testing.T) {
	target := udpEcho(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"ping", "--udp", target, "--duration", "200ms", "--interval", "10ms"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("ping = %d, want %d\nstdout: %s\nstderr: %s", code, exitOK, stdout.String(), stderr.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || strings.Count(stdout.String(), "\n") != 1 {
		t.Fatalf("ping printed %q, want one JSON line: %v", stdout.String(), err)
	}
	if rep["ok"] != true || rep["final"] != true || rep["received"] != rep["sent"] || rep["sent"].(float64) < 5 {
		t.Errorf("report %v, want ok, final and every datagram answered", rep)
	}
	if stderr.Len() > 0 {
		t.Errorf("ping wrote %q on stderr, want nothing", stderr.String())
	}
}

// TestRunPingUntilSignal is how a test pod uses ping: it runs until the
// pod is deleted, then prints its report and exits 0.
func TestRunPingUntilSignal(t *testing.T) {
	guard := make(chan os.Signal, 16)
	signal.Notify(guard, syscall.SIGTERM)
	defer signal.Stop(guard)

	target := udpEcho(t)
	var stdout testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"ping", "--udp", target, "--interval", "10ms", "--report-every", "20ms"}, &stdout, &bytes.Buffer{})
	}()
	// An intermediate report says ping runs, and so listens for SIGTERM.
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(stdout.String(), `"final":false`), nil
	}); err != nil {
		t.Fatalf("no intermediate report: %q", stdout.String())
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ping ignored SIGTERM")
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	if code != exitOK || last["final"] != true || last["ok"] != true || strings.Count(stdout.String(), `"final":true`) != 1 {
		t.Errorf("ping after SIGTERM = %d, printed %q; want %d and one final report, ok, last", code, stdout.String(), exitOK)
	}
}
