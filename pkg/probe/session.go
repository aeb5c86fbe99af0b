package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

// DefaultImage is the Strait test workload's image: the repository and tag
// "straitctl join" deploys Strait's components from by default
// (strait/strait-gateway:<version> and so on), the same for strait-testpod.
func DefaultImage(version string) string { return "strait/strait-testpod:" + version }

// TestpodBinary is the workload's program in its image (on the image's PATH).
const TestpodBinary = "strait-testpod"

// Ports the test workload's "serve" listens on by default
// (test/testpod: DefaultHTTPPort, DefaultTCPEchoPort, DefaultUDPEchoPort),
// and the throughput sink the commands ask it for.
const (
	HTTPPort    = 8080
	TCPEchoPort = 9000
	UDPEchoPort = 9001
	SinkPort    = 5201
)

const (
	// container is the one container of every test pod.
	container = "testpod"
	// ManagedByLabel marks the namespaces and pods a Session made.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "straitctl"
	// DefaultPodTimeout bounds the wait for test pods to be Ready: an
	// image pull on a cold node takes a while, a wrong image never ends.
	DefaultPodTimeout = 2 * time.Minute
	// pollInterval is how often pods and namespaces are looked at.
	pollInterval = 250 * time.Millisecond
	// closeTimeout bounds the deletion of the namespaces, which must run
	// even after the command was interrupted.
	closeTimeout = 30 * time.Second
)

// Session is one run's temporary namespace in every cluster and its pods.
type Session struct {
	Clusters  []*Cluster
	Namespace string
	// Image is the test workload's image.
	Image string
	// PodTimeout bounds the wait for pods to be Ready.
	PodTimeout time.Duration
	// Log receives progress lines, printf-style; nil drops them.
	Log func(format string, args ...any)
}

// NewSession creates namespace <prefix>-<5 random letters> in every
// cluster and waits for its default ServiceAccount. On an error it deletes
// what it created.
func NewSession(ctx context.Context, clusters []*Cluster, prefix, image string) (*Session, error) {
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = letters[rand.IntN(len(letters))]
	}
	s := &Session{Clusters: clusters, Namespace: prefix + "-" + string(suffix), Image: image, PodTimeout: DefaultPodTimeout}
	for _, c := range clusters {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.Namespace, Labels: map[string]string{ManagedByLabel: managedBy}}}
		if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: create namespace %s: %w", c.Name(), s.Namespace, err)
		}
	}
	for _, c := range clusters {
		err := wait.PollUntilContextTimeout(ctx, pollInterval, s.PodTimeout, true, func(ctx context.Context) (bool, error) {
			_, err := c.Kube.CoreV1().ServiceAccounts(s.Namespace).Get(ctx, "default", metav1.GetOptions{})
			return err == nil, nil
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: namespace %s has no default service account: %w", c.Name(), s.Namespace, err)
		}
	}
	return s, nil
}

func (s *Session) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log(format, args...)
	}
}

// Close deletes the namespaces, with everything in them, and does not wait
// for them to go. It runs to its end even when the command's context has
// ended.
func (s *Session) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for _, c := range s.Clusters {
		err := c.Kube.CoreV1().Namespaces().Delete(ctx, s.Namespace, metav1.DeleteOptions{})
		if err != nil && !strings.Contains(err.Error(), "not found") {
			s.logf("%s: delete namespace %s: %v (delete it by hand)", c.Name(), s.Namespace, err)
		}
	}
}

// PodSpec is one test pod.
type PodSpec struct {
	Name string
	// Node is the node to run on (spec.nodeName); "" lets the scheduler
	// choose.
	Node string
	// HostNetwork runs the pod in the node's network namespace.
	HostNetwork bool
	// Args are the workload's arguments ("serve", "sleep").
	Args []string
	// Labels are the pod's labels.
	Labels map[string]string
	// Ready is an HTTP port whose /healthz must answer for the pod to be
	// Ready; 0 for none.
	Ready int32
	// Capabilities are Linux capabilities the container adds (NET_ADMIN
	// to read the node's packet filter).
	Capabilities []corev1.Capability
}

// Pod is a running test pod.
type Pod struct {
	Cluster *Cluster
	Name    string
	Node    string
	IP      string
}

func (s *Session) pod(spec PodSpec) *corev1.Pod {
	labels := map[string]string{ManagedByLabel: managedBy}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	env := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	grace := int64(1)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Namespace: s.Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      spec.Node,
			HostNetwork:                   spec.HostNetwork,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:  container,
				Image: s.Image,
				Args:  spec.Args,
				Env: []corev1.EnvVar{env("POD_NAME", "metadata.name"), env("POD_NAMESPACE", "metadata.namespace"),
					env("NODE_NAME", "spec.nodeName"), env("POD_IP", "status.podIP")},
			}},
		},
	}
	if len(spec.Capabilities) > 0 {
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: spec.Capabilities}}
	}
	if spec.Ready != 0 {
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(spec.Ready)}},
			PeriodSeconds: 1,
		}
	}
	return p
}

// StartPods creates the pods of each cluster and waits until all are
// Ready. The pods that started are keyed "<cluster>/<pod>" (Cluster.Name). The error names the first pod that failed and why (an image the
// node cannot pull, a container that exited).
func (s *Session) StartPods(ctx context.Context, pods map[*Cluster][]PodSpec) (map[string]*Pod, error) {
	out := map[string]*Pod{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for c, specs := range pods {
		for _, spec := range specs {
			wg.Go(func() {
				p, err := s.startPod(ctx, c, spec)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				out[c.Name()+"/"+spec.Name] = p
			})
		}
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *Session) startPod(ctx context.Context, c *Cluster, spec PodSpec) (*Pod, error) {
	if _, err := c.Kube.CoreV1().Pods(s.Namespace).Create(ctx, s.pod(spec), metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("%s: create test pod %s: %w", c.Name(), spec.Name, err)
	}
	var last string
	var pod *corev1.Pod
	var badSince time.Time
	err := wait.PollUntilContextTimeout(ctx, pollInterval, s.PodTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.Kube.CoreV1().Pods(s.Namespace).Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		pod = p
		var bad bool
		last, bad, err = podProblem(p)
		switch {
		case err != nil:
			return false, err
		case !bad:
			badSince = time.Time{}
		case badSince.IsZero():
			badSince = time.Now()
		case time.Since(badSince) > badGrace:
			return false, errors.New(last)
		}
		return last == "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: test pod %s/%s (image %s) not ready: %s: %w", c.Name(), s.Namespace, spec.Name, s.Image, last, err)
	}
	return &Pod{Cluster: c, Name: spec.Name, Node: pod.Spec.NodeName, IP: pod.Status.PodIP}, nil
}

// badGrace is how long a pod may stay in a state that usually means a
// wrong image or spec before the wait gives up on it: the kubelet retries
// these, and the first attempt can fail for a passing reason (the Node
// authorizer not having seen the pod yet when its token is asked for).
const badGrace = 20 * time.Second

// podProblem says why a pod is not Ready yet ("" when it is), whether the
// reason usually means it never will be (bad), and returns an error when
// it certainly never will be.
func podProblem(p *corev1.Pod) (problem string, bad bool, err error) {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return "", false, fmt.Errorf("the pod ended (%s): %s", p.Status.Phase, containerState(p))
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "InvalidImageName":
				return "", false, fmt.Errorf("%s: %s", w.Reason, w.Message)
			case "ErrImagePull", "ImagePullBackOff", "RunContainerError", "CreateContainerError", "CrashLoopBackOff":
				return w.Reason + ": " + w.Message, true, nil
			}
		}
	}
	if p.Status.PodIP == "" {
		return "no pod IP yet (" + string(p.Status.Phase) + ")", false, nil
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return "", false, nil
		}
	}
	return "not Ready: " + containerState(p), false, nil
}

func containerState(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			return strings.TrimSpace(cs.State.Waiting.Reason + " " + cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			return fmt.Sprintf("exited %d %s %s", t.ExitCode, t.Reason, t.Message)
		case cs.State.Running != nil:
			return "running"
		}
	}
	return string(p.Status.Phase)
}

// ExecResult is what a command run in a pod printed and how it exited.
type ExecResult struct {
	Stdout, Stderr string
	// ExitCode is the command's exit code.
	ExitCode int
}

// Exec runs argv in the pod's container through the apiserver (the exec
// subresource, over WebSocket with a fall-back to SPDY, as kubectl does).
// A non-zero exit is no error: it is in ExitCode. Errors are the stream's
// (the pod or node unreachable, exec refused).
func (s *Session) Exec(ctx context.Context, p *Pod, argv ...string) (ExecResult, error) {
	var out, errOut bytes.Buffer
	code, err := s.ExecStream(ctx, p, &out, &errOut, argv...)
	return ExecResult{Stdout: out.String(), Stderr: errOut.String(), ExitCode: code}, err
}

// ExecStream is Exec writing the command's output as it comes: for a
// probe that reports while it runs. It returns the exit code.
func (s *Session) ExecStream(ctx context.Context, p *Pod, stdout, stderr io.Writer, argv ...string) (int, error) {
	req := p.Cluster.Kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(s.Namespace).Name(p.Name).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: container, Command: argv, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(p.Cluster.Config, "POST", req.URL())
	if err != nil {
		return 0, err
	}
	ws, err := remotecommand.NewWebSocketExecutor(p.Cluster.Config, "GET", req.URL().String())
	if err != nil {
		return 0, err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return 0, err
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitStatus(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("exec in %s/%s/%s: %w", p.Cluster.ID, s.Namespace, p.Name, err)
	}
	return 0, nil
}

// Testpod runs "strait-testpod <args>" in the pod and decodes the report it
// prints last into report. It returns an error when the run printed no
// report or was a usage error (exit 2), which is a bug here, never a
// network fault; a probe that failed is a report with OK false.
func (s *Session) Testpod(ctx context.Context, p *Pod, report any, args ...string) error {
	r, err := s.Exec(ctx, p, append([]string{TestpodBinary}, args...)...)
	if err != nil {
		return err
	}
	if r.ExitCode == 2 {
		return fmt.Errorf("%s %s: usage error: %s", TestpodBinary, strings.Join(args, " "), strings.TrimSpace(r.Stderr))
	}
	line := lastLine(r.Stdout)
	if err := json.Unmarshal([]byte(line), report); err != nil {
		return fmt.Errorf("%s %s in %s/%s: no report (exit %d): %s%s", TestpodBinary, strings.Join(args, " "), p.Cluster.ID, p.Name,
			r.ExitCode, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// RunTestpod runs the workload once in a pod of its own (spec.Args are the
// workload's: "connect --http ...") until it exits, and decodes the report
// it printed last into report. It is how probes run in host-network pods:
// the command is the pod's, no exec into it is needed. The pod is deleted
// after. Errors: the pod never ran, or printed no report.
func (s *Session) RunTestpod(ctx context.Context, c *Cluster, spec PodSpec, report any) error {
	if _, err := c.Kube.CoreV1().Pods(s.Namespace).Create(ctx, s.pod(spec), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("%s: create test pod %s: %w", c.Name(), spec.Name, err)
	}
	defer func() {
		_ = c.Kube.CoreV1().Pods(s.Namespace).Delete(context.WithoutCancel(ctx), spec.Name, metav1.DeleteOptions{})
	}()
	var last string
	var code int32
	var badSince time.Time
	err := wait.PollUntilContextTimeout(ctx, pollInterval, s.PodTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.Kube.CoreV1().Pods(s.Namespace).Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				code = t.ExitCode
				return true, nil
			}
		}
		var bad bool
		last, bad, _ = podProblem(p)
		switch {
		case !bad:
			badSince = time.Time{}
		case badSince.IsZero():
			badSince = time.Now()
		case time.Since(badSince) > badGrace:
			return false, errors.New(last)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%s: test pod %s/%s (image %s) did not run to its end: %s: %w", c.Name(), s.Namespace, spec.Name, s.Image, last, err)
	}
	raw, err := c.Kube.CoreV1().Pods(s.Namespace).GetLogs(spec.Name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("%s: logs of test pod %s/%s: %w", c.Name(), s.Namespace, spec.Name, err)
	}
	if code == 2 {
		return fmt.Errorf("%s %s: usage error: %s", TestpodBinary, strings.Join(spec.Args, " "), strings.TrimSpace(string(raw)))
	}
	// The log interleaves stdout and stderr: the report is the last line
	// that is JSON.
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") && json.Unmarshal([]byte(lines[i]), report) == nil {
			return nil
		}
	}
	return fmt.Errorf("%s %s in %s/%s: no report (exit %d): %s", TestpodBinary, strings.Join(spec.Args, " "), c.Name(), spec.Name, code, strings.TrimSpace(string(raw)))
}
