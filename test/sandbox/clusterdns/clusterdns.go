// Package clusterdns is the DNS of every sandbox cluster: stock CoreDNS, built
// from source at the version the root go.mod pins (its tool directive), and
// deployed as kubeadm deploys it: the ServiceAccount coredns, the ClusterRole
// and binding system:coredns, the ConfigMap coredns holding the Corefile, the
// Deployment coredns (label k8s-app=kube-dns) and the Service kube-dns on the
// tenth address of the service CIDR, all in kube-system.
//
// The sandbox's node agent runs the image Image as the binary
// $STRAIT_KUBE_BIN/coredns, and writes pods' resolv.conf with the Service's
// address. The one departure from kubeadm is the upstream: the sandbox has
// none, so names outside the cluster are answered NXDOMAIN at once by a
// stand-in (see Corefile.tmpl).
//
// Sources: https://kubernetes.io/docs/tasks/administer-cluster/coredns/,
// https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/,
// https://coredns.io/plugins/ (kubernetes, forward, template, loop).
package clusterdns

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"net/netip"
	"strings"
	"text/template"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/pkg/kubeapply"
)

// Version is the CoreDNS release the sandbox runs. It must equal the version
// of github.com/coredns/coredns in the root go.mod, which "make
// kube-binaries" builds; TestVersionIsGoMods keeps the two together.
const Version = "v1.15.0"

// Image is the CoreDNS image the Deployment names, as kubeadm names it; the
// sandbox's node agent maps it to the binary built from source.
const Image = "registry.k8s.io/coredns/coredns:" + Version

// The objects' names, as kubeadm names them.
const (
	Namespace      = "kube-system"
	DeploymentName = "coredns"
	ConfigMapName  = "coredns"
	ServiceName    = "kube-dns"
	// AppLabel is the label of the Deployment's pods and the Service's
	// selector: k8s-app=kube-dns, kept from the kube-dns days so that
	// everything that looks for the cluster DNS by label finds it.
	AppLabel = "k8s-app"
	AppValue = "kube-dns"
)

// ClusterDomain is the sandbox clusters' DNS domain, the Kubernetes default.
const ClusterDomain = "cluster.local"

// FieldManager is the server-side apply field manager of the sandbox's own
// objects.
const FieldManager = "strait-sandbox"

// StandInPort is where the Corefile's stand-in upstream listens, on the pod's
// loopback: any free port above 1024 would do (CoreDNS's own examples use
// 5300s for extra server blocks); the pod's network namespace is its own.
const StandInPort = 5301

//go:embed Corefile.tmpl coredns.yaml
var files embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
	"indent": indent,
}).ParseFS(files, "Corefile.tmpl", "coredns.yaml"))

// CorefileOptions adapt the Corefile to a place other than a cluster's pod:
// the zero value is the Corefile the cluster runs.
type CorefileOptions struct {
	// Port is the DNS port, UDP and TCP; 0 is 53.
	Port int
	// Kubeconfig is a kubeconfig file for the kubernetes plugin; empty is
	// the pod's service account (in-cluster configuration).
	Kubeconfig string
	// HealthAddr, ReadyAddr and MetricsAddr are the listen addresses
	// (host:port) of /health, /ready and /metrics; empty is each plugin's
	// default, :8080, :8181 and :9153 on every address, as the Deployment's
	// probes and ports expect.
	HealthAddr, ReadyAddr, MetricsAddr string
	// StandInPort is the stand-in upstream's port on 127.0.0.1; 0 is
	// StandInPort.
	StandInPort int
}

// Corefile renders the Corefile with o (see Corefile.tmpl for why it reads
// as it does).
func Corefile(o CorefileOptions) (string, error) {
	if o.Port == 0 {
		o.Port = 53
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = ":9153"
	}
	if o.StandInPort == 0 {
		o.StandInPort = StandInPort
	}
	var buf bytes.Buffer
	err := templates.ExecuteTemplate(&buf, "Corefile.tmpl", struct {
		CorefileOptions
		ClusterDomain string
	}{o, ClusterDomain})
	if err != nil {
		return "", fmt.Errorf("render Corefile: %w", err)
	}
	return buf.String(), nil
}

// Values fill the manifests.
type Values struct {
	// DNSServiceIP is the kube-dns Service's cluster IP: by kubeadm's
	// convention the tenth address of the service CIDR, which pods'
	// resolv.conf names.
	DNSServiceIP netip.Addr
	// SecondaryDNSServiceIP is, in a dual-stack cluster, the Service's
	// cluster IP of the other family (the tenth address of the secondary
	// service CIDR): the Service is then RequireDualStack with both, primary
	// first, and CoreDNS is reached over either. Unset in a single-stack
	// cluster.
	SecondaryDNSServiceIP netip.Addr
}

// Objects renders the manifests (coredns.yaml) with v and decodes them
// strictly (an unknown field is an error) into typed objects, in the order
// they are applied: ServiceAccount, ClusterRole, ClusterRoleBinding,
// ConfigMap, Deployment, Service.
func Objects(v Values) ([]client.Object, error) {
	if !v.DNSServiceIP.IsValid() {
		return nil, fmt.Errorf("cluster DNS: no Service IP")
	}
	secondary := ""
	if v.SecondaryDNSServiceIP.IsValid() {
		if v.SecondaryDNSServiceIP.Is4() == v.DNSServiceIP.Is4() {
			return nil, fmt.Errorf("cluster DNS: Service IPs %s and %s are of one family; a dual-stack Service needs one of each", v.DNSServiceIP, v.SecondaryDNSServiceIP)
		}
		secondary = v.SecondaryDNSServiceIP.String()
	}
	corefile, err := Corefile(CorefileOptions{})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = templates.ExecuteTemplate(&buf, "coredns.yaml", map[string]any{
		"Corefile":     corefile,
		"Image":        Image,
		"DNSServiceIP": v.DNSServiceIP.String(),
		"SecondaryIP":  secondary,
	})
	if err != nil {
		return nil, fmt.Errorf("render coredns.yaml: %w", err)
	}
	decoder := serializer.NewCodecFactory(clientgoscheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []client.Object
	for i, doc := range strings.Split(buf.String(), "\n---\n") {
		// The split took the newline that ends the document's last line,
		// which a block scalar (the Corefile) keeps.
		obj, _, err := decoder.Decode([]byte(doc+"\n"), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("coredns.yaml, document %d: %w", i+1, err)
		}
		cobj, ok := obj.(client.Object)
		if !ok {
			return nil, fmt.Errorf("coredns.yaml, document %d: %T is not an object", i+1, obj)
		}
		objs = append(objs, cobj)
	}
	return objs, nil
}

// Apply server-side applies the cluster DNS objects with v through c (whose
// scheme must know the built-in types), as FieldManager. Applying again with
// the same values changes nothing.
func Apply(ctx context.Context, c client.Client, v Values) error {
	objs, err := Objects(v)
	if err != nil {
		return err
	}
	return kubeapply.All(ctx, c, objs, FieldManager)
}

// WaitAvailable waits until the coredns Deployment has rolled out: its
// controller has seen the latest spec, it is Available, and every replica is
// updated and ready (so that each node's pods can reach a ready replica). It
// polls every 200 ms until ctx ends, then returns ctx's error with the
// Deployment's last status seen and each of its pods' (podsStatus), so that
// a sandbox that never gets a cluster DNS says why.
func WaitAvailable(ctx context.Context, c client.Client) error {
	var last, lastErr string
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: DeploymentName}, &d); err != nil {
			lastErr = err.Error()
			return false, nil
		}
		last, lastErr = deploymentStatus(&d), ""
		return rolledOut(&d), nil
	})
	if err == nil {
		return nil
	}
	if last == "" {
		last = "never read: " + lastErr
	}
	// ctx has ended: the pods are listed with a context of their own.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var pods corev1.PodList
	pstatus := ""
	if lerr := c.List(lctx, &pods, client.InNamespace(Namespace), client.MatchingLabels{AppLabel: AppValue}); lerr != nil {
		pstatus = "pods not listed: " + lerr.Error()
	} else {
		pstatus = podsStatus(pods.Items)
	}
	return fmt.Errorf("deployment %s/%s not available: %w (%s; %s)", Namespace, DeploymentName, err, last, pstatus)
}

// podsStatus is one line on pods: each pod's node, phase, Ready condition
// (with its reason and message when false) and each container's restarts
// and last state, e.g. "pod coredns-x on c2-n1: Running, not ready
// (ContainersNotReady: ...), coredns restarts 2 waiting CrashLoopBackOff".
func podsStatus(pods []corev1.Pod) string {
	if len(pods) == 0 {
		return "no pods"
	}
	var parts []string
	for _, p := range pods {
		s := fmt.Sprintf("pod %s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		ready := "no Ready condition"
		for _, cond := range p.Status.Conditions {
			if cond.Type != corev1.PodReady {
				continue
			}
			ready = "ready"
			if cond.Status != corev1.ConditionTrue {
				ready = "not ready"
				if why := strings.Trim(cond.Reason+": "+cond.Message, ": "); why != "" {
					ready += " (" + why + ")"
				}
			}
		}
		s += ", " + ready
		for _, cs := range p.Status.ContainerStatuses {
			s += fmt.Sprintf(", %s ready %t restarts %d", cs.Name, cs.Ready, cs.RestartCount)
			switch {
			case cs.State.Waiting != nil:
				s += " waiting " + cs.State.Waiting.Reason
			case cs.State.Terminated != nil:
				s += fmt.Sprintf(" terminated %s (exit %d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				s += fmt.Sprintf(", last exit %d %s", t.ExitCode, t.Reason)
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// rolledOut reports what WaitAvailable waits for.
func rolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration < d.Generation ||
		d.Status.UpdatedReplicas != want || d.Status.ReadyReplicas != want || d.Status.Replicas != want {
		return false
	}
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func deploymentStatus(d *appsv1.Deployment) string {
	s := fmt.Sprintf("replicas %d, updated %d, ready %d, available %d",
		d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas)
	for _, cond := range d.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			s += fmt.Sprintf("; %s: %s", cond.Type, cond.Message)
		}
	}
	return s
}

// indent indents every non-empty line of s by n spaces, for text embedded in
// a YAML block scalar.
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}
