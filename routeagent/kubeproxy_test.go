package routeagent

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/test/kubetest"
)

// kubeProxyServiceIP is the Service's ClusterIP on the harness's apiserver
// (its service CIDR is 10.0.0.0/24).
const kubeProxyServiceIP = "10.0.0.10"

// lazyAPIServer is an apiserver started by the first test that wants it.
type lazyAPIServer struct {
	once sync.Once
	env  *kubetest.Env
	err  error
}

// newLazyAPIServer returns an apiserver that starts when first wanted and
// stops when t ends.
func newLazyAPIServer(t *testing.T) *lazyAPIServer {
	a := &lazyAPIServer{}
	t.Cleanup(func() {
		if a.env != nil {
			a.env.Stop()
		}
	})
	return a
}

// startKubeProxy runs the real kube-proxy in mode, as the sandbox's node
// agent does (test/sandbox/node startKubeProxy: the same flags), in
// namespace ns for node n1 of a cluster with --cluster-cidr 10.1.0.0/16, on
// an apiserver holding one Service kubeProxyServiceIP:80 with the endpoint
// 10.1.2.10:8080, and waits until its rules hold the Service. It skips the
// test without the Kubernetes binaries.
func startKubeProxy(t *testing.T, api *lazyAPIServer, ns, mode string) {
	t.Helper()
	bin, err := kubetest.BinDir()
	if err == nil {
		_, err = os.Stat(filepath.Join(bin, "kube-proxy"))
	}
	if err != nil {
		t.Skipf("needs kube-proxy built from source: %v", err)
	}
	api.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if api.env, api.err = kubetest.Start(ctx, kubetest.Options{SkipCRDs: true}); api.err == nil {
			api.err = createService(ctx, api.env)
		}
	})
	if api.err != nil {
		t.Fatalf("apiserver: %v", api.err)
	}
	apiserver := api.env
	// The apiserver listens on the machine's loopback; kube-proxy, in ns,
	// reaches it at the same address through a forwarder in ns.
	u, err := url.Parse(apiserver.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	forwardLoopback(t, ns, u.Host)
	logPath := filepath.Join(t.TempDir(), "kube-proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(bin, "kube-proxy"),
		"--kubeconfig="+apiserver.Kubeconfig,
		"--hostname-override=n1",
		"--proxy-mode="+mode,
		"--cluster-cidr=10.1.0.0/16",
		"--bind-address=192.168.1.11",
		"--metrics-bind-address=127.0.0.1:10249",
		"--healthz-bind-address=127.0.0.1:10256",
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--profiling=false",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})
	show := []string{"ip", "netns", "exec", ns, "nft", "list", "table", "ip", "kube-proxy"}
	if mode == "iptables" {
		show = []string{"ip", "netns", "exec", ns, "iptables-save", "-t", "nat"}
	}
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		out, _ := exec.Command(show[0], show[1:]...).CombinedOutput()
		if strings.Contains(string(out), "10.1.2.10") {
			t.Logf("kube-proxy %s rules:\n%s", mode, out)
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("kube-proxy wrote no rule for the endpoint in 90s:\n%s\nlog:\n%s", out, log)
		}
		<-tick.C
	}
}

// createService creates node n1, the Service and its EndpointSlice.
func createService(ctx context.Context, env *kubetest.Env) error {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDR: "10.1.2.0/24", PodCIDRs: []string{"10.1.2.0/24"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return err
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.11"}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: kubeProxyServiceIP, Ports: []corev1.ServicePort{
			{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		}},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	port, proto, ready := int32(8080), corev1.ProtocolTCP, true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Port: &port, Protocol: &proto}},
	}
	_, err = cs.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
	return err
}

// forwardLoopback listens on addr in namespace ns and forwards every
// connection to addr in the test's own namespace, until the test ends.
func forwardLoopback(t *testing.T, ns, addr string) {
	t.Helper()
	var l net.Listener
	if err := nodenet.InNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); out.Close() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
}
