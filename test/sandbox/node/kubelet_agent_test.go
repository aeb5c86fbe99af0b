package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	authorizationv1 "k8s.io/api/authorization/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"strait.dev/strait/test/pki"
)

// inNetns runs fn on an OS thread in network namespace ns; the thread is
// discarded afterwards.
func inNetns(ns netns.NsHandle, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			panic(err)
		}
		fn()
	}()
	<-done
}

// TestAgentKubeletServer starts the agent's kubelet API as Run does, from
// the node's certificate files, on <NodeIP>:10250 in a throwaway network
// namespace, and stops it.
func TestAgentKubeletServer(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("strait-h-kubelet-srv-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()

	dir := t.TempDir()
	ca, _ := pki.NewCA("ca")
	caKP, _ := ca.KeyPair()
	caFile := filepath.Join(dir, "ca.crt")
	_ = os.WriteFile(caFile, caKP.CertPEM, 0o644)
	serving, _ := ca.ServingCert("system:node:n1", []netip.Addr{netip.MustParseAddr("127.0.0.1")}, []string{"n1"})
	certFile, keyFile, err := serving.Write(dir, "kubelet-n1")
	if err != nil {
		t.Fatal(err)
	}
	// The SubjectAccessReview's answer is the fake's; what matters here is
	// that the agent asks with the request's user and node.
	client := fake.NewClientset()
	var asked *authorizationv1.SubjectAccessReview
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		asked = a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		asked.Status.Allowed = asked.Spec.User == "kube-apiserver-kubelet-client"
		return true, asked, nil
	})
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), client: client, cfg: Config{
		NodeName: "n1", NodeIP: netip.MustParseAddr("127.0.0.1"), Dir: dir,
		KubeletCertFile: certFile, KubeletKeyFile: keyFile, ClientCAFile: caFile,
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stop func()
	inNetns(ns, func() { stop, err = a.startKubeletServer(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := ca.ClientCert("kube-apiserver-kubelet-client", "system:masters")
	cfg := &rest.Config{Host: "https://127.0.0.1:10250", TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM(), CertData: kp.CertPEM, KeyData: kp.KeyPEM}}
	cfg.Dial = func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		inNetns(ns, func() { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
		return conn, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(cfg.Host + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	if asked == nil || asked.Spec.ResourceAttributes.Name != "n1" || asked.Spec.ResourceAttributes.Subresource != "healthz" {
		t.Errorf("SubjectAccessReview asked: %+v", asked)
	}
	hc.CloseIdleConnections()
	stop()
	if _, err := hc.Get(cfg.Host + "/healthz"); err == nil {
		t.Error("the kubelet API still answers after stop")
	}
	if st := a.nodeStatus(true); st.DaemonEndpoints.KubeletEndpoint.Port != KubeletPort {
		t.Errorf("node status kubelet port %d", st.DaemonEndpoints.KubeletEndpoint.Port)
	}
}
