package sandbox

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
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
