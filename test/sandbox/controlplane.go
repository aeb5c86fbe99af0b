package sandbox

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/rest"

	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/pki"
)

// clusterFiles is where one cluster's certificates, kubeconfigs, data and logs live.
type clusterFiles struct {
	dir string
}

func (f clusterFiles) path(parts ...string) string {
	return filepath.Join(append([]string{f.dir}, parts...)...)
}

// clusterPKI makes the cluster's CA, serving certificate, service-account key
// and one kubeconfig per identity: every component authenticates as the user
// a kubeadm cluster would give it, so RBAC and the Node authorizer apply.
func clusterPKI(c ClusterPlan, f clusterFiles, userKubeconfig, adminHostKubeconfig string, forwardPort int) error {
	pkiDir := f.path("pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA(c.Name + "-ca")
	if err != nil {
		return err
	}
	caKP, err := ca.KeyPair()
	if err != nil {
		return err
	}
	if _, _, err := caKP.Write(pkiDir, "ca"); err != nil {
		return err
	}
	servingIPs := append(append([]netip.Addr{}, c.ControlIPs...), c.ControlPublicIPs...)
	servingIPs = append(servingIPs, c.KubernetesServiceIP, netip.MustParseAddr("127.0.0.1"))
	serving, err := ca.ServingCert("kube-apiserver", servingIPs,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return err
	}
	if _, _, err := serving.Write(pkiDir, "apiserver"); err != nil {
		return err
	}
	// The kubelet API: each node serves it with a certificate for its
	// InternalIP and name (CN system:node:<name>, as the kubelet's serving
	// certificate signing requests have it), and the apiserver calls it with a
	// client certificate of the identity kubeadm names
	// apiserver-kubelet-client, in group system:masters (kubeadm 1.29 and
	// later use a group of its own, bound to cluster-admin; the sandbox has
	// no such binding, and the kubelet API only needs the SubjectAccessReview
	// to allow nodes/proxy).
	for _, n := range c.Nodes {
		kp, err := ca.ServingCert("system:node:"+n.Name, n.IPs, []string{n.Name})
		if err != nil {
			return err
		}
		if _, _, err := kp.Write(pkiDir, "kubelet-"+n.Name); err != nil {
			return err
		}
	}
	kubeletClient, err := ca.ClientCert("kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return err
	}
	if _, _, err := kubeletClient.Write(pkiDir, "apiserver-kubelet-client"); err != nil {
		return err
	}
	saKey, saPub, err := pki.NewSigningKey()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pkiDir, "sa.key"), saKey, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pkiDir, "sa.pub"), saPub, 0o644); err != nil {
		return err
	}

	inside := fmt.Sprintf("https://%s", netip.AddrPortFrom(c.ControlIP, APIServerPort))
	loopback := fmt.Sprintf("https://127.0.0.1:%d", APIServerPort)
	type identity struct {
		file, server, user string
		groups             []string
	}
	ids := []identity{
		{"admin", inside, "kubernetes-admin", []string{"system:masters"}},
		{"controller-manager", loopback, "system:kube-controller-manager", nil},
		{"scheduler", loopback, "system:kube-scheduler", nil},
		{"kube-proxy", inside, "system:kube-proxy", nil},
	}
	for _, n := range c.Nodes {
		ids = append(ids, identity{"node-" + n.Name, inside, "system:node:" + n.Name, []string{"system:nodes"}})
	}
	if err := os.MkdirAll(f.path("kubeconfig"), 0o700); err != nil {
		return err
	}
	for _, id := range ids {
		kp, err := ca.ClientCert(id.user, id.groups...)
		if err != nil {
			return err
		}
		cfg := &rest.Config{Host: id.server, TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM(), CertData: kp.CertPEM, KeyData: kp.KeyPEM}}
		if err := kubetest.WriteKubeconfig(f.path("kubeconfig", id.file), cfg, c.Name); err != nil {
			return err
		}
		if id.file == "admin" {
			// The one a person uses, from the root namespace through the forwarder.
			cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", forwardPort)
			if err := kubetest.WriteKubeconfig(userKubeconfig, cfg, c.Name); err != nil {
				return err
			}
			// The one for the admin host, at the apiserver's public address.
			cfg.Host = fmt.Sprintf("https://%s", netip.AddrPortFrom(c.ControlPublicIP, APIServerPort))
			if err := os.MkdirAll(filepath.Dir(adminHostKubeconfig), 0o700); err != nil {
				return err
			}
			if err := kubetest.WriteKubeconfig(adminHostKubeconfig, cfg, c.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// nodeCIDRMaskFlags are the controller manager's per-family node CIDR sizes
// for pod CIDRs pods: --node-cidr-mask-size-ipv4 and -ipv6, which a
// dual-stack cluster needs (--node-cidr-mask-size would set both alike).
func nodeCIDRMaskFlags(pods []netip.Prefix) []string {
	var flags []string
	for _, p := range pods {
		fam := 4
		if p.Addr().Is6() {
			fam = 6
		}
		flags = append(flags, fmt.Sprintf("--node-cidr-mask-size-ipv%d=%d", fam, NodeCIDRMaskSize[fam]))
	}
	return flags
}

// bindAll is the apiserver's --bind-address: every address of the primary
// family ("::" takes IPv4 too, through mapped addresses).
func bindAll(c ClusterPlan) string {
	if c.ControlIP.Is4() {
		return "0.0.0.0"
	}
	return "::"
}

// controlPlaneCommands returns the command lines of etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler for the cluster: dual-stack
// ranges list both families, primary first, and the apiserver advertises its
// primary address.
func controlPlaneCommands(c ClusterPlan, f clusterFiles, kubeBin string) [][]string {
	p := func(parts ...string) string { return f.path(parts...) }
	kcm := []string{filepath.Join(kubeBin, "kube-controller-manager"),
		"--kubeconfig=" + p("kubeconfig", "controller-manager"),
		"--authentication-kubeconfig=" + p("kubeconfig", "controller-manager"),
		"--authorization-kubeconfig=" + p("kubeconfig", "controller-manager"),
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p("pki", "sa.key"),
		"--root-ca-file=" + p("pki", "ca.crt"),
		"--cluster-signing-cert-file=" + p("pki", "ca.crt"),
		"--cluster-signing-key-file=" + p("pki", "ca.key"),
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + cidr.Join(c.PodCIDRs),
	}
	kcm = append(kcm, nodeCIDRMaskFlags(c.PodCIDRs)...)
	kcm = append(kcm,
		"--service-cluster-ip-range="+cidr.Join(c.ServiceCIDRs),
		"--profiling=false",
	)
	return [][]string{
		{filepath.Join(kubeBin, "etcd"),
			"--name=" + c.Name,
			"--data-dir=" + p("etcd"),
			"--listen-client-urls=http://127.0.0.1:2379",
			"--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380",
			"--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=" + c.Name + "=http://127.0.0.1:2380",
			// A sandbox is thrown away: durability only costs time.
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		},
		{filepath.Join(kubeBin, "kube-apiserver"),
			"--etcd-servers=http://127.0.0.1:2379",
			"--advertise-address=" + c.ControlIP.String(),
			"--bind-address=" + bindAll(c),
			"--secure-port=" + strconv.Itoa(APIServerPort),
			"--cert-dir=" + p("pki", "generated"),
			"--tls-cert-file=" + p("pki", "apiserver.crt"),
			"--tls-private-key-file=" + p("pki", "apiserver.key"),
			"--client-ca-file=" + p("pki", "ca.crt"),
			"--kubelet-client-certificate=" + p("pki", "apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + p("pki", "apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + p("pki", "ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p("pki", "sa.pub"),
			"--service-account-signing-key-file=" + p("pki", "sa.key"),
			"--service-cluster-ip-range=" + cidr.Join(c.ServiceCIDRs),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--profiling=false",
		},
		kcm,
		{filepath.Join(kubeBin, "kube-scheduler"),
			"--kubeconfig=" + p("kubeconfig", "scheduler"),
			"--authentication-kubeconfig=" + p("kubeconfig", "scheduler"),
			"--authorization-kubeconfig=" + p("kubeconfig", "scheduler"),
			"--bind-address=127.0.0.1",
			"--leader-elect=false",
			"--profiling=false",
		},
	}
}
