package testpod

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"strait.dev/strait/test/testutil"
)

// serveTimeout bounds how long a test waits for Serve to return: it only
// catches hangs.
const serveTimeout = 30 * time.Second

// testServer is a Server on loopback that serves until the test ends.
type testServer struct {
	*Server
	logs   *testutil.SyncBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// loopback is a config with one listener of each kind on free loopback
// ports.
func loopback() ServeConfig {
	return ServeConfig{
		HTTP:    []string{"127.0.0.1:0"},
		TCPEcho: []string{"127.0.0.1:0"},
		UDPEcho: []string{"127.0.0.1:0"},
	}
}

func startServer(t *testing.T, cfg ServeConfig) *testServer {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("Listen: %v", err)
	}
	ts := &testServer{Server: s, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		if err := ts.stop(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// stop cancels Serve and returns what it returned.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	ts.once.Do(func() {
		ts.cancel()
		select {
		case ts.err = <-ts.done:
		case <-time.After(serveTimeout):
			t.Fatal("Serve did not return after its context ended")
		}
	})
	return ts.err
}

func (ts *testServer) httpURL(path string) string {
	return "http://" + ts.HTTPAddrs()[0].String() + path
}

// jsonLines decodes every line of s as a JSON object, failing the test on
// anything else.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("output line %q is not a JSON object: %v", sc.Text(), err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestServeLogsEachListener(t *testing.T) {
	ts := startServer(t, ServeConfig{
		HTTP:    []string{"127.0.0.1:0", "127.0.0.1:0"},
		TCPEcho: []string{"127.0.0.1:0"},
		UDPEcho: []string{"127.0.0.1:0"},
	})
	want := map[string]bool{}
	for _, a := range ts.HTTPAddrs() {
		want["http "+a.String()] = true
	}
	for _, a := range ts.TCPEchoAddrs() {
		want["tcp-echo "+a.String()] = true
	}
	for _, a := range ts.UDPEchoAddrs() {
		want["udp-echo "+a.String()] = true
	}
	if len(want) != 4 {
		t.Fatalf("bound addresses %v, want 4 distinct", want)
	}
	lines := jsonLines(t, ts.logs.String())
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want one per listener (%d):\n%s", len(lines), len(want), ts.logs)
	}
	for _, l := range lines {
		key := l["proto"].(string) + " " + l["addr"].(string)
		if l["msg"] != "listening" || !want[key] {
			t.Errorf("unexpected log line %v; want listening on one of %v", l, want)
		}
		delete(want, key)
	}
}

func TestEchoRoundTrips(t *testing.T) {
	ts := startServer(t, loopback())
	tcp, udp := ts.TCPEchoAddrs()[0].String(), ts.UDPEchoAddrs()[0].String()
	for _, tc := range []struct {
		proto, target string
		n             int64
	}{
		{ProtoTCP, tcp, 0},
		{ProtoTCP, tcp, 1},
		{ProtoTCP, tcp, DefaultBytes},
		// Far beyond the socket buffers: writing and reading must overlap.
		{ProtoTCP, tcp, 16<<20 + 7},
		{ProtoUDP, udp, 0},
		{ProtoUDP, udp, 1},
		{ProtoUDP, udp, DefaultBytes},
		{ProtoUDP, udp, MaxUDPBytes},
	} {
		rep := Connect(context.Background(), ConnectConfig{
			Proto: tc.proto, Target: tc.target, Bytes: tc.n, Timeout: 10 * time.Second, Count: 1,
		})
		if !rep.OK || rep.Bytes != tc.n || rep.Remote != tc.target || rep.Local == "" {
			t.Errorf("%s %d bytes: %+v; want ok with all bytes back from %s", tc.proto, tc.n, rep, tc.target)
			continue
		}
		if _, err := time.ParseDuration(rep.RTT); err != nil {
			t.Errorf("%s %d bytes: rtt %q: %v", tc.proto, tc.n, rep.RTT, err)
		}
	}
}

func TestEchoIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	ts := startServer(t, ServeConfig{TCPEcho: []string{"[::1]:0"}, UDPEcho: []string{"[::1]:0"}, HTTP: []string{"[::1]:0"}})
	for _, cfg := range []ConnectConfig{
		{Proto: ProtoTCP, Target: ts.TCPEchoAddrs()[0].String(), Bytes: 1000},
		{Proto: ProtoUDP, Target: ts.UDPEchoAddrs()[0].String(), Bytes: 1000, Count: 1},
		{Proto: ProtoHTTP, Target: ts.httpURL("/bytes?n=1000")},
	} {
		cfg.Timeout = 10 * time.Second
		if !strings.HasPrefix(cfg.Target, "[::1]:") && !strings.HasPrefix(cfg.Target, "http://[::1]:") {
			t.Fatalf("target %s is not a bracketed IPv6 literal", cfg.Target)
		}
		if rep := Connect(context.Background(), cfg); !rep.OK || rep.Bytes != 1000 {
			t.Errorf("%s %s: %+v; want ok with 1000 bytes", cfg.Proto, cfg.Target, rep)
		}
	}
}

// TestUDPEchoAnswersFromDestination sends to 127.0.0.2 on a wildcard
// listener: routing alone would answer from 127.0.0.1, which the client's
// connected socket drops.
func TestUDPEchoAnswersFromDestination(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the echo picks its source address on Linux only")
	}
	ts := startServer(t, ServeConfig{UDPEcho: []string{":0"}})
	port := ts.UDPEchoAddrs()[0].(*net.UDPAddr).Port
	target := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	rep := Connect(context.Background(), ConnectConfig{
		Proto: ProtoUDP, Target: target, Bytes: DefaultBytes, Timeout: 2 * time.Second, Count: 1,
	})
	if !rep.OK {
		t.Errorf("UDP echo via %s: %+v; want ok", target, rep)
	}
}

func TestHTTPInfo(t *testing.T) {
	cfg := loopback()
	cfg.Identity = Identity{Hostname: "h", Pod: "p", Namespace: "ns", Node: "n", PodIP: "10.0.0.7"}
	ts := startServer(t, cfg)
	rep := Connect(context.Background(), ConnectConfig{Proto: ProtoHTTP, Target: ts.httpURL("/"), Timeout: 5 * time.Second})
	if !rep.OK || rep.Status != http.StatusOK {
		t.Fatalf("GET /: %+v; want ok with 200", rep)
	}
	var got Info
	if err := json.Unmarshal(rep.Body, &got); err != nil {
		t.Fatalf("GET / body %s: %v", rep.Body, err)
	}
	want := Info{Hostname: "h", Pod: "p", Namespace: "ns", Node: "n", PodIP: "10.0.0.7", Client: rep.Local, Path: "/"}
	if got != want {
		t.Errorf("GET / = %+v, want %+v", got, want)
	}
	if rep.Bytes != int64(len(rep.Body))+1 { // the encoder's newline
		t.Errorf("GET /: %d bytes reported, body is %d", rep.Bytes, len(rep.Body))
	}
}

func TestHTTPRoutes(t *testing.T) {
	ts := startServer(t, loopback())
	for _, tc := range []struct {
		method, path string
		status       int
		body         string // checked when not empty
	}{
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/status/503", 503, ""},
		{"GET", "/status/204", 204, ""},
		{"GET", "/status/599", 599, ""},
		{"GET", "/status/99", 400, ""},
		{"GET", "/status/600", 400, ""},
		{"GET", "/status/abc", 400, ""},
		{"GET", "/bytes", 400, ""},
		{"GET", "/bytes?n=-1", 400, ""},
		{"GET", "/bytes?n=1073741825", 400, ""},
		{"GET", "/bytes?n=1&seed=abc", 400, ""},
		{"GET", "/bytes?n=1&seed=-1", 400, ""},
		{"GET", "/nope", 404, ""},
		{"GET", "/healthz/x", 404, ""},
		{"POST", "/", 404, ""},
		{"DELETE", "/healthz", 404, ""},
	} {
		req, err := http.NewRequest(tc.method, ts.httpURL(tc.path), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.body != "" && string(body) != tc.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// TestBytesContent checks /bytes against the stream definition directly,
// not through the header the server computed itself.
func TestBytesContent(t *testing.T) {
	ts := startServer(t, loopback())
	for _, tc := range []struct {
		query string
		n     int64
		seed  uint64
	}{
		{"n=0", 0, DefaultSeed},
		{"n=10", 10, DefaultSeed},
		{"n=100000&seed=7", 100000, 7},
		{"n=5&seed=18446744073709551615", 5, 1<<64 - 1},
	} {
		resp, err := http.Get(ts.httpURL("/bytes?" + tc.query))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, tc.n)
		_, _ = io.ReadFull(NewStream(tc.seed), want)
		if !bytes.Equal(body, want) {
			t.Errorf("/bytes?%s: body differs from NewStream(%d)", tc.query, tc.seed)
		}
		if got, want := resp.Header.Get("X-Sha256"), StreamSHA256(tc.n, tc.seed); got != want {
			t.Errorf("/bytes?%s: X-Sha256 %s, want %s", tc.query, got, want)
		}
		if resp.ContentLength != tc.n {
			t.Errorf("/bytes?%s: Content-Length %d, want %d", tc.query, resp.ContentLength, tc.n)
		}
	}
}

// TestServeShutdown checks that after the context ends, nothing new is
// accepted, a connection already open keeps echoing within the grace, and
// Serve returns once it closes.
func TestServeShutdown(t *testing.T) {
	cfg := loopback()
	cfg.ShutdownGrace = time.Hour // the test must not depend on it running out
	ts := startServer(t, cfg)
	addr := ts.TCPEchoAddrs()[0].String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(serveTimeout))
	echo := func(msg string) error {
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return errors.New("echo " + strconv.Quote(string(buf)) + ", want " + strconv.Quote(msg))
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatalf("echo before shutdown: %v", err)
	}

	ts.cancel()
	// Listeners close asynchronously once the context ends.
	for _, l := range []net.Addr{ts.TCPEchoAddrs()[0], ts.HTTPAddrs()[0]} {
		if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, serveTimeout, true, func(context.Context) (bool, error) {
			c, err := net.Dial("tcp", l.String())
			if err != nil {
				return true, nil
			}
			c.Close()
			return false, nil
		}); err != nil {
			t.Fatalf("%s still accepts after shutdown began", l)
		}
	}
	if err := echo("during"); err != nil {
		t.Errorf("echo during the grace: %v", err)
	}
	select {
	case err := <-ts.done:
		t.Fatalf("Serve returned (%v) while an echo connection was open within the grace", err)
	default:
	}
	conn.Close()
	if err := ts.stop(t); err != nil {
		t.Errorf("Serve after shutdown = %v, want nil", err)
	}
	if !strings.Contains(ts.logs.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown log in:\n%s", ts.logs)
	}
}

// TestServeShutdownGraceRunsOut checks that an echo client that never
// hangs up is cut when the grace ends.
func TestServeShutdownGraceRunsOut(t *testing.T) {
	cfg := loopback()
	cfg.ShutdownGrace = 50 * time.Millisecond
	ts := startServer(t, cfg)
	conn, err := net.Dial("tcp", ts.TCPEchoAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(serveTimeout))
	// One round trip, so the server has surely accepted the connection.
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := ts.stop(t); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if n, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read after shutdown = %d, %v; want the connection closed", n, err)
	}
}

func TestListenErrors(t *testing.T) {
	var ue *UsageError
	if _, err := Listen(context.Background(), ServeConfig{}); !errors.As(err, &ue) {
		t.Errorf("Listen with no addresses = %v, want a *UsageError", err)
	}
	if _, err := Listen(context.Background(), ServeConfig{HTTP: []string{"127.0.0.1:99999"}}); err == nil {
		t.Error("Listen on port 99999 succeeded")
	}

	// A port in use fails Listen, and what it had bound already is freed.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()
	_, err = Listen(context.Background(), ServeConfig{
		HTTP:    []string{freeAddr},
		TCPEcho: []string{busy.Addr().String()},
	})
	if err == nil || !strings.Contains(err.Error(), "tcp-echo") {
		t.Errorf("Listen on a busy port = %v, want an error naming tcp-echo", err)
	}
	again, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Errorf("a failed Listen kept %s bound: %v", freeAddr, err)
	} else {
		again.Close()
	}
}
