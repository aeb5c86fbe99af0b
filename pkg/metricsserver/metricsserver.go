// Package metricsserver serves a component's Prometheus metrics over HTTP,
// with the same timeouts for every component, until a context ends.
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

const (
	// ReadHeaderTimeout keeps a client that never finishes its request
	// headers from holding a connection open; a scraper sends them at once.
	ReadHeaderTimeout = 5 * time.Second
	// ShutdownGrace bounds how long Serve waits for scrapes in flight once
	// its context ends: a scrape takes milliseconds, and a component that is
	// stopping should not wait on a slow scraper.
	ShutdownGrace = 2 * time.Second
)

// Path is where the metrics are served.
const Path = "/metrics"

// Serve serves handler at Path on ln until ctx ends, then shuts the server
// down, letting scrapes in flight finish within ShutdownGrace. It returns
// nil once ctx has ended, the server's error otherwise. ln is closed.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle(Path, handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: ReadHeaderTimeout}
	served := make(chan struct{}) // closed when srv.Serve returned
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-served:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	close(served)
	<-stopped
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}

// ListenAndServe listens on addr (host:port) and serves as Serve does.
func ListenAndServe(ctx context.Context, addr string, handler http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return Serve(ctx, ln, handler)
}
