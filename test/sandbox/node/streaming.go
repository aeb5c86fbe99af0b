package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/vishvananda/netns"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"strait.dev/strait/test/proc"
)

const syscallZero = syscall.Signal(0)

func typesUID(s string) types.UID { return types.UID(s) }

// defaultIdleTimeout is the kubelet's --streaming-connection-idle-timeout
// default.
const defaultIdleTimeout = 4 * time.Hour

func (s *KubeletServer) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return defaultIdleTimeout
}

// serveExec answers /exec/{namespace}/{pod}[/{uid}]/{container}?command=...
// over SPDY (channel.k8s.io v1 to v4) or WebSocket (v1 to v5), as the
// kubelet's streaming server does.
func (s *KubeletServer) serveExec(w http.ResponseWriter, r *http.Request) {
	ref, err := podRefOf(r)
	if err != nil {
		httpError(w, err)
		return
	}
	ns, pod, uid, container := ref.namespace, ref.pod, ref.uid, ref.container
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "missing command", http.StatusBadRequest)
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, err := s.containerPID(ns, pod, uid, container); err != nil {
		httpError(w, err)
		return
	}
	w, r = watchHijack(w, r)
	remotecommand.ServeExec(w, r, &executor{s: s, namespace: ns}, pod, uid, container, cmd, opts,
		s.idleTimeout(), remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// servePortForward answers /portForward/{namespace}/{pod}[/{uid}] over SPDY
// (portforward.k8s.io) or WebSocket.
func (s *KubeletServer) servePortForward(w http.ResponseWriter, r *http.Request) {
	ref, err := podRefOf(r)
	if err != nil {
		httpError(w, err)
		return
	}
	ns, pod, uid := ref.namespace, ref.pod, ref.uid
	if _, _, err := s.podRuntime(ns, pod, uid); err != nil {
		httpError(w, err)
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w, r = watchHijack(w, r)
	portforward.ServePortForward(w, r, &forwarder{s: s, namespace: ns}, pod, uid, opts,
		s.idleTimeout(), remotecommand.DefaultStreamCreationTimeout, portforward.SupportedProtocols)
}

// watchHijack gives the request a context that is cancelled when the
// connection, once hijacked for streaming, fails to read: the peer has gone.
// net/http cancels a request's context only when the handler returns, and a
// streaming handler returns only when its command does.
func watchHijack(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	context.AfterFunc(r.Context(), cancel)
	return &hijackWatcher{ResponseWriter: w, cancel: cancel}, r.WithContext(ctx)
}

type hijackWatcher struct {
	http.ResponseWriter
	cancel context.CancelFunc
}

func (h *hijackWatcher) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h *hijackWatcher) Flush() {
	if f, ok := h.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack returns the connection wrapped so that a read error or Close
// cancels the request's context.
func (h *hijackWatcher) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	wc := &watchedConn{Conn: conn, cancel: h.cancel}
	// The buffered reader may hold bytes already read; it must read through
	// the watched connection from now on as well.
	rw.Reader = bufio.NewReader(io.MultiReader(readerOf(rw.Reader), wc))
	return wc, rw, nil
}

// readerOf returns the bytes buffered in br (without reading more).
func readerOf(br *bufio.Reader) io.Reader {
	b, _ := br.Peek(br.Buffered())
	return strings.NewReader(string(b))
}

type watchedConn struct {
	net.Conn
	cancel context.CancelFunc
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.cancel()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}

// executor runs exec commands in a container's namespaces.
type executor struct {
	s         *KubeletServer
	namespace string
}

// ExecInContainer runs cmd as "nsenter --target <container PID> --net --mount
// --uts" does (as "crun exec" for a container under the OCI runtime), with the container's environment (so that argv[0] resolves
// in the image's PATH), in a process group of its own that is killed when
// ctx ends (the client went away). A non-zero exit is returned as a
// utilexec.ExitError with the exit status (128+signal when killed), which
// ServeExec reports as NonZeroExitCode.
func (e *executor) ExecInContainer(ctx context.Context, pod, uid, container string, cmd []string,
	in io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	pid, err := e.s.containerPID(e.namespace, pod, uid, container)
	if err != nil {
		return err
	}
	c := containerCommand(pid, cmd)
	if _, info, err := e.s.podRuntime(e.namespace, pod, uid); err == nil && info.OCIContainers[container] != "" {
		// A container under crun: crun exec gives the command the
		// container's namespaces (PID and IPC too), user, capabilities
		// and environment.
		c = (&ociRuntime{Crun: lookHost("crun"), Root: info.OCIRoot}).execCommand(info.OCIContainers[container], cmd)
	}
	if e.s.MarkerEnv != "" {
		c.Env = append(c.Env, e.s.MarkerEnv)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if tty {
		err = runTTY(ctx, c, in, stdout, resize)
	} else {
		err = runPiped(ctx, c, in, stdout, stderr)
	}
	if err != nil {
		return err
	}
	return exitError(c.ProcessState)
}

// containerCommand is argv run in the namespaces of the process pid, with
// its environment.
func containerCommand(pid int, argv []string) *exec.Cmd {
	args := append([]string{"--target", strconv.Itoa(pid), "--net", "--mount", "--uts", "--"}, argv...)
	c := exec.Command("nsenter", args...)
	c.Env = []string{}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
		c.Env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	return c
}

// exitError converts a finished process's state to ServeExec's terms.
func exitError(st *os.ProcessState) error {
	code := st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if code == 0 {
		return nil
	}
	return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
}

// killGroupOnDone kills the process group pgid when ctx ends before stop is
// closed.
func killGroupOnDone(ctx context.Context, pgid int, stop <-chan struct{}) {
	select {
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	case <-stop:
	}
}

func runPiped(ctx context.Context, c *exec.Cmd, in io.Reader, stdout, stderr io.WriteCloser) error {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if stdout != nil {
		c.Stdout = stdout
	}
	if stderr != nil {
		c.Stderr = stderr
	}
	// A child left in the background may hold the output pipes: stop
	// waiting for them a moment after the command exits.
	c.WaitDelay = time.Second
	var stdin io.WriteCloser
	if in != nil {
		var err error
		if stdin, err = c.StdinPipe(); err != nil {
			return err
		}
	}
	// In a process group of its own, killed should the agent die.
	if err := proc.Start(c); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go killGroupOnDone(ctx, c.Process.Pid, stop)
	if stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, in)
			stdin.Close()
		}()
	}
	err := c.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) || errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}

func runTTY(ctx context.Context, c *exec.Cmd, in io.Reader, stdout io.Writer, resize <-chan remotecommand.TerminalSize) error {
	// pty.Start makes the command a session leader with the terminal as its
	// controlling one: its session ID is its process group. (Not through
	// proc.Start, which puts the command in a process group, and a session
	// leader cannot be moved to one; the marker in its environment lets the
	// sandbox find it should the agent die.)
	ptmx, err := pty.Start(c)
	if err != nil {
		return err
	}
	stop, resized := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop)
		<-resized // no resize may touch the terminal once it is closed
		ptmx.Close()
	}()
	go killGroupOnDone(ctx, c.Process.Pid, stop)
	go func() {
		defer close(resized)
		for {
			select {
			case size, ok := <-resize:
				if !ok {
					return
				}
				if size.Height > 0 && size.Width > 0 {
					_ = pty.Setsize(ptmx, &pty.Winsize{Rows: size.Height, Cols: size.Width})
				}
			case <-stop:
				return
			}
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(ptmx, in) }()
	}
	var out sync.WaitGroup
	if stdout != nil {
		out.Add(1)
		go func() {
			defer out.Done()
			// Ends with EIO once every holder of the terminal has exited.
			_, _ = io.Copy(stdout, ptmx)
		}()
	}
	err = c.Wait()
	drained := make(chan struct{})
	go func() { out.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Second):
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return err
	}
	return nil
}

// forwarder connects port-forward streams to ports on a pod's loopback.
type forwarder struct {
	s         *KubeletServer
	namespace string
}

// PortForward dials 127.0.0.1:port inside the pod's network namespace (the
// node's for a hostNetwork pod) and copies data both ways until either side
// ends.
func (f *forwarder) PortForward(ctx context.Context, pod, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	_, info, err := f.s.podRuntime(f.namespace, pod, uid)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var conn net.Conn
	if info.HostNetwork || info.SandboxPID == 0 {
		conn, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialInNetns(ctx, info.SandboxPID, addr)
	}
	if err != nil {
		return fmt.Errorf("port forward to %s in pod %s/%s: %w", addr, f.namespace, pod, err)
	}
	defer conn.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, err = io.Copy(stream, conn)
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	return err
}

// dialInNetns dials addr from the network namespace of process pid. The
// socket is made on an OS thread moved into that namespace; the thread stays
// locked and so is discarded when the goroutine ends, never returning to the
// scheduler in a foreign namespace.
func dialInNetns(ctx context.Context, pid int, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPid(pid)
		if err != nil {
			ch <- result{nil, fmt.Errorf("network namespace of PID %d: %w", pid, err)}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{nil, fmt.Errorf("enter network namespace of PID %d: %w", pid, err)}
			return
		}
		conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}
