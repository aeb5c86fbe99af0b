package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"testing"
)

func TestChainsVerify(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	serving, err := ca.ServingCert("apiserver", []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}, []string{"kubernetes"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"10.0.0.1", "fd00::1", "kubernetes"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("serving cert for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.0.0.2"}); err == nil {
		t.Error("serving cert verified for an address it does not name")
	}

	client, err := ca.ClientCert("alice", "g1", "g2")
	if err != nil {
		t.Fatal(err)
	}
	cpair, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cleaf, _ := x509.ParseCertificate(cpair.Certificate[0])
	if _, err := cleaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert: %v", err)
	}
	if cleaf.Subject.CommonName != "alice" || len(cleaf.Subject.Organization) != 2 {
		t.Errorf("client subject = %v; want CN alice, O g1,g2", cleaf.Subject)
	}
}
