package testpod

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestConnectHTTPBytes(t *testing.T) {
	ts := startServer(t, loopback())
	const n = 3000000
	var out bytes.Buffer
	err := RunConnect(context.Background(), ConnectConfig{
		Proto: ProtoHTTP, Target: ts.httpURL("/bytes?n=" + strconv.Itoa(n) + "&seed=7"), Timeout: 30 * time.Second,
	}, &out)
	if err != nil {
		t.Fatalf("RunConnect: %v\n%s", err, out.String())
	}
	lines := jsonLines(t, out.String())
	if len(lines) != 1 {
		t.Fatalf("%d report lines, want 1:\n%s", len(lines), out.String())
	}
	rep := lines[0]
	if rep["ok"] != true || rep["bytes"] != float64(n) || rep["status"] != float64(200) || rep["proto"] != "http" {
		t.Errorf("report %v; want ok, %d bytes, status 200", rep, n)
	}
}

// TestConnectHTTPBytesCorrupted serves /bytes answers that are wrong in
// one way each, and expects the probe to notice.
func TestConnectHTTPBytesCorrupted(t *testing.T) {
	const n = 100000
	body := func(seed uint64, size int) []byte {
		b := make([]byte, size)
		_, _ = io.ReadFull(NewStream(seed), b)
		return b
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{{
		name: "checksum of another seed",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Sha256", StreamSHA256(n, 2))
			_, _ = w.Write(body(1, n))
		},
		wantErr: "does not match X-Sha256",
	}, {
		name: "one byte flipped",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Sha256", StreamSHA256(n, 1))
			b := body(1, n)
			b[n/2] ^= 0x01
			_, _ = w.Write(b)
		},
		wantErr: "does not match X-Sha256",
	}, {
		name: "no checksum",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(body(1, n))
		},
		wantErr: "missing X-Sha256",
	}, {
		name: "consistent but short",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Sha256", StreamSHA256(n-1, 1))
			_, _ = w.Write(body(1, n-1))
		},
		wantErr: "asked for",
	}, {
		name: "cut off before Content-Length",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Sha256", StreamSHA256(n, 1))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(body(1, n-100))
		},
		wantErr: "read body",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			rep := Connect(context.Background(), ConnectConfig{
				Proto: ProtoHTTP, Target: srv.URL + "/bytes?n=" + strconv.Itoa(n), Timeout: 10 * time.Second,
			})
			if rep.OK || rep.Status != http.StatusOK || !strings.Contains(rep.Error, tc.wantErr) {
				t.Errorf("report %+v; want not ok, status 200, error containing %q", rep, tc.wantErr)
			}
		})
	}
}

func TestConnectHTTPStatus(t *testing.T) {
	ts := startServer(t, loopback())
	for _, tc := range []struct {
		path   string
		status int
		ok     bool
	}{
		{"/status/503", 503, false},
		{"/status/500", 500, false},
		{"/status/404", 404, false},
		{"/nope", 404, false},
		{"/status/204", 204, true},
		{"/healthz", 200, true},
	} {
		var out bytes.Buffer
		err := RunConnect(context.Background(), ConnectConfig{Proto: ProtoHTTP, Target: ts.httpURL(tc.path), Timeout: 5 * time.Second}, &out)
		rep := jsonLines(t, out.String())
		if len(rep) != 1 || rep[0]["ok"] != tc.ok || rep[0]["status"] != float64(tc.status) {
			t.Errorf("%s: report %s; want ok=%v, status %d", tc.path, out.String(), tc.ok, tc.status)
		}
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrFailed)) {
			t.Errorf("%s: RunConnect = %v; want ok=%v (ErrFailed when not)", tc.path, err, tc.ok)
		}
	}
}

// fakeTCP serves every connection with handle on a loopback port.
func fakeTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// fakeUDP answers datagrams with answer (nil: no answer); i counts from 0.
func fakeUDP(t *testing.T, answer func(i int, b []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, maxDatagram)
		for i := 0; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := answer(i, bytes.Clone(buf[:n])); reply != nil {
				_, _ = pc.WriteTo(reply, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// closedPort returns an address where nothing listens.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	var addr string
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	case "udp":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = pc.LocalAddr().String()
		pc.Close()
	}
	return addr
}

// TestConnectDetectsBadEcho checks that the TCP and UDP probes fail when
// the echo is wrong, late or missing, and retry UDP as configured.
func TestConnectDetectsBadEcho(t *testing.T) {
	flip := func(b []byte, i int) []byte {
		if i < len(b) {
			b[i] ^= 0x80
		}
		return b
	}
	for _, tc := range []struct {
		name         string
		cfg          ConnectConfig
		ok           bool
		wantErr      string
		wantAttempts int
	}{{
		name: "tcp byte flipped",
		cfg: ConnectConfig{Proto: ProtoTCP, Bytes: 100000, Target: fakeTCP(t, func(c net.Conn) {
			b := make([]byte, 100000)
			if _, err := io.ReadFull(c, b); err == nil {
				_, _ = c.Write(flip(b, 77777))
			}
		})},
		wantErr: "echo differs at byte 77777",
	}, {
		name: "tcp half echoed",
		cfg: ConnectConfig{Proto: ProtoTCP, Bytes: 1000, Target: fakeTCP(t, func(c net.Conn) {
			_, _ = io.CopyN(c, c, 500)
		})},
		wantErr: "after 500 of 1000 bytes", // "closed" or "reset", as the kernel likes
	}, {
		name: "tcp shifted",
		cfg: ConnectConfig{Proto: ProtoTCP, Bytes: 1000, Target: fakeTCP(t, func(c net.Conn) {
			_, _ = c.Write([]byte{0})
			_, _ = io.Copy(c, c)
		})},
		wantErr: "echo differs at byte 1",
	}, {
		name: "tcp silent",
		cfg: ConnectConfig{Proto: ProtoTCP, Bytes: 10, Target: fakeTCP(t, func(c net.Conn) {
			_, _ = io.Copy(io.Discard, c)
		})},
		wantErr: "timed out",
	}, {
		name:    "tcp refused",
		cfg:     ConnectConfig{Proto: ProtoTCP, Bytes: 10, Target: closedPort(t, "tcp")},
		wantErr: "refused",
	}, {
		name: "udp byte flipped",
		cfg: ConnectConfig{Proto: ProtoUDP, Bytes: 100, Count: 2, Target: fakeUDP(t, func(_ int, b []byte) []byte {
			return flip(b, 42)
		})},
		wantErr:      "echo differs at byte 42",
		wantAttempts: 2,
	}, {
		name: "udp truncated",
		cfg: ConnectConfig{Proto: ProtoUDP, Bytes: 100, Count: 1, Target: fakeUDP(t, func(_ int, b []byte) []byte {
			return b[:99]
		})},
		wantErr:      "echo has 99 bytes, want 100",
		wantAttempts: 1,
	}, {
		name: "udp silent",
		cfg: ConnectConfig{Proto: ProtoUDP, Bytes: 10, Count: 3, Target: fakeUDP(t, func(int, []byte) []byte {
			return nil
		})},
		wantErr:      "no echo within",
		wantAttempts: 3,
	}, {
		name:         "udp refused",
		cfg:          ConnectConfig{Proto: ProtoUDP, Bytes: 10, Count: 2, Target: closedPort(t, "udp")},
		wantErr:      "refused",
		wantAttempts: 2,
	}, {
		name: "udp first datagram lost",
		cfg: ConnectConfig{Proto: ProtoUDP, Bytes: 10, Count: 3, Target: fakeUDP(t, func(i int, b []byte) []byte {
			if i == 0 {
				return nil
			}
			return b
		})},
		ok:           true,
		wantAttempts: 2,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Timeout = time.Second
			rep := Connect(context.Background(), tc.cfg)
			if rep.OK != tc.ok || !strings.Contains(rep.Error, tc.wantErr) || rep.Attempts != tc.wantAttempts {
				t.Errorf("report %+v; want ok=%v, error containing %q, %d attempts", rep, tc.ok, tc.wantErr, tc.wantAttempts)
			}
		})
	}
}

func TestConnectConfigValidate(t *testing.T) {
	base := ConnectConfig{Proto: ProtoTCP, Target: "127.0.0.1:80", Bytes: DefaultBytes, Timeout: time.Second, Count: 1}
	for _, tc := range []struct {
		name  string
		edit  func(*ConnectConfig)
		valid bool
	}{
		{"base", func(*ConnectConfig) {}, true},
		{"ipv6 in brackets", func(c *ConnectConfig) { c.Target = "[::1]:80" }, true},
		{"ipv6 with zone", func(c *ConnectConfig) { c.Target = "[fe80::1%eth0]:80" }, true},
		{"host name", func(c *ConnectConfig) { c.Target = "svc.ns.svc.cluster.local:80" }, true},
		{"largest datagram", func(c *ConnectConfig) { c.Proto, c.Bytes = ProtoUDP, MaxUDPBytes }, true},
		{"large tcp payload", func(c *ConnectConfig) { c.Bytes = 1 << 40 }, true},
		{"http ipv6", func(c *ConnectConfig) { c.Proto, c.Target = ProtoHTTP, "http://[::1]:8080/bytes?n=1" }, true},
		{"https", func(c *ConnectConfig) { c.Proto, c.Target = ProtoHTTP, "https://example.test/" }, true},

		{"missing port", func(c *ConnectConfig) { c.Target = "localhost" }, false},
		{"named port", func(c *ConnectConfig) { c.Target = "localhost:http" }, false},
		{"port 0", func(c *ConnectConfig) { c.Target = "127.0.0.1:0" }, false},
		{"port too large", func(c *ConnectConfig) { c.Proto, c.Target = ProtoUDP, "127.0.0.1:65536" }, false},
		{"missing host", func(c *ConnectConfig) { c.Target = ":80" }, false},
		{"ipv6 without brackets", func(c *ConnectConfig) { c.Target = "::1:80" }, false},
		{"unclosed bracket", func(c *ConnectConfig) { c.Target = "[::1:80" }, false},
		{"empty", func(c *ConnectConfig) { c.Target = "" }, false},
		{"negative bytes", func(c *ConnectConfig) { c.Bytes = -1 }, false},
		{"datagram too large", func(c *ConnectConfig) { c.Proto, c.Bytes = ProtoUDP, MaxUDPBytes+1 }, false},
		{"no udp attempts", func(c *ConnectConfig) { c.Proto, c.Count = ProtoUDP, 0 }, false},
		{"url without scheme", func(c *ConnectConfig) { c.Proto, c.Target = ProtoHTTP, "127.0.0.1:8080/" }, false},
		{"url of another scheme", func(c *ConnectConfig) { c.Proto, c.Target = ProtoHTTP, "ftp://example.test/" }, false},
		{"url without host", func(c *ConnectConfig) { c.Proto, c.Target = ProtoHTTP, "http:///healthz" }, false},
		{"unparsable url", func(c *ConnectConfig) { c.Proto, c.Target = ProtoHTTP, "http://[::1" }, false},
		{"unknown protocol", func(c *ConnectConfig) { c.Proto = "sctp" }, false},
		{"no protocol", func(c *ConnectConfig) { c.Proto = "" }, false},
		{"no timeout", func(c *ConnectConfig) { c.Timeout = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			err := cfg.Validate()
			var ue *UsageError
			if tc.valid {
				if err != nil {
					t.Errorf("Validate(%+v) = %v, want nil", cfg, err)
				}
				return
			}
			if !errors.As(err, &ue) {
				t.Fatalf("Validate(%+v) = %v, want a *UsageError", cfg, err)
			}
			// The binary still prints its one report line, and says why.
			var out bytes.Buffer
			if err := RunConnect(context.Background(), cfg, &out); !errors.As(err, &ue) {
				t.Errorf("RunConnect = %v, want a *UsageError", err)
			}
			lines := jsonLines(t, out.String())
			if len(lines) != 1 || lines[0]["ok"] != false || lines[0]["error"] != ue.Error() {
				t.Errorf("RunConnect printed %q; want one not-ok report with error %q", out.String(), ue.Error())
			}
		})
	}
}

func TestConnectCanceled(t *testing.T) {
	addr := fakeUDP(t, func(int, []byte) []byte { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := Connect(ctx, ConnectConfig{Proto: ProtoUDP, Target: addr, Bytes: 1, Timeout: time.Hour, Count: 3})
	if rep.OK || rep.Error == "" {
		t.Errorf("report %+v; want not ok with an error", rep)
	}
}
