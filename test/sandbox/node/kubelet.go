package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// KubeletPort is the port of the kubelet API (the kubelet's --port default),
// which the apiserver calls for exec, attach, port-forward and logs.
const KubeletPort = 10250

// Authorizer decides whether a user may make a kubelet API request.
type Authorizer interface {
	// Authorize answers for the given attributes (user, groups and a
	// resource attribute on the node); err means no decision was made.
	Authorize(ctx context.Context, spec authorizationv1.SubjectAccessReviewSpec) (allowed bool, reason string, err error)
}

var _ Authorizer = SARAuthorizer{}

// SARAuthorizer asks the apiserver with a SubjectAccessReview, as the
// kubelet's Webhook authorization mode does. A node's credentials may create
// SubjectAccessReviews (RBAC's system:node role has that for this purpose).
type SARAuthorizer struct{ Client kubernetes.Interface }

// Authorize implements Authorizer.
func (s SARAuthorizer) Authorize(ctx context.Context, spec authorizationv1.SubjectAccessReviewSpec) (bool, string, error) {
	sar, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx,
		&authorizationv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return false, "", err
	}
	return sar.Status.Allowed && !sar.Status.Denied, sar.Status.Reason, nil
}

// KubeletServer serves the part of the kubelet API that kubectl reaches
// through the apiserver: exec, port-forward and container logs, plus
// /healthz and /pods.
type KubeletServer struct {
	// NodeName names the Node authorization is asked about.
	NodeName string
	// PodsDir holds a directory <namespace>_<name> per pod with the pod's
	// runtime.json and logs (the agent's <Dir>/pods).
	PodsDir    string
	Authorizer Authorizer
	Log        *slog.Logger
	// MarkerEnv (KEY=VALUE) is added to the environment of exec'd commands,
	// as to every process of the agent.
	MarkerEnv string
	// IdleTimeout closes a streaming connection without traffic for that
	// long (the kubelet's --streaming-connection-idle-timeout, default 4 h).
	IdleTimeout time.Duration
}

// TLSConfig is the kubelet API's TLS configuration: the serving certificate
// and client certificates verified against clientCAFile when given (an
// anonymous client gets 401 from the handler, as with the kubelet's
// --anonymous-auth=false).
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kubelet serving certificate: %w", err)
	}
	caPEM, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("kubelet client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("kubelet client CA %s: no certificate", clientCAFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: exec and port-forward upgrade the connection.
		NextProtos: []string{"http/1.1"},
	}, nil
}

// Handler is the kubelet API, behind authentication and authorization.
func (s *KubeletServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /pods", s.servePods)
	for _, p := range []string{"/exec/{namespace}/{pod}/{container}", "/exec/{namespace}/{pod}/{uid}/{container}"} {
		mux.HandleFunc("GET "+p, s.serveExec)
		mux.HandleFunc("POST "+p, s.serveExec)
	}
	for _, p := range []string{"/portForward/{namespace}/{pod}", "/portForward/{namespace}/{pod}/{uid}"} {
		mux.HandleFunc("GET "+p, s.servePortForward)
		mux.HandleFunc("POST "+p, s.servePortForward)
	}
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.serveContainerLogs)
	return s.authFilter(mux)
}

// kubeletSubresources maps a request path to the subresources of nodes
// its authorization is asked for, in that order, as the kubelet 1.37 maps
// them (fine-grained authorization, KEP 2862, GA and always on there): pods,
// healthz and configz are asked first and, when denied, proxy (which covered
// them before, so that clients allowed proxy keep working); stats, metrics,
// log (node logs), checkpoint, statusz and flagz (as configz) are asked on
// their own only; everything else (exec, attach, portForward,
// containerLogs, run) is proxy.
func kubeletSubresources(path string) []string {
	for _, r := range kubeletPathSubresources {
		for _, prefix := range r.prefixes {
			if path == prefix || strings.HasPrefix(path, prefix+"/") {
				return r.subs
			}
		}
	}
	return []string{"proxy"}
}

// kubeletPathSubresources is kubeletSubresources' table: path prefixes and
// the subresources asked for them, in order.
var kubeletPathSubresources = []struct{ prefixes, subs []string }{
	{[]string{"/pods", "/allocatedPods", "/runningpods"}, []string{"pods", "proxy"}},
	{[]string{"/healthz"}, []string{"healthz", "proxy"}},
	{[]string{"/configz"}, []string{"configz", "proxy"}},
	{[]string{"/stats"}, []string{"stats"}},
	{[]string{"/metrics"}, []string{"metrics"}},
	{[]string{"/logs"}, []string{"log"}},
	{[]string{"/checkpoint"}, []string{"checkpoint"}},
	{[]string{"/statusz"}, []string{"statusz"}},
	{[]string{"/flagz"}, []string{"configz"}},
}

// kubeletVerb maps an HTTP method to an authorization verb as the kubelet
// does; other methods get none and are refused.
func kubeletVerb(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return ""
}

// authFilter authenticates the client by its verified certificate (CN the
// user, O the groups, as Kubernetes' x509 authenticator reads them, plus
// system:authenticated) and authorizes the request on the node, trying each
// of kubeletSubresources in turn until one is allowed: 401 without a
// verified certificate, 403 when all are denied, 500 when one could not be
// decided.
func (s *KubeletServer) authFilter(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		user := leaf.Subject.CommonName
		groups := append(append([]string(nil), leaf.Subject.Organization...), "system:authenticated")
		verb, subs := kubeletVerb(r.Method), kubeletSubresources(r.URL.Path)
		allowed, reason := false, ""
		ask := subs
		if verb == "" {
			ask = nil // a method the kubelet has no verb for is refused
		}
		for _, sub := range ask {
			var err error
			allowed, reason, err = s.Authorizer.Authorize(r.Context(), authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: verb, Group: "", Version: "v1", Resource: "nodes", Subresource: sub, Name: s.NodeName,
				},
			})
			if err != nil {
				s.log().Warn("kubelet API authorization", "user", user, "verb", verb, "subresource", sub, "err", err)
				http.Error(w, fmt.Sprintf("Authorization error (user=%s, verb=%s, resource=nodes, subresource=%s)", user, verb, sub), http.StatusInternalServerError)
				return
			}
			if allowed {
				break
			}
		}
		if !allowed {
			msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource(s)=%v)", user, verb, subs)
			if reason != "" {
				msg += ": " + reason
			}
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *KubeletServer) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// podRuntime reads a pod's runtime record; uid, when given, must match.
func (s *KubeletServer) podRuntime(namespace, pod, uid string) (string, *RuntimeInfo, error) {
	if namespace == "" || pod == "" || strings.ContainsAny(namespace+pod, "/\x00") || namespace == ".." || pod == ".." {
		return "", nil, fmt.Errorf("pod %s/%s: %w", namespace, pod, os.ErrNotExist)
	}
	dir := filepath.Join(s.PodsDir, namespace+"_"+pod)
	data, err := os.ReadFile(filepath.Join(dir, "runtime.json"))
	if err != nil {
		return dir, nil, fmt.Errorf("pod %s/%s is not running on node %s: %w", namespace, pod, s.NodeName, os.ErrNotExist)
	}
	var info RuntimeInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return dir, nil, fmt.Errorf("pod %s/%s runtime record: %w", namespace, pod, err)
	}
	if uid != "" && info.UID != uid {
		return dir, nil, fmt.Errorf("pod %s/%s with UID %s is not running on node %s: %w", namespace, pod, uid, s.NodeName, os.ErrNotExist)
	}
	return dir, &info, nil
}

// containerPID is the PID of a running container of the pod.
func (s *KubeletServer) containerPID(namespace, pod, uid, container string) (int, error) {
	_, info, err := s.podRuntime(namespace, pod, uid)
	if err != nil {
		return 0, err
	}
	pid := info.Containers[container]
	if pid <= 0 || !pidAlive(pid) {
		return 0, fmt.Errorf("container %s of pod %s/%s is not running: %w", container, namespace, pod, os.ErrNotExist)
	}
	return pid, nil
}

func pidAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscallZero) == nil
}

// httpError answers with 404 for what does not exist, 400 for bad
// parameters, 500 otherwise.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, os.ErrNotExist):
		code = http.StatusNotFound
	case errors.Is(err, errBadRequest), errors.Is(err, ErrNoPreviousLog):
		code = http.StatusBadRequest
	}
	http.Error(w, err.Error(), code)
}

var errBadRequest = errors.New("bad request")

// podRef is what a /containerLogs, /exec or /portForward path names.
type podRef struct{ namespace, pod, uid, container string }

// podRefOf reads the path values of the request's pattern and validates
// them as the apiserver validates the objects they name: namespaces and
// container names DNS-1123 labels, pod names DNS-1123 subdomains, UIDs
// (when the pattern has one) non-empty without '/' or "..". They become
// file names under PodsDir: unchecked, a container named "../../x" (sent as
// ..%2F..%2Fx, which the mux unescapes) would read outside the pod's log
// directory. An invalid value is errBadRequest.
func podRefOf(r *http.Request) (podRef, error) {
	ref := podRef{namespace: r.PathValue("namespace"), pod: r.PathValue("pod"), uid: r.PathValue("uid"), container: r.PathValue("container")}
	var bad []string
	check := func(what, value string, errs []string) {
		if len(errs) > 0 {
			bad = append(bad, fmt.Sprintf("%s %q: %s", what, value, strings.Join(errs, "; ")))
		}
	}
	check("namespace", ref.namespace, validation.IsDNS1123Label(ref.namespace))
	check("pod name", ref.pod, validation.IsDNS1123Subdomain(ref.pod))
	if strings.Contains(r.Pattern, "{uid}") && (ref.uid == "" || strings.Contains(ref.uid, "/") || strings.Contains(ref.uid, "..")) {
		bad = append(bad, fmt.Sprintf("pod UID %q: must be non-empty and contain neither '/' nor '..'", ref.uid))
	}
	if strings.Contains(r.Pattern, "{container}") {
		check("container name", ref.container, validation.IsDNS1123Label(ref.container))
	}
	if len(bad) > 0 {
		return podRef{}, fmt.Errorf("%w: invalid %s", errBadRequest, strings.Join(bad, ", invalid "))
	}
	return ref, nil
}

// servePods lists the pods with a runtime record on this node: name,
// namespace, UID and containers only (the kubelet returns its full pod
// objects).
func (s *KubeletServer) servePods(w http.ResponseWriter, _ *http.Request) {
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	entries, _ := os.ReadDir(s.PodsDir)
	for _, e := range entries {
		ns, name, ok := strings.Cut(e.Name(), "_")
		if !ok {
			continue
		}
		_, info, err := s.podRuntime(ns, name, "")
		if err != nil {
			continue
		}
		pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: typesUID(info.UID)}}
		pod.Spec.HostNetwork = info.HostNetwork
		pod.Spec.NodeName = s.NodeName
		for c := range info.Containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c})
		}
		list.Items = append(list.Items, pod)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&list)
}

// serveContainerLogs answers /containerLogs/{namespace}/{pod}/{container}
// with the query parameters of corev1.PodLogOptions, validated as the
// kubelet validates them.
func (s *KubeletServer) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	ref, err := podRefOf(r)
	if err != nil {
		httpError(w, err)
		return
	}
	ns, pod, container := ref.namespace, ref.pod, ref.container
	opts, err := parseLogOptions(r)
	if err != nil {
		httpError(w, err)
		return
	}
	dir, info, err := s.podRuntime(ns, pod, "")
	if err != nil && info == nil && dir == "" {
		httpError(w, err)
		return
	}
	if info != nil {
		if pid := info.Containers[container]; pid > 0 {
			opts.Running = func() bool { return pidAlive(pid) }
		}
	}
	if latestAttempt(dir, container) < 0 {
		httpError(w, fmt.Errorf("container %q in pod %s/%s has no logs on node %s: %w", container, ns, pod, s.NodeName, os.ErrNotExist))
		return
	}
	if opts.Previous && latestAttempt(dir, container) < 1 {
		httpError(w, fmt.Errorf("previous terminated container %q in pod %q not found: %w", container, pod, ErrNoPreviousLog))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w: w}
	if err := WriteContainerLog(r.Context(), fw, dir, container, opts); err != nil {
		s.log().Warn("container logs", "pod", ns+"/"+pod, "container", container, "err", err)
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) { return f.w.Write(b) }
func (f flushWriter) Flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}

// parseLogOptions reads corev1.PodLogOptions' query parameters.
func parseLogOptions(r *http.Request) (LogOptions, error) {
	q := r.URL.Query()
	opts := LogOptions{TailLines: -1}
	boolParam := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("%w: %s=%q: %v", errBadRequest, name, v, err)
		}
		return b, nil
	}
	intParam := func(name string, min int64) (int64, bool, error) {
		v := q.Get(name)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < min {
			return 0, false, fmt.Errorf("%w: %s=%q: must be an integer of at least %d", errBadRequest, name, v, min)
		}
		return n, true, nil
	}
	var err error
	if opts.Follow, err = boolParam("follow"); err != nil {
		return opts, err
	}
	if opts.Previous, err = boolParam("previous"); err != nil {
		return opts, err
	}
	if opts.Timestamps, err = boolParam("timestamps"); err != nil {
		return opts, err
	}
	if n, ok, err := intParam("tailLines", 0); err != nil {
		return opts, err
	} else if ok {
		opts.TailLines = n
	}
	if opts.LimitBytes, _, err = intParam("limitBytes", 1); err != nil {
		return opts, err
	}
	switch v := q.Get("stream"); v {
	case "", "All":
	case "Stdout", "Stderr":
		if opts.TailLines >= 0 {
			return opts, fmt.Errorf("%w: tailLines cannot be combined with stream=%s", errBadRequest, v)
		}
		opts.Stream = strings.ToLower(v)
	default:
		return opts, fmt.Errorf("%w: stream=%q: must be All, Stdout or Stderr", errBadRequest, v)
	}
	since, hasSince, err := intParam("sinceSeconds", 1)
	if err != nil {
		return opts, err
	}
	if hasSince {
		opts.Since = time.Now().Add(-time.Duration(since) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		if hasSince {
			return opts, fmt.Errorf("%w: at most one of sinceTime or sinceSeconds may be given", errBadRequest)
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return opts, fmt.Errorf("%w: sinceTime=%q: %v", errBadRequest, v, err)
		}
		opts.Since = t
	}
	return opts, nil
}

// startKubeletServer serves the kubelet API on <NodeIP>:10250 until ctx
// ends; the returned func stops it and waits.
func (a *Agent) startKubeletServer(ctx context.Context) (func(), error) {
	tlsCfg, err := TLSConfig(a.cfg.KubeletCertFile, a.cfg.KubeletKeyFile, a.cfg.ClientCAFile)
	if err != nil {
		return nil, err
	}
	ks := &KubeletServer{
		NodeName: a.cfg.NodeName, PodsDir: filepath.Join(a.cfg.Dir, "pods"),
		Authorizer: SARAuthorizer{Client: a.client}, Log: a.log.With("component", "kubelet-api"), MarkerEnv: a.cfg.MarkerEnv,
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.NodeIP.String(), strconv.Itoa(KubeletPort)))
	if err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	srv := &http.Server{Handler: ks.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second,
		// Exec'd commands and port forwards end with the agent.
		BaseContext: func(net.Listener) context.Context { return ctx },
		// No HTTP/2: streaming upgrades the HTTP/1.1 connection.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("kubelet API", "err", err)
		}
	}()
	a.log.Info("kubelet API serving", "addr", ln.Addr())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
		<-done
	}, nil
}
