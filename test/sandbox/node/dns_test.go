package node

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestParseResolvConf(t *testing.T) {
	rc := ParseResolvConf([]byte("# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2 ; trailing\ndomain old.example\nsearch a.example b.example\noptions ndots:2 edns0\noptions rotate\nsortlist 1.2.3.4\n"))
	if got := strings.Join(rc.Nameservers, ","); got != "10.0.0.1,10.0.0.2" {
		t.Errorf("nameservers %q", got)
	}
	if got := strings.Join(rc.Searches, ","); got != "a.example,b.example" {
		t.Errorf("searches %q (the last search or domain line wins)", got)
	}
	if got := strings.Join(rc.Options, ","); got != "ndots:2,edns0,rotate" {
		t.Errorf("options %q", got)
	}
	if rc := ParseResolvConf([]byte(nodeResolvConf)); len(rc.Nameservers)+len(rc.Searches)+len(rc.Options) != 0 {
		t.Errorf("the node's resolv.conf must name nothing, got %+v", rc)
	}
}

// TestPodResolvConf checks each dnsPolicy and dnsConfig merge against the
// resolv.conf the kubelet writes ("DNS for Services and Pods").
func TestPodResolvConf(t *testing.T) {
	cluster := ClusterDNS{Server: netip.MustParseAddr("10.101.0.10"), Domain: "cluster.local"}
	node := ResolvConf{Nameservers: []string{"192.168.1.1"}, Searches: []string{"lab.example"}, Options: []string{"timeout:1"}}
	pod := func(policy corev1.DNSPolicy, hostNet bool, dc *corev1.PodDNSConfig) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns1"},
			Spec: corev1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: dc}}
	}
	clusterFirst := "nameserver 10.101.0.10\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local lab.example\noptions ndots:5\n"
	nodeConf := "nameserver 192.168.1.1\nsearch lab.example\noptions timeout:1\n"
	dc := &corev1.PodDNSConfig{
		Nameservers: []string{"1.1.1.1", "10.101.0.10"},
		Searches:    []string{"extra.example", "svc.cluster.local"},
		Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "edns0"}},
	}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		cluster ClusterDNS
		want    string
	}{
		{"ClusterFirst", pod(corev1.DNSClusterFirst, false, nil), cluster, clusterFirst},
		{"empty policy is ClusterFirst", pod("", false, nil), cluster, clusterFirst},
		{"ClusterFirst on the host network is Default", pod(corev1.DNSClusterFirst, true, nil), cluster, nodeConf},
		{"ClusterFirstWithHostNet on the host network", pod(corev1.DNSClusterFirstWithHostNet, true, nil), cluster, clusterFirst},
		{"ClusterFirstWithHostNet on a pod network", pod(corev1.DNSClusterFirstWithHostNet, false, nil), cluster, clusterFirst},
		{"Default", pod(corev1.DNSDefault, false, nil), cluster, nodeConf},
		{"ClusterFirst without cluster DNS falls back to Default", pod(corev1.DNSClusterFirst, false, nil), ClusterDNS{}, nodeConf},
		{"None without dnsConfig", pod(corev1.DNSNone, false, nil), cluster, ""},
		{"None with dnsConfig", pod(corev1.DNSNone, false, dc), cluster,
			"nameserver 1.1.1.1\nnameserver 10.101.0.10\nsearch extra.example svc.cluster.local\noptions ndots:2 edns0\n"},
		{"ClusterFirst merged with dnsConfig", pod(corev1.DNSClusterFirst, false, dc), cluster,
			"nameserver 10.101.0.10\nnameserver 1.1.1.1\nsearch ns1.svc.cluster.local svc.cluster.local cluster.local lab.example extra.example\noptions ndots:2 edns0\n"},
		{"at most three nameservers", pod(corev1.DNSDefault, false, &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1", "2.2.2.2", "3.3.3.3"}}), cluster,
			"nameserver 192.168.1.1\nnameserver 1.1.1.1\nnameserver 2.2.2.2\nsearch lab.example\noptions timeout:1\n"},
	} {
		got := PodResolvConf(tc.pod, tc.cluster, node).String()
		got = got[strings.Index(got, "\n")+1:] // the header comment
		if got != tc.want {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

func TestPodHostname(t *testing.T) {
	long := strings.Repeat("a", 62) + "-bcd"
	for _, tc := range []struct {
		name, hostname, subdomain string
		wantHost, wantFQDN        string
	}{
		{"web-0", "", "", "web-0", ""},
		{"web-0", "", "web", "web-0", "web-0.web.ns1.svc.cluster.local"},
		{"p", "myhost", "sub", "myhost", "myhost.sub.ns1.svc.cluster.local"},
		{long, "", "", strings.Repeat("a", 62), ""}, // cut to 63, then the trailing '-'
	} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: "ns1"}, Spec: corev1.PodSpec{Hostname: tc.hostname, Subdomain: tc.subdomain}}
		h, fqdn := PodHostname(pod, "cluster.local")
		if h != tc.wantHost || fqdn != tc.wantFQDN {
			t.Errorf("%s/%s/%s: got %q %q; want %q %q", tc.name, tc.hostname, tc.subdomain, h, fqdn, tc.wantHost, tc.wantFQDN)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns1"}, Spec: corev1.PodSpec{Subdomain: "web", SetHostnameAsFQDN: ptr.To(true)}}
	if got := kernelHostname(pod, "cluster.local"); got != "web-1.web.ns1.svc.cluster.local" {
		t.Errorf("setHostnameAsFQDN: kernel hostname %q", got)
	}
	pod.Spec.SetHostnameAsFQDN = nil
	if got := kernelHostname(pod, "cluster.local"); got != "web-1" {
		t.Errorf("kernel hostname %q", got)
	}
}

func TestPodHosts(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns1"}, Spec: corev1.PodSpec{
		Subdomain:   "web",
		HostAliases: []corev1.HostAlias{{IP: "10.9.9.9", Hostnames: []string{"foo.local", "bar.local"}}},
	}}
	got := string(PodHosts(pod, []string{"10.1.2.3"}, "cluster.local"))
	for _, line := range []string{
		"127.0.0.1\tlocalhost\n",
		"::1\tlocalhost ip6-localhost ip6-loopback\n",
		"10.1.2.3\tweb-1.web.ns1.svc.cluster.local\tweb-1\n",
		"10.9.9.9\tfoo.local\tbar.local\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("hosts lacks %q:\n%s", line, got)
		}
	}
	if strings.Index(got, "10.1.2.3") > strings.Index(got, "10.9.9.9") {
		t.Errorf("host aliases must follow the pod's own line:\n%s", got)
	}
	pod.Spec.Subdomain, pod.Spec.HostAliases = "", nil
	if got := string(PodHosts(pod, []string{"10.1.2.3"}, "cluster.local")); !strings.HasSuffix(got, "\n10.1.2.3\tweb-1\n") {
		t.Errorf("without a subdomain:\n%s", got)
	}
}

func TestEtcMounts(t *testing.T) {
	f := etcFiles{resolvConf: "/p/resolv.conf", hosts: "/p/hosts", hostname: "/p/hostname"}
	c := &corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "h", MountPath: "/etc/hosts/"}}}
	var got []string
	for _, m := range f.mounts(c) {
		got = append(got, m.Source+">"+m.Target)
	}
	if want := "/p/resolv.conf>/etc/resolv.conf /p/hostname>/etc/hostname"; strings.Join(got, " ") != want {
		t.Errorf("mounts %q; want %q (the container's own /etc/hosts volume wins)", got, want)
	}
	if got := (etcFiles{resolvConf: "/p/resolv.conf"}).mounts(&corev1.Container{}); len(got) != 1 {
		t.Errorf("hostNetwork pod mounts %+v; want only resolv.conf", got)
	}
}
