package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"strait.dev/strait/test/proc"
)

const (
	// Restart back-off doubles from backoffBase up to backoffMax; shorter than
	// the kubelet's (10 s to 5 min) so that tests of crash loops stay short.
	backoffBase = time.Second
	backoffMax  = 30 * time.Second
	// resyncPeriod is how often a pod worker looks again without an event.
	resyncPeriod = time.Second
)

// containerState is what the agent knows of one container.
type containerState struct {
	spec      corev1.Container
	cmd       *exec.Cmd
	exited    chan struct{}
	running   bool
	startedAt metav1.Time
	restarts  int32
	lastExit  *corev1.ContainerStateTerminated
	waiting   *corev1.ContainerStateWaiting
	nextStart time.Time
	backoff   time.Duration
	ready     bool
	probes    map[string]*probeState // by kind: "readiness", "liveness"
	done      bool                   // will not be restarted
	// init marks an init container; sidecar an init container with
	// restartPolicy Always (a native sidecar, KEP-753), which keeps running
	// beside the app containers.
	init, sidecar bool
	// stopping: the agent is stopping it for good (a sidecar once the app
	// containers finished), so its exit is final.
	stopping bool
	// oci is the container under crun (the OCI runtime), nil for a host
	// process; pid its process, which crun started.
	oci *ociContainer
	pid int
}

// restartPolicy is the container's effective restart policy: a sidecar's
// own (Always); for other init containers the pod's, with Always meaning
// OnFailure, since an init container that succeeded is finished; for app
// containers the pod's.
func (c *containerState) restartPolicy(pod corev1.RestartPolicy) corev1.RestartPolicy {
	if pod == "" {
		pod = corev1.RestartPolicyAlways
	}
	switch {
	case c.sidecar:
		return corev1.RestartPolicyAlways
	case c.init && pod == corev1.RestartPolicyAlways:
		return corev1.RestartPolicyOnFailure
	}
	return pod
}

// succeeded: the container finished with exit code 0 and stays finished.
func (c *containerState) succeeded() bool {
	return c.done && c.lastExit != nil && c.lastExit.ExitCode == 0
}

// initStep says where a pod's initialisation stands, given its init
// containers in order: each regular one must succeed before the next starts,
// and a sidecar must have started. next is the index of the init container
// to run (or wait for), initialized that all are through, failed that a
// regular one failed for good (restartPolicy Never), which fails the pod.
func initStep(inits []*containerState) (next int, initialized, failed bool) {
	for i, c := range inits {
		switch {
		case c.sidecar:
			if c.startedAt.IsZero() {
				return i, false, false
			}
		case c.succeeded():
		case c.done:
			return i, false, true
		default:
			return i, false, false
		}
	}
	return len(inits), true, false
}

// RuntimeInfo is written per pod for "strait-sandbox exec" and "logs".
type RuntimeInfo struct {
	UID         string         `json:"uid"`
	HostNetwork bool           `json:"hostNetwork"`
	SandboxPID  int            `json:"sandboxPID,omitempty"`
	Containers  map[string]int `json:"containers"` // name -> PID while running
	LogDir      string         `json:"logDir"`
	// OCIContainers names crun's container of each container that runs
	// under the OCI runtime (name -> crun ID), OCIRoot crun's state
	// directory (crun --root): "kubectl exec" runs crun exec in them.
	OCIContainers map[string]string `json:"ociContainers,omitempty"`
	OCIRoot       string            `json:"ociRoot,omitempty"`
}

type podWorker struct {
	a    *Agent
	uid  string
	dir  string
	poke chan struct{}
	stop chan struct{} // closed on agent shutdown

	mu       sync.Mutex
	pod      *corev1.Pod
	deleted  bool
	stopOnce sync.Once

	// Owned by the run goroutine.
	sandbox    *podSandbox
	volumes    map[string]string
	volumesAt  time.Time         // when the volumes were last written
	volumeErrs map[string]string // the last refresh error of each volume, logged once
	tokens     tokenCache
	etc        *etcFiles // the pod's resolv.conf, hosts and hostname
	inits      []*containerState
	containers []*containerState
	lastStatus *corev1.PodStatus
	setupErr   string
}

func newPodWorker(a *Agent, pod *corev1.Pod) *podWorker {
	return &podWorker{
		a:    a,
		uid:  string(pod.UID),
		dir:  filepath.Join(a.cfg.Dir, "pods", pod.Namespace+"_"+pod.Name),
		poke: make(chan struct{}, 1),
		stop: make(chan struct{}),
		pod:  pod,
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	w.wake()
}

// gone is called when the pod object is deleted from the apiserver.
func (w *podWorker) gone() {
	w.mu.Lock()
	w.deleted = true
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) shutdown() { w.stopOnce.Do(func() { close(w.stop) }) }

func (w *podWorker) wake() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *podWorker) current() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.DeepCopy(), w.deleted
}

func (w *podWorker) run(ctx context.Context) {
	log := w.a.log.With("pod", w.pod.Namespace+"/"+w.pod.Name)
	for {
		pod, deleted := w.current()
		if deleted || pod.DeletionTimestamp != nil {
			grace := w.a.cfg.StopGrace
			if pod.DeletionGracePeriodSeconds != nil {
				grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
			}
			w.teardown(grace)
			if !deleted {
				w.finalDelete(pod, log)
			}
			log.Info("pod removed")
			return
		}
		w.sync(ctx, pod)
		select {
		case <-w.stop:
			w.teardown(w.a.cfg.StopGrace)
			return
		case <-w.poke:
		case <-time.After(resyncPeriod):
		}
	}
}

// finalDelete is the kubelet's last word on a pod it has stopped: delete it at
// once, for this very pod (a UID precondition). Until that delete goes
// through, the pod stays Terminating and so does its namespace, and no
// later event would bring the worker back: it retries with back-off until it
// succeeds, the pod is gone, or the agent stops.
func (w *podWorker) finalDelete(pod *corev1.Pod, log *slog.Logger) {
	delay := backoffBase
	for {
		err := w.a.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name,
			metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0)), Preconditions: metav1.NewUIDPreconditions(w.uid)})
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return
		}
		log.Warn("final delete; retrying", "err", err, "after", delay)
		select {
		case <-w.stop:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, backoffMax)
	}
}

func (w *podWorker) sync(ctx context.Context, pod *corev1.Pod) {
	if w.containers == nil {
		for _, c := range pod.Spec.InitContainers {
			sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
			w.inits = append(w.inits, &containerState{spec: c, init: true, sidecar: sidecar})
		}
		for _, c := range pod.Spec.Containers {
			w.containers = append(w.containers, &containerState{spec: c})
		}
		if err := w.claimDir(); err != nil {
			w.setupErr = err.Error()
		}
	}
	if w.setupErr == "" && w.volumes == nil {
		vols, err := w.a.prepareVolumes(ctx, pod, w.dir, &w.tokens)
		if err != nil {
			w.setupErr = err.Error()
			w.a.log.Warn("volumes", "pod", pod.Name, "err", err)
		} else {
			w.volumes, w.volumesAt = vols, time.Now()
		}
	} else if w.volumes != nil && time.Since(w.volumesAt) >= volumeRefreshPeriod {
		w.refreshVolumes(ctx, pod)
	}
	if w.setupErr == "" && w.sandbox == nil && !pod.Spec.HostNetwork {
		sb, err := w.a.createSandbox(w.uid, kernelHostname(pod, w.a.cfg.ClusterDomain))
		if err != nil {
			w.setupErr = err.Error()
			w.a.log.Warn("pod sandbox", "pod", pod.Name, "err", err)
		} else {
			w.sandbox = sb
		}
	}
	if w.setupErr == "" && w.etc == nil {
		w.fillIPs(pod)
		etc, err := w.a.writeEtcFiles(pod, podIPs(pod), w.dir)
		if err != nil {
			w.setupErr = err.Error()
			w.a.log.Warn("pod /etc files", "pod", pod.Name, "err", err)
		} else {
			w.etc = &etc
		}
	}
	if w.setupErr != "" {
		// Try again on the next round; the error shows in the status meanwhile.
		w.volumes = nil
		w.pushStatus(ctx, pod)
		w.setupErr = ""
		return
	}
	w.reap()
	startable := func(c *containerState) bool {
		return !c.running && !c.done && !time.Now().Before(c.nextStart)
	}
	next, initialized, failed := initStep(w.inits)
	for i, c := range w.inits {
		// Sidecars before next keep running (restarted as needed); next
		// itself starts when it is its turn.
		if !failed && i <= next && (c.sidecar || i == next) && startable(c) {
			w.start(ctx, pod, c)
		}
	}
	if initialized {
		for _, c := range w.containers {
			if startable(c) {
				w.start(ctx, pod, c)
			}
		}
	}
	if failed || initialized && len(w.containers) > 0 && allDone(w.containers) {
		// The pod is finished: its sidecars go too, as the kubelet ends them.
		w.stopSidecars(podGrace(pod))
	}
	w.probe()
	w.writeRuntime(pod)
	w.pushStatus(ctx, pod)
}

// refreshVolumes writes the pod's volumes again from their objects, as the
// kubelet keeps them current, and logs what changed and, once per new error,
// what could not be read (the volume keeps its contents meanwhile).
func (w *podWorker) refreshVolumes(ctx context.Context, pod *corev1.Pod) {
	changed, errs := w.a.refreshVolumes(ctx, pod, w.dir, &w.tokens)
	w.volumesAt = time.Now()
	for _, v := range changed {
		w.a.log.Info("volume updated", "pod", pod.Name, "volume", v)
	}
	for v, err := range errs {
		if w.volumeErrs[v] != err.Error() {
			w.a.log.Warn("volume refresh; keeping its contents", "pod", pod.Name, "volume", v, "err", err)
		}
	}
	w.volumeErrs = map[string]string{}
	for v, err := range errs {
		w.volumeErrs[v] = err.Error()
	}
}

// allDone reports whether none of cs will run again.
func allDone(cs []*containerState) bool {
	for _, c := range cs {
		if !c.done {
			return false
		}
	}
	return true
}

// stopSidecars ends the pod's sidecars for good, in the background: their
// exits are then final.
func (w *podWorker) stopSidecars(grace time.Duration) {
	for _, c := range w.inits {
		if !c.sidecar || c.done || c.stopping {
			continue
		}
		if !c.running {
			c.done = true
			continue
		}
		c.stopping = true
		go w.stopContainer(c, grace)
	}
}

// podGrace is the pod's terminationGracePeriodSeconds: what the kubelet
// gives its containers between SIGTERM and SIGKILL when the pod ends
// (30 s, the API default, when unset).
func podGrace(pod *corev1.Pod) time.Duration {
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return 30 * time.Second
}

// all returns the pod's containers, init containers first.
func (w *podWorker) all() []*containerState {
	return append(append([]*containerState(nil), w.inits...), w.containers...)
}

// fillIPs writes the pod's addresses into pod.Status, for the downward API
// and /etc/hosts, before the status carries them.
func (w *podWorker) fillIPs(pod *corev1.Pod) {
	ips := w.a.cfg.nodeIPs()
	if w.sandbox != nil {
		ips = w.sandbox.ips
	}
	pod.Status.PodIP, pod.Status.PodIPs = ips[0].String(), podIPList(ips)
	pod.Status.HostIP, pod.Status.HostIPs = w.a.cfg.NodeIP.String(), hostIPList(w.a.cfg.nodeIPs())
}

// podIPList is status.podIPs of addresses ips, primary first.
func podIPList(ips []netip.Addr) []corev1.PodIP {
	out := make([]corev1.PodIP, len(ips))
	for i, ip := range ips {
		out[i] = corev1.PodIP{IP: ip.String()}
	}
	return out
}

// hostIPList is status.hostIPs of the node's addresses ips, primary first.
func hostIPList(ips []netip.Addr) []corev1.HostIP {
	out := make([]corev1.HostIP, len(ips))
	for i, ip := range ips {
		out[i] = corev1.HostIP{IP: ip.String()}
	}
	return out
}

// podIPs lists pod.Status.PodIPs.
func podIPs(pod *corev1.Pod) []string {
	var ips []string
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	return ips
}

// containerCommand works out what a container runs: the image's program
// directory (realised under the node's images directory), the file to
// execute, argv (argv[0] as written, $(VAR) references expanded from env)
// and the PATH. The error's reason is ErrImagePull for an image the sandbox
// does not know, RunContainerError for a command the image lacks.
func (w *podWorker) containerCommand(c *corev1.Container, env func(path string) ([]string, error)) (binary string, argv, envv []string, reason string, err error) {
	img, err := lookupImage(w.a.cfg, c.Image)
	if err != nil {
		return "", nil, nil, "ErrImagePull", err
	}
	binDir, err := img.realise(w.a.imageDir(), w.a.cfg.SandboxExecutable)
	if err != nil {
		return "", nil, nil, "ErrImagePull", err
	}
	if envv, err = env(img.PATH(binDir)); err != nil {
		return "", nil, nil, "CreateContainerConfigError", err
	}
	if argv, err = containerArgv(img, c.Command, c.Args); err != nil {
		return "", nil, nil, "RunContainerError", err
	}
	for i := range argv {
		argv[i] = expand(argv[i], envv)
	}
	if binary, err = img.resolve(binDir, argv[0]); err != nil {
		return "", nil, nil, "RunContainerError", err
	}
	return binary, argv, envv, "", nil
}

func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, c *containerState) {
	w.fillIPs(pod)
	c.oci, c.pid = nil, 0
	if w.a.oci != nil {
		if archive := w.a.oci.archive(c.spec.Image); archive != "" {
			w.startOCI(ctx, pod, c, archive)
			return
		}
	}
	binary, argv, env, reason, err := w.containerCommand(&c.spec, func(path string) ([]string, error) {
		return w.a.containerEnv(ctx, pod, &c.spec, path)
	})
	if err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		if reason == "CreateContainerConfigError" {
			c.nextStart = time.Now().Add(backoffBase)
		} else {
			c.nextStart = time.Now().Add(backoffMax)
		}
		return
	}
	spec := ContainerSpec{Binary: binary, Args: argv, Env: env, WorkingDir: c.spec.WorkingDir, CreatedPathsFile: w.a.cfg.CreatedPathsFile}
	if spec.Mounts, err = w.containerMounts(&c.spec); err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		return
	}
	// The helper inherits the pipe's write end as fd 3 (ExtraFiles[0]).
	startedR, startedW, err := os.Pipe()
	if err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		return
	}
	defer startedR.Close()
	spec.StartedFD = 3
	specPath := filepath.Join(w.dir, c.spec.Name+".spec.json")
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		return
	}
	logFile, err := openContainerLog(w.dir, c.spec.Name, logAttempt(c))
	if err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		return
	}
	var cmd *exec.Cmd
	if w.sandbox != nil {
		cmd = exec.Command("nsenter", "--target", strconv.Itoa(w.sandbox.pause.Process.Pid), "--net", "--uts", "--",
			w.a.cfg.SandboxExecutable, "container-exec", "--spec", specPath)
	} else {
		cmd = exec.Command(w.a.cfg.SandboxExecutable, "container-exec", "--spec", specPath)
	}
	cmd.Stdout, cmd.Stderr = logFile.Stdout, logFile.Stderr
	cmd.Env = []string{w.a.cfg.MarkerEnv}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	cmd.ExtraFiles = []*os.File{startedW}
	err = proc.Start(cmd)
	startedW.Close()
	if err == nil {
		waitExec(startedR, execWait)
	}
	logFile.Started()
	if err != nil {
		logFile.Finished()
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		c.nextStart = time.Now().Add(backoffBase)
		return
	}
	c.cmd, c.exited, c.running, c.waiting = cmd, make(chan struct{}), true, nil
	c.startedAt = metav1.Now()
	c.ready = false
	if c.lastExit != nil {
		c.restarts++
	}
	// Probes first run one period after the start, as the kubelet's do.
	c.probes = map[string]*probeState{"readiness": {last: time.Now()}, "liveness": {last: time.Now()}}
	go func(c *containerState, cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		logFile.Finished()
		close(exited)
		w.wake()
	}(c, cmd, c.exited)
	w.a.log.Info("container started", "pod", pod.Name, "container", c.spec.Name, "pid", cmd.Process.Pid)
}

// containerMounts are the bind mounts of container c: the pod's /etc files
// (resolv.conf, hosts, hostname), then its volume mounts.
func (w *podWorker) containerMounts(c *corev1.Container) ([]Mount, error) {
	var mounts []Mount
	if w.etc != nil {
		mounts = w.etc.mounts(c)
	}
	for _, m := range c.VolumeMounts {
		src, ok := w.volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %s: no volume of that name", m.Name)
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
		}
		mounts = append(mounts, Mount{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return mounts, nil
}

// execWait bounds how long start waits for a container's helper to exec
// the container's program (its mounts come first: a few milliseconds).
const execWait = 10 * time.Second

// waitExec waits until the write end of started is closed in every
// process that held it: the container-exec helper closes it by exec'ing the
// container's program or by exiting. Only then is the process the
// container, with its environment and mounts, for exec and logs to enter;
// a CRI runtime's StartContainer returns at the same point. After timeout it
// gives up waiting (a helper stuck in a mount), and the container counts as
// started as before.
func waitExec(started *os.File, timeout time.Duration) {
	_ = started.SetReadDeadline(time.Now().Add(timeout))
	_, _ = io.Copy(io.Discard, started)
}

// reap records containers that exited and plans their restarts.
func (w *podWorker) reap() {
	pod, _ := w.current()
	for _, c := range w.all() {
		if !c.running {
			continue
		}
		select {
		case <-c.exited:
		default:
			continue
		}
		c.running, c.ready = false, false
		code := int32(c.cmd.ProcessState.ExitCode())
		reason := "Completed"
		if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int32(ws.Signal())
			reason = "Error"
		} else if code != 0 {
			reason = "Error"
		}
		c.lastExit = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: c.startedAt, FinishedAt: metav1.Now()}
		restart := false
		switch c.restartPolicy(pod.Spec.RestartPolicy) {
		case corev1.RestartPolicyAlways:
			restart = true
		case corev1.RestartPolicyOnFailure:
			restart = code != 0
		}
		if !restart || c.stopping {
			c.done = true
			continue
		}
		// Back off unless the container ran long enough to count as healthy.
		if time.Since(c.startedAt.Time) > 2*backoffMax {
			c.backoff = 0
		}
		if c.backoff == 0 {
			c.backoff = backoffBase
		} else {
			c.backoff = min(2*c.backoff, backoffMax)
		}
		c.nextStart = time.Now().Add(c.backoff)
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: fmt.Sprintf("back-off %s restarting failed container %s", c.backoff, c.spec.Name)}
	}
}

// probe runs due readiness and liveness probes (from the node, as the kubelet
// does) and kills containers whose liveness fails.
func (w *podWorker) probe() {
	ip := w.a.cfg.NodeIP.String()
	if w.sandbox != nil {
		ip = w.sandbox.ip.String()
	}
	for _, c := range w.all() {
		if !c.running || (c.init && !c.sidecar) {
			continue
		}
		if c.spec.ReadinessProbe == nil {
			c.ready = true
		} else if ok, due := w.runProbe(c, "readiness", c.spec.ReadinessProbe, ip); due {
			c.ready = ok
		}
		if c.spec.LivenessProbe != nil {
			if ok, due := w.runProbe(c, "liveness", c.spec.LivenessProbe, ip); due && !ok {
				w.a.log.Info("liveness probe failed; killing container", "container", c.spec.Name)
				w.killContainer(c)
			}
		}
	}
}

// probeState counts one probe's consecutive outcomes.
type probeState struct {
	last             time.Time
	passes, failures int32
}

// runProbe runs a probe if its period has come and reports the outcome once
// the success or failure threshold is met (due=false: keep the last outcome).
// A readiness probe's failure counts at once: an unready pod leaves its
// Service's endpoints promptly.
func (w *podWorker) runProbe(c *containerState, kind string, p *corev1.Probe, ip string) (ok, due bool) {
	if time.Since(c.startedAt.Time) < time.Duration(p.InitialDelaySeconds)*time.Second {
		return false, kind == "readiness"
	}
	st := c.probes[kind]
	if time.Since(st.last) < time.Duration(max(p.PeriodSeconds, 1))*time.Second {
		return false, false
	}
	st.last = time.Now()
	if err := probeOnce(p, ip, time.Duration(max(p.TimeoutSeconds, 1))*time.Second); err == nil {
		st.failures = 0
		st.passes++
		met := st.passes >= max(p.SuccessThreshold, 1)
		return met, met
	}
	st.passes = 0
	st.failures++
	return false, st.failures >= max(p.FailureThreshold, 1) || kind == "readiness"
}

func probeOnce(p *corev1.Probe, ip string, timeout time.Duration) error {
	port := func(v intstr.IntOrString) string { return v.String() }
	switch {
	case p.HTTPGet != nil:
		host := ip
		if p.HTTPGet.Host != "" {
			host = p.HTTPGet.Host
		}
		scheme := strings.ToLower(string(p.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, port(p.HTTPGet.Port)), p.HTTPGet.Path)
		client := &http.Client{Timeout: timeout}
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe %s: status %d", url, resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port(p.TCPSocket.Port)), timeout)
		if err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("only httpGet and tcpSocket probes run in the sandbox")
}

// teardown stops every container (SIGTERM, then SIGKILL after grace) and the
// pod's sandbox.
//
// App containers stop first, then init containers (sidecars), as the kubelet
// ends sidecars after the containers they serve; a container that ignores
// SIGTERM is killed when the grace period is over, and the sidecars get
// what is left of it (at least a second, unless the grace period is shorter).
func (w *podWorker) teardown(grace time.Duration) {
	deadline, floor := time.Now().Add(grace), min(grace, time.Second)
	for _, group := range [][]*containerState{w.containers, w.inits} {
		var wg sync.WaitGroup
		for _, c := range group {
			if c.running {
				wg.Add(1)
				go func(c *containerState, grace time.Duration) {
					defer wg.Done()
					w.stopContainer(c, grace)
				}(c, max(time.Until(deadline), floor))
				c.running = false
			}
		}
		wg.Wait()
	}
	if w.sandbox != nil {
		w.a.destroySandbox(w.sandbox)
		w.sandbox = nil
	}
	_ = os.Remove(filepath.Join(w.dir, "runtime.json"))
}

func (w *podWorker) writeRuntime(pod *corev1.Pod) {
	info := RuntimeInfo{UID: w.uid, HostNetwork: pod.Spec.HostNetwork, Containers: map[string]int{}, LogDir: w.dir}
	if w.sandbox != nil {
		info.SandboxPID = w.sandbox.pause.Process.Pid
	}
	for _, c := range w.all() {
		if c.running {
			info.Containers[c.spec.Name] = c.containerPID()
			if c.oci != nil {
				if info.OCIContainers == nil {
					info.OCIContainers, info.OCIRoot = map[string]string{}, w.a.oci.Root
				}
				info.OCIContainers[c.spec.Name] = c.oci.ID
			}
		}
	}
	data, _ := json.Marshal(info)
	tmp := filepath.Join(w.dir, "runtime.json.tmp")
	if os.WriteFile(tmp, data, 0o644) == nil {
		_ = os.Rename(tmp, filepath.Join(w.dir, "runtime.json"))
	}
}

// pushStatus computes the pod's status and writes it when it changed, or
// when the apiserver's copy no longer says what the agent last wrote. The
// second is the kubelet status manager's reconcile: the node lifecycle
// controller marks every pod of a node it lost NotReady
// (MarkPodsNotReady), and only the kubelet sets them Ready again. Without
// it a pod stayed NotReady for good after its node's Lease lapsed once (an
// apiserver frozen past the grace period), and so did its Service.
func (w *podWorker) pushStatus(ctx context.Context, pod *corev1.Pod) {
	st := w.status(pod)
	if w.lastStatus != nil && reflect.DeepEqual(stripTimes(*w.lastStatus), stripTimes(st)) && !drifted(pod.Status, st) {
		return
	}
	pod.Status = st
	if _, err := w.a.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			w.a.log.Warn("update pod status", "pod", pod.Name, "err", err)
		}
		return
	}
	w.lastStatus = &st
}

func (w *podWorker) status(pod *corev1.Pod) corev1.PodStatus {
	now := metav1.Now()
	st := corev1.PodStatus{
		HostIP:    w.a.cfg.NodeIP.String(),
		HostIPs:   hostIPList(w.a.cfg.nodeIPs()),
		StartTime: pod.Status.StartTime,
		// The apiserver sets the QoS class from the resources at creation
		// and refuses a status that changes it.
		QOSClass: pod.Status.QOSClass,
	}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	if w.sandbox != nil {
		st.PodIP, st.PodIPs = w.sandbox.ip.String(), podIPList(w.sandbox.ips)
	} else if pod.Spec.HostNetwork {
		st.PodIP, st.PodIPs = w.a.cfg.NodeIP.String(), podIPList(w.a.cfg.nodeIPs())
	}
	_, initialized, initFailed := initStep(w.inits)
	allReady, running, succeeded, failed := true, 0, 0, 0
	for _, c := range w.inits {
		cs := w.containerStatus(c, !initialized)
		if c.sidecar {
			allReady = allReady && cs.Ready
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
	}
	for _, c := range w.containers {
		cs := w.containerStatus(c, !initialized)
		switch {
		case c.running:
			running++
		case c.done && c.lastExit != nil && c.lastExit.ExitCode == 0:
			succeeded++
		case c.done && c.lastExit != nil:
			failed++
		}
		allReady = allReady && cs.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	n := len(w.containers)
	switch {
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initialized:
		st.Phase = corev1.PodPending
	case succeeded == n:
		st.Phase = corev1.PodSucceeded
	case failed > 0 && running == 0 && failed+succeeded == n:
		st.Phase = corev1.PodFailed
	case running > 0 || failed+succeeded > 0 && running+failed+succeeded == n:
		st.Phase = corev1.PodRunning
	default:
		st.Phase = corev1.PodPending
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		c := corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now}
		for _, old := range pod.Status.Conditions {
			if old.Type == t && old.Status == s {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		return c
	}
	ready := allReady && st.Phase == corev1.PodRunning
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodScheduled, true),
		cond(corev1.PodReadyToStartContainers, w.sandbox != nil || pod.Spec.HostNetwork),
		cond(corev1.PodInitialized, initialized),
		cond(corev1.ContainersReady, ready),
		cond(corev1.PodReady, ready),
	}
	return st
}

// containerStatus is one container's status. A container that has not run
// yet waits in PodInitializing while the pod initialises; a regular init
// container is ready once it has succeeded.
func (w *podWorker) containerStatus(c *containerState, initializing bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: "strait-sandbox://" + c.spec.Image,
		RestartCount: c.restarts, Ready: c.running && c.ready, Started: ptr.To(c.running),
		LastTerminationState: corev1.ContainerState{},
	}
	switch {
	case c.running:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
		cs.ContainerID = fmt.Sprintf("strait-sandbox://%d", c.cmd.Process.Pid)
		if c.oci != nil {
			cs.ContainerID = "crun://" + c.oci.ID
			cs.ImageID = c.oci.Image.Digest.String()
		}
	case c.done && c.lastExit != nil:
		cs.State.Terminated = c.lastExit
	case c.waiting != nil:
		cs.State.Waiting = c.waiting
	case initializing:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	if c.init && !c.sidecar {
		cs.Ready = c.succeeded()
	}
	if w.setupErr != "" && !c.running {
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: w.setupErr}}
	}
	if c.lastExit != nil && !c.done {
		cs.LastTerminationState.Terminated = c.lastExit
	}
	return cs
}

// stripTimes drops timestamps, so that status is written on change only.
// drifted reports whether the apiserver's status (got) differs from the
// agent's (want) in what the agent owns: the phase and the status of each
// condition it sets. Fields other writers own (a foreign condition, the
// QoS class) do not count, so they cannot make the agent write each resync.
func drifted(got, want corev1.PodStatus) bool {
	if got.Phase != want.Phase {
		return true
	}
	for _, c := range want.Conditions {
		i := slices.IndexFunc(got.Conditions, func(g corev1.PodCondition) bool { return g.Type == c.Type })
		if i < 0 || got.Conditions[i].Status != c.Status {
			return true
		}
	}
	return false
}

func stripTimes(st corev1.PodStatus) corev1.PodStatus {
	st = *st.DeepCopy()
	st.StartTime = nil
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	return st
}

// imageDir is where images are realised: cfg.ImageDir, or Dir/images.
func (a *Agent) imageDir() string {
	if a.cfg.ImageDir != "" {
		return a.cfg.ImageDir
	}
	return filepath.Join(a.cfg.Dir, "images")
}

// claimDir makes the pod's directory, <Dir>/pods/<namespace>_<name>, its
// own. The directory is named after the pod, as "strait-sandbox exec" and
// "logs" find it, so a pod of the same name made again (a StatefulSet's
// web-0) lands in its predecessor's: the predecessor's logs, volumes and
// files go first, or the new pod's "kubectl logs" would show the old
// pod's output. The file "uid" records the owner.
func (w *podWorker) claimDir() error {
	uidFile := filepath.Join(w.dir, "uid")
	if old, err := os.ReadFile(uidFile); err == nil && string(old) != w.uid {
		if err := os.RemoveAll(w.dir); err != nil {
			return fmt.Errorf("remove the directory of an earlier pod of the same name: %w", err)
		}
	}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(uidFile, []byte(w.uid), 0o644)
}
