package straitctl

// Integration tests of export, unexport, show and gather against a real
// kube-apiserver (test/kubetest) that hosts a broker and is its member c1,
// with the real Lighthouse agent running, as the lighthouse package's own
// tests run it. The harness runs no kubelet: pods never run, so logs and
// node exec fail, and gather must say so in the archive.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/lighthouse"
	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/kubetest"
)

// run runs straitctl and returns its exit code, stdout and stderr.
func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// member is an apiserver hosting a broker, joined to it as c1, with
// Lighthouse running.
type member struct {
	env   *kubetest.Env
	c     client.Client
	info  *broker.Info
	token string // c1's broker token, in the broker Secret
}

func newMember(t *testing.T) *member {
	t.Helper()
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{})
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := broker.Enroll(ctx, info, broker.Member{ClusterID: "c1", ClusterUID: "uid-c1",
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.101.0.0/16")}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{env: env, c: c, info: info, token: tok}
	m.create(t,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}},
		broker.CredentialSecret(v1.ComponentNamespace, info, tok),
		&aboutv1beta1.ClusterProperty{ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterIDPropertyName}, Spec: aboutv1beta1.ClusterPropertySpec{Value: "c1"}},
	)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- lighthouse.Run(lctx, env.Config, lighthouse.Config{ClusterID: "c1", Namespace: v1.ComponentNamespace, Workers: 2,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lighthouse: %v", err)
		}
	})
	return m
}

func (m *member) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := m.c.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func service(ns, name string, typ corev1.ServiceType) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Type: typ,
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	if typ == corev1.ServiceTypeExternalName {
		s.Spec.ExternalName, s.Spec.Ports = "example.com", nil
	}
	return s
}

// eventually polls until check returns "" (or what is still wrong). The
// minute guards against a hang; it bounds nothing that is measured.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		last = check()
		return last == "", nil
	})
	if err != nil {
		t.Fatalf("%s: %s", what, last)
	}
}

func TestExportAndShowOnAPIServer(t *testing.T) {
	m := newMember(t)
	kc := m.env.Kubeconfig
	t.Setenv("KUBECONFIG", "")
	m.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		service("shop", "web", corev1.ServiceTypeClusterIP), service("shop", "ext", corev1.ServiceTypeExternalName))

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export", "service", "web", "-n", "nope"}, ExitError, "namespace nope does not exist"},
		{[]string{"export", "service", "missing", "-n", "shop"}, ExitError, "no Service missing in namespace shop"},
		{[]string{"export", "service", "ext", "-n", "shop"}, ExitError, "is not valid"},
		{[]string{"export", "service"}, ExitUsage, "accepts 1 arg"},
		{[]string{"export", "service", "web", "-n", "shop", "-o", "wide"}, ExitError, "want table, json or yaml"},
		{[]string{"unexport", "service", "missing", "-n", "shop"}, ExitError, "no ServiceExport missing in namespace shop"},
		{[]string{"unexport", "service", "web", "-n", "nope"}, ExitError, "namespace nope does not exist"},
	} {
		code, out, errOut := run(append(tc.args, "--kubeconfig", kc)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("straitctl %v: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}

	// A valid export: Lighthouse settles Valid and Ready, and export
	// prints them.
	code, out, errOut := run("export", "service", "web", "-n", "shop", "--kubeconfig", kc)
	if code != ExitOK {
		t.Fatalf("export service web: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"ServiceExport shop/web", "Valid ", "True", "Ready ", "Exported"} {
		if !strings.Contains(out, want) {
			t.Errorf("export printed no %q:\n%s", want, out)
		}
	}
	// Again, as JSON: nothing changes, the object is printed.
	code, out, errOut = run("export", "service", "web", "-n", "shop", "--kubeconfig", kc, "-o", "json")
	var doc struct {
		Exports []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Status   struct {
				Conditions []metav1.Condition `json:"conditions"`
			} `json:"status"`
		} `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != ExitOK || err != nil || len(doc.Exports) != 1 || doc.Exports[0].Metadata.Name != "web" ||
		len(doc.Exports[0].Status.Conditions) < 2 || !strings.Contains(errOut, "exists already") {
		t.Errorf("export again -o json: exit %d, %v\n%s%s", code, err, out, errOut)
	}

	// show exports and imports: Lighthouse imports c1's own export.
	code, out, errOut = run("show", "exports", "--kubeconfig", kc)
	if code != ExitOK || !strings.Contains(out, "True (Exported)") || !strings.Contains(out, "False (NoService)") && !strings.Contains(out, "InvalidServiceType") {
		t.Errorf("show exports: exit %d\n%s%s", code, out, errOut)
	}
	eventually(t, "show imports lists shop/web from c1", func() string {
		code, out, errOut := run("show", "imports", "--kubeconfig", kc)
		for _, f := range []string{"shop", "web", "ClusterSetIP", "http:80/TCP", "c1"} {
			if code != ExitOK || !strings.Contains(out, f) {
				return fmt.Sprintf("exit %d: %s%s", code, out, errOut)
			}
		}
		// The export records, in strait-system and at the broker this
		// cluster hosts, are no imports.
		if strings.Contains(out, "strait-broker") || strings.Contains(out, v1.ComponentNamespace) {
			t.Fatalf("show imports lists export records:\n%s", out)
		}
		return ""
	})

	// unexport removes it.
	code, out, errOut = run("unexport", "service", "web", "-n", "shop", "--kubeconfig", kc)
	if code != ExitOK || !strings.Contains(out, "deleted") {
		t.Errorf("unexport: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := run("unexport", "service", "web", "-n", "shop", "--kubeconfig", kc); code != ExitError || !strings.Contains(errOut, "no ServiceExport web") {
		t.Errorf("unexport again: exit %d, %s", code, errOut)
	}

	// The other nouns, from records as the gateway and join write them.
	m.create(t,
		&v1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "c1"},
			Spec: v1.ClusterSpec{ClusterID: "c1", PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"}}},
		&v1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "c2"},
			Spec: v1.ClusterSpec{ClusterID: "c2", PodCIDRs: []v1.CIDR{"10.2.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.102.0.0/16"}}},
		&v1.Endpoint{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "c2-gw"},
			Spec: v1.EndpointSpec{ClusterID: "c2", Hostname: "gw", PrivateIPs: v1.DualStackIPs{"192.168.2.10"}, Subnets: []v1.CIDR{"10.2.0.0/16"},
				CableDriver: "vxlan", VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: v1.ComponentNamespace, Name: "strait-lighthouse"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "lighthouse", Image: "strait/strait-lighthouse:v9.9.9"}}}}}},
	)
	code, out, errOut = run("show", "all", "--kubeconfig", kc)
	for _, want := range []string{
		"NETWORKS:", "c1       yes", "c2       no     10.2.0.0/16  10.102.0.0/16  vxlan", "none",
		"VERSIONS:", "strait-lighthouse  Deployment  lighthouse  strait/strait-lighthouse:v9.9.9  v9.9.9   0/1",
		"BROKERS:", m.info.APIServer, "strait-broker", "present",
		"EXPORTS:", "ext", "IMPORTS:", "ENDPOINTS:", "c2-gw",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show all has no %q", want)
		}
	}
	if code != ExitOK || t.Failed() {
		t.Fatalf("show all: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run("show", "brokers", "--kubeconfig", kc, "-o", "yaml")
	if code != ExitOK || !strings.Contains(out, "apiServer: "+m.info.APIServer) || strings.Contains(out, m.token) {
		t.Errorf("show brokers -o yaml: exit %d (and it must never print the token)\n%s", code, out)
	}

	// Several contexts at once: the same apiserver under two names.
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	cur := cfg.Contexts[cfg.CurrentContext]
	cfg.Contexts["a"], cfg.Contexts["b"] = cur.DeepCopy(), cur.DeepCopy()
	multi := filepath.Join(t.TempDir(), "multi.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, multi); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", multi)
	code, out, errOut = run("show", "networks", "--context", "a,b")
	if code != ExitOK || !strings.Contains(out, "CONTEXT  CLUSTER") || strings.Count(out, "\na        c") != 2 || strings.Count(out, "\nb        c") != 2 {
		t.Errorf("show networks --context a,b: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run("show", "clusters", "--context", "a", "--context", "b", "-o", "json")
	var clusters struct {
		Clusters []struct {
			Context string `json:"context"`
			Spec    struct {
				ClusterID string `json:"clusterID"`
			} `json:"spec"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(out), &clusters); code != ExitOK || err != nil || len(clusters.Clusters) != 4 ||
		clusters.Clusters[0].Context != "a" || clusters.Clusters[3].Context != "b" || clusters.Clusters[1].Spec.ClusterID != "c2" {
		t.Errorf("show clusters -o json over a and b: exit %d, %v\n%s", code, err, out)
	}
}

// TestGatherOnAPIServer gathers from an apiserver holding a broker Secret
// with a known token and a WireGuard private key, a ConfigMap that leaks
// the token, and a node whose route agent cannot be exec'd: the archive has
// Strait's objects and notes, and none of the secrets in any form.
func TestGatherOnAPIServer(t *testing.T) {
	m := newMember(t)
	kc := m.env.Kubeconfig
	t.Setenv("KUBECONFIG", "")
	const wgKey = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	ns := v1.ComponentNamespace
	m.create(t,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strait-wireguard-n1"}, Data: map[string][]byte{"privateKey": []byte(wgKey)}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leaky"}, Data: map[string]string{"oops": "token=" + m.token}},
		&v1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c1"},
			Spec: v1.ClusterSpec{ClusterID: "c1", PodCIDRs: []v1.CIDR{"10.1.0.0/16"}, ServiceCIDRs: []v1.CIDR{"10.101.0.0/16"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		service("shop", "web", corev1.ServiceTypeClusterIP),
	)
	if code, out, errOut := run("export", "service", "web", "-n", "shop", "--kubeconfig", kc); code != ExitOK {
		t.Fatalf("export: %d %s%s", code, out, errOut)
	}
	// A route agent pod on n1 that the apiserver believes running; with no
	// kubelet behind it, exec fails.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strait-routeagent-x", Labels: map[string]string{"app.kubernetes.io/component": "routeagent"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "routeagent", Image: "strait/strait-routeagent:test"}}}}
	m.create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}, pod)
	pod.Status.Phase = corev1.PodRunning
	if err := m.c.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "g.tar.gz")
	code, out, errOut := run("gather", "--kubeconfig", kc, "--file", file)
	if code != ExitOK || !strings.Contains(out, "wrote "+file) {
		t.Fatalf("gather: exit %d\n%s%s", code, out, errOut)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("archive %s: %v, mode %v; want 0600", file, err, st.Mode())
	}
	files, all := readArchive(t, file)
	dir := "g/" + mustCurrentContext(t, kc) + "/"
	for name, want := range map[string]string{
		"objects/strait.dev/v1alpha1/clusters.yaml":                 "clusterID: c1",
		"objects/multicluster.x-k8s.io/v1beta1/serviceexports.yaml": "name: web",
		"objects/about.k8s.io/v1beta1/clusterproperties.yaml":       "value: c1",
		"namespaces/strait-system/secrets.yaml":                     "privateKey: <redacted>, 44 bytes",
		"namespaces/strait-system/configmaps.yaml":                  "oops: token=<redacted>",
		"namespaces/strait-system/pods.yaml":                        "strait-routeagent-x",
		"nodes.yaml":                                                "name: n2",
		"nodes/n1/NOTE.txt":                                         "exec in strait-system/strait-routeagent-x failed",
		"nodes/n2/NOTE.txt":                                         "no running strait-routeagent pod",
		"gather.txt":                                                "log of strait-routeagent-x/routeagent:",
	} {
		got, ok := files[dir+name]
		if !ok {
			t.Errorf("archive has no %s", dir+name)
			continue
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s has no %q:\n%s", name, want, got)
		}
	}
	// The Secrets are listed by name with their keys; only values go.
	if s := files[dir+"namespaces/strait-system/secrets.yaml"]; !strings.Contains(s, "name: strait-broker") || !strings.Contains(s, "token: <redacted>, ") {
		t.Errorf("secrets.yaml does not name the broker Secret and its keys:\n%s", s)
	}
	gatherPartial(t, kc)
	for what, secret := range map[string]string{
		"the broker token":              m.token,
		"the enrolment token":           m.info.Token,
		"the WireGuard private key":     wgKey,
		"the broker token in base64":    base64.StdEncoding.EncodeToString([]byte(m.token)),
		"the WireGuard key in base64":   base64.StdEncoding.EncodeToString([]byte(wgKey)),
		"the kubeconfig's client key":   string(m.env.Config.KeyData),
		"a PEM private key of any kind": "PRIVATE KEY-----",
	} {
		if secret != "" && strings.Contains(all, secret) {
			t.Errorf("the archive holds %s", what)
		}
	}
}

// TestGatherOnAPIServer/partial is below, run within the same apiserver.
func gatherPartial(t *testing.T, kc string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Clusters["down"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.Contexts["down"] = &clientcmdapi.Context{Cluster: "down", AuthInfo: cfg.Contexts[cfg.CurrentContext].AuthInfo}
	multi := filepath.Join(t.TempDir(), "multi.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, multi); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "p.tar.gz")
	code, out, errOut := run("gather", "--kubeconfig", multi, "--context", cfg.CurrentContext+",down", "--file", file)
	if code != ExitError || !strings.Contains(errOut, "without 1 cluster(s): context down: cannot reach the API server") {
		t.Errorf("gather with one unreachable context: exit %d\n%s%s", code, out, errOut)
	}
	files, _ := readArchive(t, file)
	if !strings.Contains(files["p/down/gather.txt"], "gather failed") || files["p/"+cfg.CurrentContext+"/nodes.yaml"] == "" {
		t.Errorf("partial archive: %d files, down/gather.txt %q", len(files), files["p/down/gather.txt"])
	}
	// Every context down: no archive, exit 1.
	code, _, errOut = run("gather", "--kubeconfig", multi, "--context", "down", "--file", file+".2")
	if _, err := os.Stat(file + ".2"); code != ExitError || !strings.Contains(errOut, "cannot reach the API server") || err == nil {
		t.Errorf("gather from an unreachable cluster: exit %d, %s, archive %v", code, errOut, err)
	}
}

// readArchive returns the files of a tar.gz by name, and all of their
// contents (and names) together.
func readArchive(t *testing.T, file string) (map[string]string, string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	var all strings.Builder
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = string(data)
		all.WriteString(h.Name + "\n" + string(data) + "\n")
	}
	return files, all.String()
}

func mustCurrentContext(t *testing.T, kc string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.CurrentContext
}
