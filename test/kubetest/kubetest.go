// Package kubetest runs a real etcd and kube-apiserver, built from source by
// the test/kube module, on loopback for integration tests. Behaviour that
// depends on the apiserver (schema and CEL validation, RBAC, admission,
// watches, the status subresource, conflicts) is tested against it rather
// than against fake clientsets.
//
// Every process is started through package proc, so none outlives the test
// binary, even when a test panics or times out.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"strait.dev/strait/deploy/crds"
	"strait.dev/strait/test/pki"
	"strait.dev/strait/test/proc"
)

const (
	// startTimeout bounds how long etcd and the apiserver may take to become
	// ready; they take a few seconds on two cores, so this only catches hangs.
	startTimeout = 60 * time.Second
	// stopGrace is how long a process gets to exit after SIGTERM.
	stopGrace = 5 * time.Second
	// serviceCIDR is the apiserver's service range. No traffic goes there:
	// the harness runs no kube-proxy; it only has to be a valid prefix.
	serviceCIDR = "10.0.0.0/24"
	// serviceAccountIssuer is the issuer of service-account tokens, as in a
	// default cluster.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// Options configure an Env.
type Options struct {
	// SkipCRDs leaves Strait's CRDs uninstalled.
	SkipCRDs bool
	// APIServerArgs are extra kube-apiserver flags (--name=value), appended
	// after the harness's own so that they win.
	APIServerArgs []string
}

// Env is a running etcd and kube-apiserver.
type Env struct {
	// Dir holds the processes' data, certificates, logs and the kubeconfig.
	Dir string
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string

	host     string
	ca       *pki.CA
	procs    []*process
	apiArgs  []string // kube-apiserver's path and flags, for restarts
	stopOnce sync.Once
}

type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// New starts an Env for a test and stops it when the test ends. It fails the
// test if the Env cannot start.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	env, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(env.Stop)
	return env
}

// Start starts etcd and kube-apiserver on free loopback ports, waits until the
// apiserver is ready, and installs the CRDs unless told not to.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strait-kubetest-")
	if err != nil {
		return nil, err
	}
	env := &Env{Dir: dir}
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	loopback := netip.MustParseAddr("127.0.0.1")

	if env.ca, err = pki.NewCA("strait-kubetest-ca"); err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, env.ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	serving, err := env.ca.ServingCert("kube-apiserver", []netip.Addr{loopback}, []string{"localhost", "kubernetes", "kubernetes.default.svc"})
	if err != nil {
		return nil, err
	}
	servingCert, servingKey, err := serving.Write(dir, "apiserver")
	if err != nil {
		return nil, err
	}
	saKey, saPub, err := pki.NewSigningKey()
	if err != nil {
		return nil, err
	}
	saKeyFile, saPubFile := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(saKeyFile, saKey, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(saPubFile, saPub, 0o644); err != nil {
		return nil, err
	}

	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	if err := env.start(ctx, "etcd", filepath.Join(bin, "etcd"),
		"--name=kubetest",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		// A test's etcd is thrown away with the test: durability only costs time.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	); err != nil {
		return nil, err
	}

	args := []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + servingCert,
		"--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + caFile,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + saPubFile,
		"--service-account-signing-key-file=" + saKeyFile,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=RBAC",
		// The kubernetes Service cannot point at a loopback address, and
		// nothing in a test needs it to.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	args = append(args, opts.APIServerArgs...)
	env.apiArgs = append([]string{filepath.Join(bin, "kube-apiserver")}, args...)
	if err := env.start(ctx, "kube-apiserver", env.apiArgs[0], env.apiArgs[1:]...); err != nil {
		return nil, err
	}

	env.host = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	admin, err := env.UserConfig("strait-admin", "system:masters")
	if err != nil {
		return nil, err
	}
	env.Config = admin
	if err := env.waitReady(ctx); err != nil {
		return nil, err
	}
	env.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := WriteKubeconfig(env.Kubeconfig, admin, "kubetest"); err != nil {
		return nil, err
	}
	if !opts.SkipCRDs {
		if err := crds.Install(ctx, admin); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// Stop stops the apiserver and etcd and removes Dir. It may be called more
// than once.
func (e *Env) Stop() {
	e.stopOnce.Do(func() {
		for i := len(e.procs) - 1; i >= 0; i-- {
			p := e.procs[i]
			proc.StopWaiting(p.cmd, stopGrace, p.exited)
		}
		if e.Dir != "" {
			_ = os.RemoveAll(e.Dir)
		}
	})
}

// StopAPIServer stops kube-apiserver and leaves etcd running: an outage
// that StartAPIServer ends, with every object kept.
func (e *Env) StopAPIServer() {
	for _, p := range e.procs {
		if p.name == "kube-apiserver" {
			proc.StopWaiting(p.cmd, stopGrace, p.exited)
		}
	}
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, at the same
// address, and waits until it is ready.
func (e *Env) StartAPIServer(ctx context.Context) error {
	kept := e.procs[:0]
	for _, p := range e.procs {
		if p.name != "kube-apiserver" {
			kept = append(kept, p)
		}
	}
	e.procs = kept
	if err := e.start(ctx, "kube-apiserver", e.apiArgs[0], e.apiArgs[1:]...); err != nil {
		return err
	}
	return e.waitReady(ctx)
}

// PIDs returns the process IDs of etcd and the apiserver.
func (e *Env) PIDs() []int {
	var pids []int
	for _, p := range e.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// UserConfig returns a client configuration that authenticates as the given
// user and groups with a client certificate signed by the cluster's CA. The
// user has no rights until RBAC grants some.
func (e *Env) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := e.ca.ClientCert(user, groups...)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host: e.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   e.ca.CertPEM(),
			CertData: kp.CertPEM,
			KeyData:  kp.KeyPEM,
		},
		// Tests create objects in bursts; client-side throttling only slows them.
		QPS:   -1,
		Burst: -1,
	}, nil
}

// ServiceAccountConfig creates the service account namespace/name if it does
// not exist (and its namespace), requests a token for it through the
// TokenRequest API, and returns a client configuration that uses the token.
func (e *Env) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request token for %s/%s: %w", namespace, name, err)
	}
	return &rest.Config{
		Host:            e.host,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.ca.CertPEM()},
		BearerToken:     tr.Status.Token,
		QPS:             -1,
		Burst:           -1,
	}, nil
}

// WriteKubeconfig writes a kubeconfig file for cfg, with everything inline.
func WriteKubeconfig(path string, cfg *rest.Config, name string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	return clientcmd.WriteToFile(*kc, path)
}

func (e *Env) start(ctx context.Context, name, path string, args ...string) error {
	logPath := filepath.Join(e.Dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = e.Dir
	if err := proc.Start(cmd); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	e.procs = append(e.procs, p)
	return nil
}

func (e *Env) waitReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	client := cs.Discovery().RESTClient()
	var lastErr error
	for {
		for _, p := range e.procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited during start-up: %s", p.name, logTail(p.logPath))
			default:
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		body, err := client.Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(body)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last: %v); log: %s", startTimeout, lastErr, logTail(e.procs[len(e.procs)-1].logPath))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of a log file, for error messages.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n" + strings.Join(lines, "\n")
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("find a free port"), err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
