package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/sandbox"
)

// TestKubeletAPI drives the sandbox nodes' kubelet API the way a user does:
// kubectl exec (with and without a TTY), logs -f and port-forward go from
// kubectl through the apiserver to the node agent on port 10250.
func TestKubeletAPI(t *testing.T) {
	need(t)
	cs := kubeClient(t, "c1")
	ns := testNamespace(t, cs)
	logger := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "logger"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			Containers: []corev1.Container{{
				Name:  "log",
				Image: "busybox:1.36",
				Args:  []string{"sh", "-c", `i=0; while true; do echo "line $i"; i=$((i+1)); sleep 1; done`},
			}},
		},
	}
	web := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{testpodContainer("web", "serve")}},
	}
	createRunning(t, "c1", cs, ns, toolPod("tools"), logger, web)

	t.Run("exec exit code", func(t *testing.T) {
		r := kubectl(t, "c1", "exec", "-n", ns, "tools", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || strings.TrimSpace(r.stdout) != "out" || !strings.Contains(r.stderr, "err") {
			t.Fatalf("kubectl exec sh -c 'exit 3': exit %d, stdout %q, stderr %q; want exit 3, out, err", r.code, r.stdout, r.stderr)
		}
		if r := kubectl(t, "c1", "exec", "-n", ns, "tools", "--", "true"); r.code != 0 {
			t.Fatalf("kubectl exec true: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("exec stdin", func(t *testing.T) {
		cmd := kubectlCmd(t, "c1", "exec", "-i", "-n", ns, "tools", "--", "sh", "-c", "tr a-z A-Z")
		cmd.Stdin = strings.NewReader("hello through stdin\n")
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != "HELLO THROUGH STDIN" {
			t.Fatalf("kubectl exec -i: %v, %q", err, out)
		}
	})

	t.Run("exec tty", func(t *testing.T) {
		cmd := kubectlCmd(t, "c1", "exec", "-it", "-n", ns, "tools", "--", "sh")
		f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		term := newTranscript(f)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() { _ = cmd.Process.Kill() }()

		term.send(t, f, "tty; stty size\n")
		term.expect(t, regexp.MustCompile(`/dev/pts/\d+`), "a terminal inside the container")
		term.expect(t, regexp.MustCompile(`\b24 80\b`), "the terminal size kubectl started with")
		// A resize of kubectl's terminal reaches the container's.
		if err := pty.Setsize(f, &pty.Winsize{Rows: 50, Cols: 132}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the resized terminal in the container", func(context.Context) (bool, error) {
			term.send(t, f, "stty size\n")
			time.Sleep(300 * time.Millisecond)
			return strings.Contains(term.String(), "50 132"), nil
		})
		term.send(t, f, "exit 3\n")
		select {
		case err := <-done:
			if cmd.ProcessState.ExitCode() != 3 {
				t.Fatalf("kubectl exec -it, shell exited 3: kubectl exit %d (%v)\n%s", cmd.ProcessState.ExitCode(), err, term)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("kubectl exec -it did not end after exit 3\n%s", term)
		}
	})

	t.Run("exec ends the process when kubectl goes", func(t *testing.T) {
		cmd := kubectlCmd(t, "c1", "exec", "-n", ns, "tools", "--", "sleep", "4242")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sleeping := func(ctx context.Context) (bool, error) {
			// Exactly "sleep 4242": not the shell that looks, whose own
			// command line holds the number too.
			r := kubectl(t, "c1", "exec", "-n", ns, "tools", "--", "sh", "-c",
				`for p in /proc/[0-9]*; do [ "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" = "sleep 4242 " ] && echo "$p"; done; true`)
			return strings.Contains(r.stdout, "/proc/"), nil
		}
		waitFor(t, 30*time.Second, "sleep 4242 running in the container", sleeping)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		waitFor(t, 30*time.Second, "sleep 4242 ended after kubectl was killed", func(ctx context.Context) (bool, error) {
			up, err := sleeping(ctx)
			return !up, err
		})
	})

	t.Run("logs follow", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// --tail=1: the stream begins with the latest line, so what
		// follows it was written while the stream was open.
		c := kubectlCmd(t, "c1", "logs", "-f", "--tail=1", "-n", ns, "logger")
		cmd := withContext(ctx, c)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		// Lines keep arriving on the open stream: the last one read was
		// written after the stream began.
		sc := bufio.NewScanner(out)
		first := -1
		for sc.Scan() {
			n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "line "))
			if err != nil {
				t.Fatalf("logs -f: unexpected line %q", sc.Text())
			}
			if first < 0 {
				first = n
				t.Logf("logs -f began at line %d", n)
				continue
			}
			if n >= first+3 {
				// The logger writes a line a second: line first+3 did not
				// exist when the stream began.
				return
			}
		}
		t.Fatalf("logs -f ended after line %d: %v", first, sc.Err())
	})

	t.Run("logs tail and timestamps", func(t *testing.T) {
		out := mustKubectl(t, "c1", "logs", "-n", ns, "logger", "--tail=2", "--timestamps")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("logs --tail=2: %d lines: %q", len(lines), out)
		}
		for _, l := range lines {
			ts, rest, _ := strings.Cut(l, " ")
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasPrefix(rest, "line ") {
				t.Fatalf("logs --timestamps: line %q: want <RFC 3339 time> line N (%v)", l, err)
			}
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := withContext(ctx, kubectlCmd(t, "c1", "port-forward", "-n", ns, "pod/web", ":8080"))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(out)
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
		var port string
		for port == "" && sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port = m[1]
			}
		}
		if port == "" {
			t.Fatalf("kubectl port-forward printed no local port: %v", sc.Err())
		}
		go func() { _, _ = io.Copy(io.Discard, out) }()
		resp, err := http.Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"pod":"web"`) {
			t.Fatalf("GET through port-forward: %s %s", resp.Status, body)
		}
	})

	t.Run("anonymous request refused", func(t *testing.T) {
		state, err := layout.ReadState()
		if err != nil {
			t.Fatal(err)
		}
		target := state.Clusters[0].Nodes[0].IP.String()
		from := sandbox.NodeNS(state.Clusters[0].Nodes[1].Name)
		for _, path := range []string{"/pods", "/exec/" + ns + "/tools/tools?command=true&stdout=1", "/containerLogs/" + ns + "/logger/log"} {
			out, err := runHost("ip", "netns", "exec", from, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://"+target+":10250"+path)
			if err != nil {
				t.Fatalf("curl %s: %v %s", path, err, out)
			}
			if code := strings.TrimSpace(out); code != "401" && code != "403" {
				t.Errorf("anonymous GET %s on the kubelet port: HTTP %s, want 401 or 403", path, code)
			}
		}
	})
}

// transcript collects what a terminal prints.
type transcript struct {
	mu  sync.Mutex
	buf strings.Builder
}

func newTranscript(r io.Reader) *transcript {
	tr := &transcript{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			tr.mu.Lock()
			tr.buf.Write(b[:n])
			tr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tr
}

func (tr *transcript) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

func (tr *transcript) send(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatalf("write to terminal: %v", err)
	}
}

func (tr *transcript) expect(t *testing.T, re *regexp.Regexp, what string) {
	t.Helper()
	if err := poll(20*time.Second, func(context.Context) (bool, error) { return re.MatchString(tr.String()), nil }); err != nil {
		t.Fatalf("terminal never showed %s (%s):\n%s", what, re, tr)
	}
}
