package gateway

import (
	"bufio"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"strait.dev/strait/gateway/cable/cabletest"
)

// noSocketDir keeps the fake data planes' Close off the node's real
// /var/run/wireguard: nothing is there to clean.
const noSocketDir = "/nonexistent/strait-test-wireguard"

// listenEnv makes the test binary a stand-in for a userspace WireGuard
// device: it listens on the socket at that path, says so, and waits to be
// killed.
const listenEnv = "STRAIT_TEST_UAPI_LISTEN"

func init() {
	path := os.Getenv(listenEnv)
	if path == "" {
		return
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("listening\n")
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

// A gateway killed with kill -9 while its userspace device ran leaves the
// device's control socket behind; the data plane's Close (at the next
// start, at stop, at a leave) removes it, and never one in use.
func TestCableDataplaneRemovesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, CableInterface+".sock")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), listenEnv+"="+sock)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "listening\n" {
		t.Fatalf("the stand-in device: %q, %v", line, err)
	}
	d := &CableDataplane{Log: slog.New(slog.DiscardHandler), Node: &fakeNode{}, Links: &cabletest.Netlink{}, SocketDir: dir}

	// In use: kept.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("Close removed a socket in use: %v", err)
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if st, err := os.Lstat(sock); err != nil || st.Mode().Type() != fs.ModeSocket {
		t.Fatalf("no socket left by the killed process (%v): the test proves nothing", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the killed device's socket after Close: %v", err)
	}
	// Nothing left: Close again is fine.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
