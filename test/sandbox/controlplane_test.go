package sandbox

import (
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestClusterPKIKubeletCertificates checks the kubelet API's certificates:
// each node's serving certificate verifies for its InternalIP and name, and
// the apiserver's kubelet client is kubeadm's identity.
func TestClusterPKIKubeletCertificates(t *testing.T) {
	c := Plan(Options{Clusters: 1, Nodes: 2, GatewayNodes: 1})[0]
	dir := t.TempDir()
	f := clusterFiles{dir: dir}
	if err := clusterPKI(c, f, filepath.Join(dir, "user.kubeconfig"), filepath.Join(dir, "admin", "kubeconfig"), 16443); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, f.path("pki", "ca.crt")))
	for _, n := range c.Nodes {
		cert := readCert(t, f.path("pki", "kubelet-"+n.Name+".crt"))
		if cert.Subject.CommonName != "system:node:"+n.Name {
			t.Errorf("%s: CN %q", n.Name, cert.Subject.CommonName)
		}
		for _, host := range []string{n.IP.String(), n.Name} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("%s serving certificate for %s: %v", n.Name, host, err)
			}
		}
		if _, err := os.Stat(f.path("pki", "kubelet-"+n.Name+".key")); err != nil {
			t.Error(err)
		}
	}
	client := readCert(t, f.path("pki", "apiserver-kubelet-client.crt"))
	if client.Subject.CommonName != "kube-apiserver-kubelet-client" || strings.Join(client.Subject.Organization, ",") != "system:masters" {
		t.Errorf("apiserver kubelet client: %v", client.Subject)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("apiserver kubelet client: %v", err)
	}
}

// In a dual-stack cluster the apiserver and controller manager get both
// service ranges and both pod ranges, IPv4 first, with a node CIDR size per
// family; the apiserver's certificate holds its addresses of both families.
// A single-stack IPv4 cluster's flags stay those of before --ip-family.
func TestControlPlaneFamilies(t *testing.T) {
	flags := func(o Options) (map[string]string, ClusterPlan) {
		c := Plan(o)[0]
		got := map[string]string{}
		for _, argv := range controlPlaneCommands(c, clusterFiles{dir: "/x"}, "/bin") {
			for _, a := range argv[1:] {
				k, v, _ := strings.Cut(a, "=")
				got[filepath.Base(argv[0])+" "+k] = v
			}
		}
		return got, c
	}
	for _, tc := range []struct {
		family string
		want   map[string]string
	}{
		{IPv4, map[string]string{
			"kube-apiserver --service-cluster-ip-range":          "10.101.0.0/16",
			"kube-apiserver --bind-address":                      "0.0.0.0",
			"kube-apiserver --advertise-address":                 "192.168.1.2",
			"kube-controller-manager --cluster-cidr":             "10.1.0.0/16",
			"kube-controller-manager --node-cidr-mask-size-ipv4": "24",
			"kube-controller-manager --node-cidr-mask-size-ipv6": "",
			"kube-controller-manager --service-cluster-ip-range": "10.101.0.0/16",
		}},
		{Dual, map[string]string{
			"kube-apiserver --service-cluster-ip-range":          "10.101.0.0/16,fd00:10:101::/112",
			"kube-apiserver --bind-address":                      "0.0.0.0",
			"kube-apiserver --advertise-address":                 "192.168.1.2",
			"kube-controller-manager --cluster-cidr":             "10.1.0.0/16,fd00:10:1::/48",
			"kube-controller-manager --node-cidr-mask-size-ipv4": "24",
			"kube-controller-manager --node-cidr-mask-size-ipv6": "64",
			"kube-controller-manager --service-cluster-ip-range": "10.101.0.0/16,fd00:10:101::/112",
		}},
		{IPv6, map[string]string{
			"kube-apiserver --service-cluster-ip-range":          "fd00:10:101::/112",
			"kube-apiserver --bind-address":                      "::",
			"kube-apiserver --advertise-address":                 "fd00:192:168:1::2",
			"kube-controller-manager --cluster-cidr":             "fd00:10:1::/48",
			"kube-controller-manager --node-cidr-mask-size-ipv4": "",
			"kube-controller-manager --node-cidr-mask-size-ipv6": "64",
			"kube-controller-manager --service-cluster-ip-range": "fd00:10:101::/112",
		}},
	} {
		got, c := flags(Options{Clusters: 1, Nodes: 1, GatewayNodes: 1, IPFamily: tc.family})
		for k, want := range tc.want {
			if got[k] != want {
				t.Errorf("%s: %s=%q, want %q", tc.family, k, got[k], want)
			}
		}
		if _, ok := got["kube-controller-manager --node-cidr-mask-size"]; ok {
			t.Errorf("%s: --node-cidr-mask-size set; it cannot size two families", tc.family)
		}
		// The serving certificate: every address of the control plane.
		dir := t.TempDir()
		f := clusterFiles{dir: dir}
		if err := clusterPKI(c, f, filepath.Join(dir, "user.kubeconfig"), filepath.Join(dir, "admin", "kubeconfig"), 16443); err != nil {
			t.Fatal(err)
		}
		cert := readCert(t, f.path("pki", "apiserver.crt"))
		var ips []string
		for _, ip := range cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		for _, a := range append(append([]netip.Addr{}, c.ControlIPs...), c.ControlPublicIPs...) {
			if !slices.Contains(ips, a.String()) {
				t.Errorf("%s: apiserver certificate IPs %v lack %s", tc.family, ips, a)
			}
		}
	}
}
