package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/utils/exec"

	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/pki"
)

// fakeAuthorizer allows the users in allow everything, and "<user>/<sub>"
// in allow the subresource sub of nodes, and records what it was asked.
var _ Authorizer = (*fakeAuthorizer)(nil)

type fakeAuthorizer struct {
	allow map[string]bool
	mu    sync.Mutex
	asked []authorizationv1.SubjectAccessReviewSpec
}

func (f *fakeAuthorizer) Authorize(_ context.Context, spec authorizationv1.SubjectAccessReviewSpec) (bool, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, spec)
	return f.allow[spec.User] || f.allow[spec.User+"/"+spec.ResourceAttributes.Subresource], "test says no", nil
}

// askedSince is the subresources asked about after the first n questions.
func (f *fakeAuthorizer) askedSince(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var subs []string
	for _, a := range f.asked[n:] {
		subs = append(subs, a.ResourceAttributes.Subresource)
	}
	return subs
}

func (f *fakeAuthorizer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.asked)
}

func (f *fakeAuthorizer) last() authorizationv1.SubjectAccessReviewSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[len(f.asked)-1]
}

type kubeletFixture struct {
	srv   *httptest.Server
	ks    *KubeletServer
	authz *fakeAuthorizer
	ca    *pki.CA
	// allowed and denied are client configurations of an allowed user
	// (system:masters, as the apiserver's kubelet client) and another one.
	allowed, denied *rest.Config
}

func newKubeletFixture(t *testing.T) *kubeletFixture {
	t.Helper()
	ca, err := pki.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caKP, _ := ca.KeyPair()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, caKP.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	serving, err := ca.ServingCert("system:node:n1", []netip.Addr{netip.MustParseAddr("127.0.0.1")}, []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := serving.Write(dir, "kubelet-n1")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := TLSConfig(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	f := &kubeletFixture{ca: ca, authz: &fakeAuthorizer{allow: map[string]bool{"kube-apiserver-kubelet-client": true}}}
	podsDir := filepath.Join(dir, "pods")
	if err := os.MkdirAll(podsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.ks = &KubeletServer{NodeName: "n1", PodsDir: podsDir, Authorizer: f.authz}
	f.srv = httptest.NewUnstartedServer(f.ks.Handler())
	f.srv.TLS = tlsCfg
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.allowed = f.clientConfig(t, "kube-apiserver-kubelet-client", "system:masters")
	f.denied = f.clientConfig(t, "someone", "devs")
	return f
}

func (f *kubeletFixture) clientConfig(t *testing.T, user string, groups ...string) *rest.Config {
	kp, err := f.ca.ClientCert(user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: f.srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: f.ca.CertPEM(), CertData: kp.CertPEM, KeyData: kp.KeyPEM}}
}

func httpClient(t *testing.T, cfg *rest.Config) *http.Client {
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakePod writes a runtime record for pod ns/name with the given containers.
func (f *kubeletFixture) fakePod(t *testing.T, ns, name string, info RuntimeInfo) string {
	t.Helper()
	dir := filepath.Join(f.ks.PodsDir, ns+"_"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	info.LogDir = dir
	data, _ := json.Marshal(info)
	if err := os.WriteFile(filepath.Join(dir, "runtime.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startProcess starts a "container" process with an environment of its own.
func startProcess(t *testing.T, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("nsenter and network namespaces need root")
	}
}

func (f *kubeletFixture) execURL(ns, pod, container string, q url.Values) *url.URL {
	u, _ := url.Parse(f.srv.URL + "/exec/" + ns + "/" + pod + "/" + container + "?" + q.Encode())
	return u
}

func execQuery(stdin, tty bool, argv ...string) url.Values {
	q := url.Values{"command": argv, "output": {"1"}}
	if !tty {
		q.Set("error", "1")
	}
	if stdin {
		q.Set("input", "1")
	}
	if tty {
		q.Set("tty", "1")
	}
	return q
}

// fixedSize sends one terminal size, then blocks until done is closed.
type fixedSize struct {
	sent bool
	done chan struct{}
}

func (s *fixedSize) Next() *remotecommand.TerminalSize {
	if s.sent {
		<-s.done
		return nil
	}
	s.sent = true
	return &remotecommand.TerminalSize{Width: 123, Height: 45}
}

func TestKubeletExec(t *testing.T) {
	requireRoot(t)
	f := newKubeletFixture(t)
	ctr := startProcess(t, []string{"PATH=/usr/bin:/bin", "GREETING=from-the-container"}, "sleep", "1000")
	f.fakePod(t, "ns1", "p1", RuntimeInfo{UID: "uid-1", HostNetwork: true, Containers: map[string]int{"c": ctr.Process.Pid}})

	run := func(t *testing.T, cfg *rest.Config, q url.Values, opts remotecommand.StreamOptions) error {
		ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", f.execURL("ns1", "p1", "c", q))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return ex.StreamWithContext(ctx, opts)
	}
	t.Run("environment and stderr", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := run(t, f.allowed, execQuery(false, false, "sh", "-c", "echo $GREETING; echo oops >&2"), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
		if err != nil || out.String() != "from-the-container\n" || errOut.String() != "oops\n" {
			t.Errorf("got err %v, stdout %q, stderr %q", err, out.String(), errOut.String())
		}
		if a := f.authz.last(); a.User != "kube-apiserver-kubelet-client" || a.ResourceAttributes.Subresource != "proxy" ||
			a.ResourceAttributes.Verb != "create" || a.ResourceAttributes.Resource != "nodes" || a.ResourceAttributes.Name != "n1" {
			t.Errorf("authorization asked %+v %+v", a, a.ResourceAttributes)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		err := run(t, f.allowed, execQuery(false, false, "sh", "-c", "exit 3"), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
		var ee utilexec.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Errorf("got %v (%T), want exit status 3", err, err)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		var out bytes.Buffer
		err := run(t, f.allowed, execQuery(true, false, "tr", "a-z", "A-Z"), remotecommand.StreamOptions{Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: io.Discard})
		if err != nil || out.String() != "HELLO\n" {
			t.Errorf("got err %v, stdout %q", err, out.String())
		}
	})
	t.Run("tty with size", func(t *testing.T) {
		var out bytes.Buffer
		// The size arrives over the resize stream after the start: the
		// command polls for it.
		size := &fixedSize{done: make(chan struct{})}
		defer close(size.done)
		script := `for i in $(seq 100); do s=$(stty size); [ "$s" = "45 123" ] && break; sleep 0.05; done; echo $s; tty`
		err := run(t, f.allowed, execQuery(true, true, "sh", "-c", script), remotecommand.StreamOptions{
			Stdin: strings.NewReader(""), Stdout: &out, Tty: true, TerminalSizeQueue: size})
		if err != nil || !strings.Contains(out.String(), "45 123") || !strings.Contains(out.String(), "/dev/pts/") {
			t.Errorf("got err %v, output %q; want the terminal size 45 123 and a /dev/pts terminal", err, out.String())
		}
	})
	t.Run("unknown container", func(t *testing.T) {
		ex, _ := remotecommand.NewSPDYExecutor(f.allowed, "POST", f.execURL("ns1", "p1", "nope", execQuery(false, false, "true")))
		if err := ex.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Error("exec in a container that does not exist succeeded")
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		err := run(t, f.denied, execQuery(false, false, "true"), remotecommand.StreamOptions{Stdout: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "Forbidden (user=someone") {
			t.Errorf("got %v, want a 403 Forbidden", err)
		}
	})
}

// TestKubeletExecKilledWhenStreamCloses drops an exec connection and sees
// the command's process killed.
func TestKubeletExecKilledWhenStreamCloses(t *testing.T) {
	requireRoot(t)
	f := newKubeletFixture(t)
	ctr := startProcess(t, []string{"PATH=/usr/bin:/bin"}, "sleep", "1000")
	f.fakePod(t, "ns1", "p1", RuntimeInfo{UID: "uid-1", HostNetwork: true, Containers: map[string]int{"c": ctr.Process.Pid}})
	ex, err := remotecommand.NewSPDYExecutor(f.allowed, "POST", f.execURL("ns1", "p1", "c", execQuery(false, false, "sh", "-c", "echo $$; exec sleep 1000")))
	if err != nil {
		t.Fatal(err)
	}
	waitKilledAfterCancel(t, ex)
}

// waitKilledAfterCancel runs an exec that prints its PID and sleeps, drops
// the client's connection and checks the process is killed.
func waitKilledAfterCancel(t *testing.T, ex remotecommand.Executor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: pw, Stderr: io.Discard}) }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid line %q: %v", line, err)
	}
	if !pidAlive(pid) {
		t.Fatalf("exec'd process %d is not running", pid)
	}
	cancel() // closes the client's connection
	<-done
	// The exec'd command never exits on its own: only the kill ends it.
	// The deadline is a guard against a hang, not a bound on how fast.
	deadline := time.Now().Add(time.Minute)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still runs a minute after the exec stream closed: not killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestKubeletAuthentication(t *testing.T) {
	f := newKubeletFixture(t)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, path := range []string{"/healthz", "/containerLogs/ns1/p1/c", "/exec/ns1/p1/c?command=true"} {
		resp, err := anon.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: %d, want 401", path, resp.StatusCode)
		}
	}
	// A certificate from another CA, offered although the server names its
	// own CA, fails the handshake.
	other, _ := pki.NewCA("other")
	kp, _ := other.ClientCert("kube-apiserver-kubelet-client", "system:masters")
	cert, _ := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}}}
	if resp, err := stranger.Get(f.srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("client certificate of another CA: %d, want a failed handshake", resp.StatusCode)
	}
	resp, err := httpClient(t, f.denied).Get(f.srv.URL + "/containerLogs/ns1/p1/c")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("denied user: %d %s, want 403", resp.StatusCode, body)
	}
	if a := f.authz.last(); a.User != "someone" || !equalStrings(a.Groups, []string{"devs", "system:authenticated"}) ||
		a.ResourceAttributes.Verb != "get" || a.ResourceAttributes.Subresource != "proxy" {
		t.Errorf("authorization asked %+v %+v", a, a.ResourceAttributes)
	}
	resp, err = httpClient(t, f.allowed).Get(f.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	if a := f.authz.last(); a.ResourceAttributes.Subresource != "healthz" {
		t.Errorf("healthz authorized as subresource %q", a.ResourceAttributes.Subresource)
	}
}

// TestKubeletAuthorizationFallsBackToProxy: as the kubelet's fine-grained
// authorization, a request for pods, healthz or configz that is denied its
// own subresource is asked again as proxy; others are asked once.
func TestKubeletAuthorizationFallsBackToProxy(t *testing.T) {
	f := newKubeletFixture(t)
	f.authz.allow["proxy-only/proxy"] = true
	f.authz.allow["healthz-only/healthz"] = true
	for _, tc := range []struct {
		user, path string
		code       int
		asked      []string
	}{
		{"proxy-only", "/healthz", http.StatusOK, []string{"healthz", "proxy"}},
		{"proxy-only", "/pods", http.StatusOK, []string{"pods", "proxy"}},
		{"proxy-only", "/containerLogs/ns1/p1/c", http.StatusNotFound, []string{"proxy"}},
		{"healthz-only", "/healthz", http.StatusOK, []string{"healthz"}},
		{"healthz-only", "/pods", http.StatusForbidden, []string{"pods", "proxy"}},
		{"healthz-only", "/containerLogs/ns1/p1/c", http.StatusForbidden, []string{"proxy"}},
		{"someone", "/healthz", http.StatusForbidden, []string{"healthz", "proxy"}},
	} {
		n := f.authz.count()
		resp, err := httpClient(t, f.clientConfig(t, tc.user)).Get(f.srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s GET %s: %d %q, want %d", tc.user, tc.path, resp.StatusCode, body, tc.code)
		}
		if got := f.authz.askedSince(n); !equalStrings(got, tc.asked) {
			t.Errorf("%s GET %s: asked about subresources %v, want %v", tc.user, tc.path, got, tc.asked)
		}
		if tc.code == http.StatusForbidden && !strings.Contains(string(body), fmt.Sprintf("subresource(s)=%v", tc.asked)) {
			t.Errorf("%s GET %s: %q does not name the subresources asked, %v", tc.user, tc.path, body, tc.asked)
		}
	}
}

func TestKubeletSubresources(t *testing.T) {
	for path, want := range map[string]string{
		"/pods": "pods proxy", "/runningpods/": "pods proxy", "/healthz": "healthz proxy", "/healthz/ping": "healthz proxy",
		"/configz": "configz proxy", "/stats/summary": "stats", "/metrics/cadvisor": "metrics", "/logs/syslog": "log",
		"/checkpoint/ns/p/c": "checkpoint", "/flagz": "configz", "/statusz": "statusz",
		"/exec/ns/p/c": "proxy", "/containerLogs/ns/p/c": "proxy", "/portForward/ns/p": "proxy", "/podsx": "proxy",
	} {
		if got := strings.Join(kubeletSubresources(path), " "); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}

// TestKubeletPathValidation: names in the path are checked before they
// become file names; a container named ../../secret must not read a log
// outside the pod's directory.
func TestKubeletPathValidation(t *testing.T) {
	f := newKubeletFixture(t)
	podDir := f.fakePod(t, "ns1", "p1", RuntimeInfo{UID: "uid-1", Containers: map[string]int{}})
	writeCRILog(t, podDir, "c", 0, time.Now(), "stdout F fine")
	// A log outside the pod's directory: <podDir>/logs/../../secret is
	// <PodsDir>/secret.
	writeCRILog(t, podDir, "../../secret", 0, time.Now(), "stdout F secret-content")
	if _, err := os.Stat(filepath.Join(f.ks.PodsDir, "secret", "0.log")); err != nil {
		t.Fatalf("setup: %v", err)
	}
	client := httpClient(t, f.allowed)
	for _, tc := range []struct {
		method, path string
		code         int
		msg          string
	}{
		{"GET", "/containerLogs/ns1/p1/c", http.StatusOK, "fine"},
		{"GET", "/containerLogs/ns1/p1/..%2F..%2Fsecret", http.StatusBadRequest, `invalid container name "../../secret"`},
		{"GET", "/containerLogs/ns1/p1/C", http.StatusBadRequest, `invalid container name "C"`},
		{"GET", "/containerLogs/NS1/p1/c", http.StatusBadRequest, `invalid namespace "NS1"`},
		{"GET", "/containerLogs/ns1/p1%2F..%2Fp2/c", http.StatusBadRequest, `invalid pod name "p1/../p2"`},
		{"POST", "/exec/ns1/p1/..%2Fc?command=true", http.StatusBadRequest, `invalid container name "../c"`},
		{"POST", "/exec/ns1/p1/uid%2F..%2F1/c?command=true", http.StatusBadRequest, `invalid pod UID "uid/../1"`},
		{"POST", "/exec/ns1/p1/uid..1/c?command=true", http.StatusBadRequest, `invalid pod UID "uid..1"`},
		{"POST", "/portForward/ns1/..%2Fp1", http.StatusBadRequest, `invalid pod name "../p1"`},
		{"POST", "/portForward/x_y/p1", http.StatusBadRequest, `invalid namespace "x_y"`},
	} {
		req, err := http.NewRequest(tc.method, f.srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.msg) || strings.Contains(string(body), "secret-content") {
			t.Errorf("%s %s: %d %q, want %d and %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.msg)
		}
	}
}

func equalStrings(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// writeAttempt runs a shell script as one start of container c, its output
// going to the CRI log as the pod worker's does.
func writeAttempt(t *testing.T, podDir, container string, attempt int32, script string) *exec.Cmd {
	t.Helper()
	l, err := openContainerLog(podDir, container, attempt)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdout, cmd.Stderr = l.Stdout, l.Stderr
	err = cmd.Start()
	l.Started()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); l.Finished() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd
}

// waitLog waits until path has the given number of lines; the minute is a
// guard against a hang.
func waitLog(t *testing.T, path string, lines int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		data, _ := os.ReadFile(path)
		if bytes.Count(data, []byte("\n")) >= lines {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %q, want %d lines", path, data, lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestContainerLogFormat(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", maxLogLineBytes+10)
	writeAttempt(t, dir, "c", 0, "echo out; sleep 0.2; echo err >&2; sleep 0.2; printf '"+long+"\\n'; printf tail")
	waitLog(t, containerLogPath(dir, "c", 0), 5)
	data, _ := os.ReadFile(containerLogPath(dir, "c", 0))
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) (F|P) `)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("not a CRI log line: %.80q", l)
		}
	}
	want := []string{"stdout F out", "stderr F err", "stdout P " + long[:maxLogLineBytes], "stdout F " + long[maxLogLineBytes:], "stdout F tail"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %.300q", len(lines), len(want), data)
	}
	for i, l := range lines {
		if _, rest, _ := strings.Cut(l, " "); rest != want[i] {
			t.Errorf("line %d: %.60q, want %.60q", i, rest, want[i])
		}
	}
	// Read back: the partial line joins its continuation.
	var out bytes.Buffer
	if err := WriteContainerLog(context.Background(), &out, dir, "c", LogOptions{TailLines: -1}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "out\nerr\n"+long+"\ntail\n" {
		t.Errorf("content %.100q", out.String())
	}
}

// writeCRILog writes a CRI log file of records at t0, t0+1s, ...
func writeCRILog(t *testing.T, podDir, container string, attempt int32, t0 time.Time, records ...string) {
	t.Helper()
	path := containerLogPath(podDir, container, attempt)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i, r := range records {
		fmt.Fprintf(&b, "%s %s\n", t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), r)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKubeletContainerLogs(t *testing.T) {
	f := newKubeletFixture(t)
	podDir := f.fakePod(t, "ns1", "p1", RuntimeInfo{UID: "uid-1", Containers: map[string]int{}})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	writeCRILog(t, podDir, "c", 0, t0.Add(-time.Hour), "stdout F first-1", "stdout F first-2")
	writeCRILog(t, podDir, "c", 1, t0, "stdout F a", "stderr F b", "stdout P c-", "stdout F continued", "stdout F d")
	client := httpClient(t, f.allowed)
	get := func(path string) (int, string) {
		resp, err := client.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		query, want string
		code        int
	}{
		{"", "a\nb\nc-continued\nd\n", 200},
		{"tailLines=2", "continued\nd\n", 200},
		{"tailLines=0", "", 200},
		{"limitBytes=3", "a\nb", 200},
		{"previous=true", "first-1\nfirst-2\n", 200},
		{"previous=true&tailLines=1", "first-2\n", 200},
		{"sinceTime=" + url.QueryEscape(t0.Add(3*time.Second).UTC().Format(time.RFC3339)), "continued\nd\n", 200},
		{"sinceSeconds=7200", "a\nb\nc-continued\nd\n", 200},
		{"sinceSeconds=60", "", 200},
		{"stream=Stderr", "b\n", 200},
		{"stream=Stdout", "a\nc-continued\nd\n", 200},
		{"timestamps=true&tailLines=1", t0.Add(4*time.Second).Format(time.RFC3339Nano) + " d\n", 200},
		{"timestamps=true&stream=Stderr", t0.Add(time.Second).Format(time.RFC3339Nano) + " b\n", 200},
		{"tailLines=-1", "", 400},
		{"limitBytes=0", "", 400},
		{"follow=maybe", "", 400},
		{"stream=Stdout&tailLines=1", "", 400},
		{"sinceSeconds=1&sinceTime=2020-01-01T00:00:00Z", "", 400},
	} {
		code, body := get("/containerLogs/ns1/p1/c?" + tc.query)
		if code != tc.code || (code == 200 && body != tc.want) {
			t.Errorf("?%s: %d %q, want %d %q", tc.query, code, body, tc.code, tc.want)
		}
	}
	for path, want := range map[string]int{
		"/containerLogs/ns1/p1/nope":            http.StatusNotFound,
		"/containerLogs/ns1/other/c":            http.StatusNotFound,
		"/containerLogs/ns1/p1/c":               http.StatusOK,
		"/containerLogs/ns1/p1/c?x=1":           http.StatusOK,
		"/containerLogs/ns1/p1/d?previous=true": http.StatusNotFound,
	} {
		if code, body := get(path); code != want {
			t.Errorf("%s: %d %q, want %d", path, code, body, want)
		}
	}
	writeCRILog(t, podDir, "only-one", 0, t0, "stdout F x")
	if code, _ := get("/containerLogs/ns1/p1/only-one?previous=true"); code != http.StatusBadRequest {
		t.Errorf("previous of a first start: %d, want 400", code)
	}
}

// TestKubeletContainerLogsFollow follows a running container's log. The
// container prints one line, then waits on a FIFO that the test writes only
// once it has read that line from the follow; the lines printed after that
// must come on the same follow, which ends when the container has exited.
// A follow that stopped at the end of the file would miss them; one that
// held its output back would never deliver the first line (the context is
// a guard against that hang, not a bound on how fast anything is).
func TestKubeletContainerLogsFollow(t *testing.T) {
	f := newKubeletFixture(t)
	podDir := f.fakePod(t, "ns1", "p1", RuntimeInfo{UID: "uid-1"})
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	ctr := writeAttempt(t, podDir, "c", 0, "echo one; read go <'"+gate+"'; echo two; echo three")
	f.fakePod(t, "ns1", "p1", RuntimeInfo{UID: "uid-1", Containers: map[string]int{"c": ctr.Process.Pid}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/containerLogs/ns1/p1/c?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient(t, f.allowed).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "one\n" {
		t.Fatalf("first line %q %v; want one, streamed while the container waits", first, err)
	}
	// Opening the FIFO waits for the container to open it for reading.
	opened := make(chan error, 1)
	go func() {
		g, err := os.OpenFile(gate, os.O_WRONLY, 0)
		if err == nil {
			_, err = g.WriteString("go\n")
			g.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("release the container: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the container never opened its FIFO")
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "two\nthree\n" {
		t.Errorf("after the release: %q %v; want two and three, then the end of the follow as the container exits", rest, err)
	}
}

// listenInNetns runs an echo server on 127.0.0.1:port in a throwaway network
// namespace and returns the PID of a process in that namespace.
func listenInNetns(t *testing.T, port int) int {
	t.Helper()
	name := fmt.Sprintf("strait-h-kubelet-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	srv := startProcess(t, os.Environ(), "ip", "netns", "exec", name, "socat",
		fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", port), "EXEC:cat")
	deadline := time.Now().Add(time.Minute) // a guard against a hang
	for {
		if out, _ := exec.Command("ip", "netns", "exec", name, "ss", "-Htln").Output(); strings.Contains(string(out), "127.0.0.1:"+strconv.Itoa(port)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("echo server in the netns did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv.Process.Pid
}

func TestKubeletPortForward(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatalf("socat is not installed (hack/prereqs.sh installs it): %v", err)
	}
	f := newKubeletFixture(t)
	// A pod with a network namespace of its own, and a hostNetwork pod whose
	// port is on the node's loopback (here: the test's).
	f.fakePod(t, "ns1", "netns-pod", RuntimeInfo{UID: "uid-1", SandboxPID: listenInNetns(t, 8080)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	hostPort := ln.Addr().(*net.TCPAddr).Port
	f.fakePod(t, "ns1", "host-pod", RuntimeInfo{UID: "uid-2", HostNetwork: true})

	for _, tc := range []struct {
		pod  string
		port int
	}{{"netns-pod", 8080}, {"host-pod", hostPort}} {
		t.Run(tc.pod, func(t *testing.T) {
			rt, upgrader, err := spdy.RoundTripperFor(f.allowed)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(f.srv.URL + "/portForward/ns1/" + tc.pod)
			dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u)
			stop, ready := make(chan struct{}), make(chan struct{})
			pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(tc.port)}, stop, ready, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- pf.ForwardPorts() }()
			defer func() { close(stop); <-errc }()
			select {
			case <-ready:
			case err := <-errc:
				t.Fatal(err)
			case <-time.After(time.Minute): // a guard against a hang
				t.Fatal("port forward never became ready")
			}
			ports, _ := pf.GetPorts()
			for i := range 2 { // two connections over one forward
				c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				msg := fmt.Sprintf("ping %d\n", i)
				_ = c.SetDeadline(time.Now().Add(time.Minute)) // a guard against a hang
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				got, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err != nil || got != msg {
					t.Errorf("echo %q %v, want %q", got, err, msg)
				}
			}
		})
	}
}

// TestSARAuthorizerWithNodeCredentials asks a real apiserver (Node and RBAC
// authorization, as in the sandbox) with a node's credentials, as the agent
// does: the apiserver's kubelet client may use the kubelet API, a plain user
// may not.
func TestSARAuthorizerWithNodeCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	// The harness runs RBAC; the flag adds Node (the sandbox's Node,RBAC):
	// RBAC binds no role to nodes, the Node authorizer lets them create SARs.
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true, APIServerArgs: []string{"--authorization-mode=Node"}})
	cfg, err := env.UserConfig("system:node:n1", "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	authz := SARAuthorizer{Client: cs}
	attrs := func(user string, groups ...string) authorizationv1.SubjectAccessReviewSpec {
		return authorizationv1.SubjectAccessReviewSpec{User: user, Groups: append(groups, "system:authenticated"),
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Version: "v1", Resource: "nodes", Subresource: "proxy", Name: "n1"}}
	}
	ctx := context.Background()
	if ok, reason, err := authz.Authorize(ctx, attrs("kube-apiserver-kubelet-client", "system:masters")); err != nil || !ok {
		t.Errorf("apiserver's kubelet client: allowed=%v reason=%q err=%v, want allowed", ok, reason, err)
	}
	if ok, _, err := authz.Authorize(ctx, attrs("someone", "devs")); err != nil || ok {
		t.Errorf("plain user: allowed=%v err=%v, want denied", ok, err)
	}
}

// TestKubeletAPIThroughAPIServer drives the kubelet API as kubectl 1.37
// does, through a real kube-apiserver: exec and port-forward over WebSocket
// to the apiserver, which calls the kubelet with its kubelet client
// certificate (SPDY), and logs.
func TestKubeletAPIThroughAPIServer(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	f := newKubeletFixture(t)
	dir := t.TempDir()
	caKP, _ := f.ca.KeyPair()
	caFile := filepath.Join(dir, "kubelet-ca.crt")
	if err := os.WriteFile(caFile, caKP.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	kc, err := f.ca.ClientCert("kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := kc.Write(dir, "apiserver-kubelet-client")
	if err != nil {
		t.Fatal(err)
	}
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true, APIServerArgs: []string{
		"--kubelet-client-certificate=" + certFile, "--kubelet-client-key=" + keyFile,
		"--kubelet-certificate-authority=" + caFile, "--kubelet-preferred-address-types=InternalIP",
	}})
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port, _ := strconv.Atoi(f.srv.URL[strings.LastIndex(f.srv.URL, ":")+1:])
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs to make the namespace's service account.
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p1"},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "strait/testpod"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := startProcess(t, []string{"PATH=/usr/bin:/bin", "GREETING=via-apiserver"}, "sleep", "1000")
	podDir := f.fakePod(t, "default", "p1", RuntimeInfo{UID: string(pod.UID), HostNetwork: true, Containers: map[string]int{"c": ctr.Process.Pid}})
	writeCRILog(t, podDir, "c", 0, time.Now().Add(-time.Minute), "stdout F line-1", "stdout F line-2")

	t.Run("exec", func(t *testing.T) {
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("p1").SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "c", Command: []string{"sh", "-c", "echo $GREETING; exit 7"}, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
		ex, err := remotecommand.NewWebSocketExecutor(env.Config, "GET", u.String())
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard})
		var ee utilexec.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 7 || out.String() != "via-apiserver\n" {
			t.Errorf("got err %v, output %q; want exit status 7 and via-apiserver", err, out.String())
		}
	})
	t.Run("exec killed when the client goes", func(t *testing.T) {
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("p1").SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "c", Command: []string{"sh", "-c", "echo $$; exec sleep 1000"}, Stdout: true}, scheme.ParameterCodec).URL()
		ex, err := remotecommand.NewWebSocketExecutor(env.Config, "GET", u.String())
		if err != nil {
			t.Fatal(err)
		}
		waitKilledAfterCancel(t, ex)
	})
	t.Run("logs", func(t *testing.T) {
		b, err := cs.CoreV1().Pods("default").GetLogs("p1", &corev1.PodLogOptions{Container: "c", TailLines: ptrTo(int64(1))}).DoRaw(ctx)
		if err != nil || string(b) != "line-2\n" {
			t.Errorf("logs %q %v, want line-2", b, err)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				_, _ = c.Write([]byte("hello from the pod\n"))
				c.Close()
			}
		}()
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name("p1").SubResource("portforward").URL()
		dialer, err := portforward.NewSPDYOverWebsocketDialer(u, env.Config)
		if err != nil {
			t.Fatal(err)
		}
		stop, ready := make(chan struct{}), make(chan struct{})
		pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- pf.ForwardPorts() }()
		defer func() { close(stop); <-errc }()
		select {
		case <-ready:
		case err := <-errc:
			t.Fatal(err)
		}
		ports, _ := pf.GetPorts()
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != "hello from the pod\n" {
			t.Errorf("read %q %v", got, err)
		}
	})
}

func ptrTo[T any](v T) *T { return &v }
