package testpod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultShutdownGrace is how long in-flight HTTP requests and open echo
// connections get to finish after SIGTERM before they are cut: well inside
// Kubernetes' default 30 s termination grace period, so the pod exits on its
// own rather than being killed.
const DefaultShutdownGrace = 5 * time.Second

// readHeaderTimeout bounds how long a client may take to send request
// headers; nothing legitimate in a test takes longer.
const readHeaderTimeout = 10 * time.Second

// ServeConfig says what serve listens on. Addresses are "host:port" as
// net.Listen takes them: ":8080" is every address of both families, and
// "127.0.0.1:0" a free loopback port (tests learn it from the Server).
type ServeConfig struct {
	// HTTP are the addresses of the HTTP handler (NewHandler).
	HTTP []string
	// TCPEcho are the addresses of the TCP echo.
	TCPEcho []string
	// UDPEcho are the addresses of the UDP echo.
	UDPEcho []string
	// Sink are the addresses of the TCP throughput sink (see Throughput).
	Sink []string
	// Identity is what GET / reports.
	Identity Identity
	// ShutdownGrace overrides DefaultShutdownGrace when positive.
	ShutdownGrace time.Duration
	// Logger receives one record per listener and the shutdown; nil
	// discards them.
	Logger *slog.Logger
}

// Server is a bound set of serve listeners, made by Listen.
type Server struct {
	log     *slog.Logger
	grace   time.Duration
	http    *http.Server
	httpLns []net.Listener
	tcpLns  []net.Listener
	sinkLns []net.Listener
	udp     []*net.UDPConn

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
	connWG  sync.WaitGroup
}

// Serve listens as cfg says and serves until ctx ends, then shuts down
// gracefully; see Listen and Server.Serve.
func Serve(ctx context.Context, cfg ServeConfig) error {
	s, err := Listen(ctx, cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen binds every listener of cfg and logs each one, or binds none and
// returns the error. Binding before serving lets callers learn the ports
// and know that connections are already being queued.
func Listen(ctx context.Context, cfg ServeConfig) (*Server, error) {
	if len(cfg.HTTP)+len(cfg.TCPEcho)+len(cfg.UDPEcho)+len(cfg.Sink) == 0 {
		return nil, usageErrorf("nothing to serve: no HTTP, TCP echo, UDP echo or sink address")
	}
	s := &Server{
		log:   cfg.Logger,
		grace: cfg.ShutdownGrace,
		conns: make(map[net.Conn]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.grace <= 0 {
		s.grace = DefaultShutdownGrace
	}
	s.http = &http.Server{
		Handler:           NewHandler(cfg.Identity),
		ReadHeaderTimeout: readHeaderTimeout,
		// Keep stdout one JSON object per line, even for net/http's own
		// complaints.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	var lc net.ListenConfig
	for _, addr := range cfg.HTTP {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen http on %s: %w", addr, err)
		}
		s.httpLns = append(s.httpLns, ln)
		s.log.Info("listening", "proto", "http", "addr", ln.Addr().String())
	}
	for _, addr := range cfg.TCPEcho {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen tcp-echo on %s: %w", addr, err)
		}
		s.tcpLns = append(s.tcpLns, ln)
		s.log.Info("listening", "proto", "tcp-echo", "addr", ln.Addr().String())
	}
	for _, addr := range cfg.Sink {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen sink on %s: %w", addr, err)
		}
		s.sinkLns = append(s.sinkLns, ln)
		s.log.Info("listening", "proto", "sink", "addr", ln.Addr().String())
	}
	ulc := net.ListenConfig{Control: udpControl}
	for _, addr := range cfg.UDPEcho {
		pc, err := ulc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("listen udp-echo on %s: %w", addr, err)
		}
		s.udp = append(s.udp, pc.(*net.UDPConn))
		s.log.Info("listening", "proto", "udp-echo", "addr", pc.LocalAddr().String())
	}
	return s, nil
}

// HTTPAddrs returns the bound HTTP addresses, in ServeConfig order.
func (s *Server) HTTPAddrs() []net.Addr { return listenerAddrs(s.httpLns) }

// TCPEchoAddrs returns the bound TCP echo addresses, in ServeConfig order.
func (s *Server) TCPEchoAddrs() []net.Addr { return listenerAddrs(s.tcpLns) }

// SinkAddrs returns the bound sink addresses, in ServeConfig order.
func (s *Server) SinkAddrs() []net.Addr { return listenerAddrs(s.sinkLns) }

// UDPEchoAddrs returns the bound UDP echo addresses, in ServeConfig order.
func (s *Server) UDPEchoAddrs() []net.Addr {
	addrs := make([]net.Addr, len(s.udp))
	for i, c := range s.udp {
		addrs[i] = c.LocalAddr()
	}
	return addrs
}

func listenerAddrs(lns []net.Listener) []net.Addr {
	addrs := make([]net.Addr, len(lns))
	for i, ln := range lns {
		addrs[i] = ln.Addr()
	}
	return addrs
}

// Serve serves on every listener until ctx ends or one of them fails for
// good, then shuts down: it stops accepting, gives in-flight HTTP requests
// and open echo connections the shutdown grace to finish, cuts what is
// left, and returns once everything has stopped. It returns nil after a
// shutdown asked for through ctx.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, len(s.httpLns)+len(s.tcpLns)+len(s.udp))
	var wg sync.WaitGroup
	for _, ln := range s.httpLns {
		wg.Go(func() {
			if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
			}
		})
	}
	for _, ln := range s.tcpLns {
		wg.Go(func() { s.acceptEcho(ln) })
	}
	for _, ln := range s.sinkLns {
		wg.Go(func() { s.accept(ln, "sink", sink) })
	}
	for _, c := range s.udp {
		wg.Go(func() { s.echoUDP(c) })
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down", "grace", s.grace.String())
	s.shutdown()
	wg.Wait()
	if err != nil {
		s.log.Error("serve failed", "err", err)
	}
	return err
}

// shutdown stops every listener first, so nothing new starts while the
// old finishes, then waits up to the grace for HTTP requests and echo
// connections before closing them.
func (s *Server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()

	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	for _, ln := range append(s.tcpLns, s.sinkLns...) {
		_ = ln.Close()
	}
	for _, c := range s.udp {
		_ = c.Close() // datagrams have no sessions to drain
	}

	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close()
		}
	}()

	echoDone := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(echoDone)
	}()
	select {
	case <-echoDone:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-echoDone
	}
	<-httpDone
	s.Close()
}

// Close closes every listener at once, without grace. It is for a Server
// that never served; Serve cleans up after itself.
func (s *Server) Close() {
	for _, ln := range s.httpLns {
		_ = ln.Close()
	}
	for _, ln := range append(s.tcpLns, s.sinkLns...) {
		_ = ln.Close()
	}
	for _, c := range s.udp {
		_ = c.Close()
	}
}

// track registers an echo connection, unless the server is shutting down.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}
