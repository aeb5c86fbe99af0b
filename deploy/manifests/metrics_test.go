package manifests

import (
	"net"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"strait.dev/strait/gateway"
	"strait.dev/strait/globalnet"
	"strait.dev/strait/lighthouse"
	"strait.dev/strait/routeagent"
)

// Every workload of a member cluster serves Prometheus metrics where its
// pods say: one container port named metrics, the port of the
// prometheus.io/port annotation (with prometheus.io/scrape), and the port
// of the container's --metrics-addr, which is the component's default
// (strait-dns: its Corefile's prometheus plugin, checked in dns_test.go).
func TestMetricsPorts(t *testing.T) {
	objs, err := RenderMember(GatewayValues{
		Namespace: "strait-system", ClusterID: "c1", PodCIDRs: "10.1.0.0/16", ServiceCIDRs: "10.101.0.0/16",
		CableDriver: "wireguard", GlobalCIDR: "242.1.0.0/16", ImageRepository: "strait", ImageTag: "devel",
	})
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]string{
		"strait-gateway": gateway.DefaultMetricsAddr, "strait-routeagent": routeagent.DefaultMetricsAddr,
		"strait-lighthouse": lighthouse.DefaultMetricsAddr, "strait-globalnet": globalnet.DefaultMetricsAddr, "strait-dns": "",
	}
	seen := 0
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" && o.GetKind() != "Deployment" {
			continue
		}
		seen++
		name := o.GetName()
		want, ok := defaults[name]
		if !ok {
			t.Errorf("%s %s: a workload this test does not know; add its metrics address", o.GetKind(), name)
			continue
		}
		tmpl := convert[corev1.PodTemplateSpec](t, &unstructured.Unstructured{Object: o.Object["spec"].(map[string]any)["template"].(map[string]any)})
		ann := tmpl.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: annotations %v, want prometheus.io/scrape true and path /metrics", name, ann)
		}
		var ports []int32
		for _, c := range tmpl.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name != "metrics" {
					continue
				}
				ports = append(ports, p.ContainerPort)
				if want == "" {
					continue
				}
				_, port, _ := net.SplitHostPort(want)
				flag := ""
				for _, a := range c.Args {
					if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
						flag = v
					}
				}
				if flag != want || strconv.Itoa(int(p.ContainerPort)) != port {
					t.Errorf("%s: --metrics-addr=%q and port %d, want %s (the component's default)", name, flag, p.ContainerPort, want)
				}
			}
		}
		if len(ports) != 1 {
			t.Errorf("%s: ports named metrics %v, want one", name, ports)
			continue
		}
		if ann["prometheus.io/port"] != strconv.Itoa(int(ports[0])) {
			t.Errorf("%s: prometheus.io/port %q, the metrics port is %d", name, ann["prometheus.io/port"], ports[0])
		}
	}
	if seen != len(defaults) {
		t.Errorf("%d workloads rendered, want %d", seen, len(defaults))
	}
}
