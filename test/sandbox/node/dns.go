package node

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Limits the kubelet applies to a pod's resolv.conf (glibc's resolver reads
// at most three nameservers; Kubernetes allows 32 search domains).
const (
	maxNameservers = 3
	maxSearches    = 32
	// maxHostnameLen is a DNS label's length limit (RFC 1035), which the
	// kubelet truncates long pod names to for the hostname.
	maxHostnameLen = 63
)

// ResolvConf is a resolv.conf(5) as data.
type ResolvConf struct {
	Nameservers []string
	Searches    []string
	Options     []string // "ndots:5", "edns0"
}

// ParseResolvConf reads the nameserver, search/domain and options lines of a
// resolv.conf; comments and other lines are skipped.
func ParseResolvConf(data []byte) ResolvConf {
	var rc ResolvConf
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				rc.Nameservers = append(rc.Nameservers, f[1])
			}
		case "search", "domain":
			// The last search or domain line wins (resolv.conf(5)).
			rc.Searches = slices.Clone(f[1:])
		case "options":
			rc.Options = append(rc.Options, f[1:]...)
		}
	}
	return rc
}

// String renders the resolv.conf; an empty one is a comment only, so that a
// resolver finds no nameserver and fails at once.
func (rc ResolvConf) String() string {
	var b strings.Builder
	b.WriteString("# Written by the strait sandbox node agent for this pod's dnsPolicy.\n")
	for _, ns := range rc.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(rc.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.Searches, " "))
	}
	if len(rc.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.Options, " "))
	}
	return b.String()
}

// ClusterDNS is what the node knows of the cluster's DNS: the kube-dns
// Service's address and the cluster domain ("cluster.local").
type ClusterDNS struct {
	Server netip.Addr
	Domain string
}

// PodResolvConf computes a pod's resolv.conf from its dnsPolicy and dnsConfig
// as the kubelet does ("DNS for Services and Pods"):
//   - ClusterFirst (the default) on a pod network: the cluster DNS server,
//     search <ns>.svc.<domain> svc.<domain> <domain> then the node's search
//     domains, options ndots:5; on the host network ClusterFirst means Default;
//   - ClusterFirstWithHostNet: ClusterFirst, on either network;
//   - Default: the node's resolv.conf;
//   - None: nothing but dnsConfig;
//   - without a cluster DNS server configured, ClusterFirst falls back to
//     Default, as the kubelet's does.
//
// dnsConfig's nameservers and searches are appended without duplicates, and
// its options merged by name with dnsConfig's value winning. At most three
// nameservers and 32 search domains are kept.
func PodResolvConf(pod *corev1.Pod, cluster ClusterDNS, node ResolvConf) ResolvConf {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault
	}
	if (policy == corev1.DNSClusterFirst || policy == corev1.DNSClusterFirstWithHostNet) && (!cluster.Server.IsValid() || cluster.Domain == "") {
		policy = corev1.DNSDefault
	}
	var rc ResolvConf
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		d := cluster.Domain
		rc.Nameservers = []string{cluster.Server.String()}
		rc.Searches = append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, node.Searches...)
		rc.Options = []string{"ndots:5"}
	case corev1.DNSDefault:
		rc = ResolvConf{Nameservers: slices.Clone(node.Nameservers), Searches: slices.Clone(node.Searches), Options: slices.Clone(node.Options)}
	case corev1.DNSNone:
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		rc.Nameservers = append(rc.Nameservers, dc.Nameservers...)
		rc.Searches = append(rc.Searches, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			rc.Options = append(rc.Options, opt)
		}
	}
	rc.Nameservers = firstOnly(rc.Nameservers, func(s string) string { return s })
	rc.Searches = firstOnly(rc.Searches, func(s string) string { return strings.TrimSuffix(s, ".") })
	rc.Options = mergeOptions(rc.Options)
	if len(rc.Nameservers) > maxNameservers {
		rc.Nameservers = rc.Nameservers[:maxNameservers]
	}
	if len(rc.Searches) > maxSearches {
		rc.Searches = rc.Searches[:maxSearches]
	}
	return rc
}

// firstOnly drops later duplicates (by key) and empty entries.
func firstOnly(list []string, key func(string) string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range list {
		if k := key(s); k != "" && !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// mergeOptions keeps each option name once, where it first appeared, with
// the value it was given last.
func mergeOptions(opts []string) []string {
	var names []string
	value := map[string]string{}
	for _, o := range opts {
		name, _, _ := strings.Cut(o, ":")
		if _, ok := value[name]; !ok {
			names = append(names, name)
		}
		value[name] = o
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, value[n])
	}
	return out
}

// PodHostname returns a pod's hostname and, when it has a subdomain, its
// fully qualified name <hostname>.<subdomain>.<ns>.svc.<domain> (else "").
// The hostname is spec.hostname or else the pod's name, cut to 63 characters
// without a trailing '-' or '.', as the kubelet does. A StatefulSet's pods get
// hostname = pod name and subdomain = the StatefulSet's serviceName from the
// controller, so they have stable names under their headless Service.
func PodHostname(pod *corev1.Pod, domain string) (hostname, fqdn string) {
	hostname = pod.Spec.Hostname
	if hostname == "" {
		hostname = pod.Name
		if len(hostname) > maxHostnameLen {
			hostname = strings.TrimRight(hostname[:maxHostnameLen], "-.")
		}
	}
	if pod.Spec.Subdomain != "" && domain != "" {
		fqdn = hostname + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + domain
	}
	return hostname, fqdn
}

// kernelHostname is the name the pod's UTS namespace gets: the FQDN when
// setHostnameAsFQDN asks for it and there is one, else the hostname.
func kernelHostname(pod *corev1.Pod, domain string) string {
	h, fqdn := PodHostname(pod, domain)
	if fqdn != "" && pod.Spec.SetHostnameAsFQDN != nil && *pod.Spec.SetHostnameAsFQDN {
		return fqdn
	}
	return h
}

// PodHosts renders a pod's kubelet-managed /etc/hosts: the loopback names,
// then each pod IP with the pod's FQDN (when it has a subdomain) and
// hostname, then the pod's hostAliases.
func PodHosts(pod *corev1.Pod, podIPs []string, domain string) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file, written by the strait sandbox node agent.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	hostname, fqdn := PodHostname(pod, domain)
	for _, ip := range podIPs {
		if fqdn != "" {
			fmt.Fprintf(&b, "%s\t%s\t%s\n", ip, fqdn, hostname)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, ha := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}

// etcFiles are the files the kubelet manages in a pod's /etc, on the node.
type etcFiles struct {
	resolvConf, hosts, hostname string // "" when the pod keeps the node's
}

// writeEtcFiles writes a pod's resolv.conf, hosts and hostname under dir.
// hostNetwork pods get only resolv.conf: they keep the node's hosts file and
// hostname.
func (a *Agent) writeEtcFiles(pod *corev1.Pod, podIPs []string, dir string) (etcFiles, error) {
	var f etcFiles
	node, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !os.IsNotExist(err) {
		return f, err
	}
	rc := PodResolvConf(pod, ClusterDNS{Server: a.cfg.ClusterDNS, Domain: a.cfg.ClusterDomain}, ParseResolvConf(node))
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return "", err
		}
		return p, os.Rename(tmp, p)
	}
	if f.resolvConf, err = write("resolv.conf", []byte(rc.String())); err != nil {
		return f, err
	}
	if pod.Spec.HostNetwork {
		return f, nil
	}
	if f.hosts, err = write("hosts", PodHosts(pod, podIPs, a.cfg.ClusterDomain)); err != nil {
		return f, err
	}
	if f.hostname, err = write("hostname", []byte(kernelHostname(pod, a.cfg.ClusterDomain)+"\n")); err != nil {
		return f, err
	}
	return f, nil
}

// mounts returns the container mounts of the files, skipping any path the
// container mounts a volume at itself (the kubelet leaves those alone).
func (f etcFiles) mounts(c *corev1.Container) []Mount {
	taken := map[string]bool{}
	for _, m := range c.VolumeMounts {
		taken[filepath.Clean(m.MountPath)] = true
	}
	var out []Mount
	for _, m := range []Mount{{Source: f.resolvConf, Target: "/etc/resolv.conf"}, {Source: f.hosts, Target: "/etc/hosts"}, {Source: f.hostname, Target: "/etc/hostname"}} {
		if m.Source != "" && !taken[m.Target] {
			out = append(out, m)
		}
	}
	return out
}

// nodeResolvConf is the node host's own resolv.conf. The sandbox has no
// upstream resolver, so it names no nameserver: glibc and busybox then ask
// 127.0.0.1, where nothing listens, and a lookup fails at once with
// "connection refused" instead of waiting out a timeout.
const nodeResolvConf = "# strait sandbox node: no upstream DNS resolver on this machine.\n"

// installNodeResolvConf gives the node host its own /etc/resolv.conf in the
// agent's private mount namespace: written to dir and bind-mounted over
// /etc/resolv.conf (or, when that is a symlink into the node's own /run,
// written there).
func installNodeResolvConf(dir string) error {
	target := "/etc/resolv.conf"
	if link, err := os.Readlink(target); err == nil {
		if !filepath.IsAbs(link) {
			link = filepath.Join("/etc", link)
		}
		if resolved := filepath.Clean(link); strings.HasPrefix(resolved, "/run/") {
			// /run is the node's private tmpfs: the link's target is ours.
			if err := os.MkdirAll(filepath.Dir(resolved), 0o755); err != nil {
				return err
			}
			return os.WriteFile(resolved, []byte(nodeResolvConf), 0o644)
		}
		target = link
	}
	src := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(src, []byte(nodeResolvConf), 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(target); os.IsNotExist(err) {
		return fmt.Errorf("%s does not exist to mount the node's resolv.conf on", target)
	}
	return bindMount(src, target, false)
}
