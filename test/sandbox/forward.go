package sandbox

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// forwarder makes an address inside a sandbox namespace reachable from the root
// namespace's loopback, so that kubeconfigs work from the machine without
// giving the root namespace any route or address of the sandbox.
type forwarder struct {
	ln     net.Listener
	netns  string // path of the target namespace
	target string // host:port inside it
	log    *slog.Logger
}

func newForwarder(netns, target string, log *slog.Logger) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &forwarder{ln: ln, netns: netns, target: target, log: log}, nil
}

func (f *forwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *forwarder) serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		f.ln.Close()
	}()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *forwarder) handle(c net.Conn) {
	defer c.Close()
	up, err := dialInNetns(f.netns, "tcp", f.target)
	if err != nil {
		f.log.Warn("forward", "target", f.target, "err", err)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}

// dialInNetns opens a connection (network "tcp" or "udp") from inside another
// network namespace.
// A socket keeps the namespace it was made in, so only the dial needs the
// thread switched; the thread is never switched back and dies with its
// goroutine, so no other goroutine can ever run in the wrong namespace.
func dialInNetns(netnsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		fd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
