package testpod

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestThroughputCountsWhatTheSinkReceived(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Listen(ctx, ServeConfig{Sink: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	rep := Throughput(ctx, ThroughputConfig{Target: s.SinkAddrs()[0].String(), Duration: 200 * time.Millisecond, Timeout: 5 * time.Second})
	t.Logf("loopback: %.2f Gbit/s", rep.Gbps)
	if !rep.OK || rep.Bytes < throughputChunk || rep.Gbps <= 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestThroughputAgainstAnEchoIsAnError(t *testing.T) {
	// A TCP echo answers with the bytes sent, not a count of 8 bytes, and
	// never a count that matches: the run must not report a figure as if
	// from a sink. A closed port fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep := Throughput(context.Background(), ThroughputConfig{Target: addr, Duration: 100 * time.Millisecond, Timeout: time.Second})
	if rep.OK || rep.Error == "" {
		t.Fatalf("report %+v", rep)
	}
}

func TestUDPSendWaitsForTheExpectedReply(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Listen(ctx, ServeConfig{UDPEcho: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	target := s.UDPEchoAddrs()[0].String()
	rep := UDPSend(ctx, UDPSendConfig{Target: target, Payload: []byte("STND\x01\x01"), Expect: []byte("STND"), Count: 2, Timeout: time.Second})
	if !rep.OK || rep.Reply != "53544e440101" {
		t.Fatalf("echo: %+v", rep)
	}
	rep = UDPSend(ctx, UDPSendConfig{Target: target, Payload: []byte("STND\x01\x01"), Expect: []byte("XXXX"), Count: 2, Timeout: 100 * time.Millisecond})
	if rep.OK || rep.Attempts != 2 {
		t.Fatalf("a reply without the expected prefix counted: %+v", rep)
	}
}

func TestConnectKeepsASmallTextBody(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Listen(ctx, ServeConfig{HTTP: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	base := "http://" + s.HTTPAddrs()[0].String()
	rep := Connect(ctx, ConnectConfig{Proto: ProtoHTTP, Target: base + "/healthz", Timeout: 5 * time.Second})
	if !rep.OK || rep.Text != "ok" || rep.Body != nil {
		t.Fatalf("/healthz: %+v", rep)
	}
	rep = Connect(ctx, ConnectConfig{Proto: ProtoHTTP, Target: base + "/", Timeout: 5 * time.Second})
	if !rep.OK || rep.Text != "" || rep.Body == nil {
		t.Fatalf("/ (JSON): %+v", rep)
	}
}
