package globalnet

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Objects are the API objects a node's NAT follows from, as listed.
type Objects struct {
	// Cluster is the ClusterGlobalEgressIP cluster-egress; nil if missing.
	Cluster *v1.ClusterGlobalEgressIP
	Egress  []v1.GlobalEgressIP
	Ingress []v1.GlobalIngressIP
	Pods    []corev1.Pod
}

// NATFactsFrom translates the objects into NATFacts for a cluster whose
// global CIDR is cidr: the addresses are the objects' status (as the
// leader allotted them); which GlobalEgressIP applies to a pod is the one
// selecting it by podSelector, else one without a podSelector in its
// namespace, each time the oldest (then the first by name); a pod of an
// exported headless Service leaves with its own global IP instead.
// hostNetwork pods (the node's address) and finished pods are left out;
// addresses outside cidr are ignored.
func NATFactsFrom(cidr netip.Prefix, o Objects) NATFacts {
	f := NATFacts{GlobalCIDR: cidr}
	if o.Cluster != nil {
		f.Cluster = statusAddrs(cidr, o.Cluster.Status.AllocatedIPs)
	}
	ingress := map[string]netip.Addr{} // ns/pod → global IP
	for _, g := range o.Ingress {
		if g.Spec.Target != v1.HeadlessServicePod || g.Spec.PodRef == nil {
			continue
		}
		if a, err := netip.ParseAddr(string(g.Status.AllocatedIP)); err == nil && cidr.Contains(a) {
			ingress[g.Namespace+"/"+g.Spec.PodRef.Name] = a
		}
	}
	egress := slices.Clone(o.Egress)
	slices.SortFunc(egress, func(a, b v1.GlobalEgressIP) int { return olderFirst(&a.ObjectMeta, &b.ObjectMeta) })
	for _, p := range o.Pods {
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		in := ingress[p.Namespace+"/"+p.Name]
		eg := podEgress(cidr, egress, &p)
		if !in.IsValid() && eg == nil {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			a, err := netip.ParseAddr(ip.IP)
			if err != nil || a.Is4() != cidr.Addr().Is4() {
				continue
			}
			f.Pods = append(f.Pods, PodNAT{IP: a, Ingress: in, Egress: eg})
		}
	}
	return f
}

// podEgress returns the addresses of the GlobalEgressIP (sorted oldest
// first) that applies to p, nil for none.
func podEgress(cidr netip.Prefix, egress []v1.GlobalEgressIP, p *corev1.Pod) []netip.Addr {
	var wide []netip.Addr
	for _, g := range egress {
		if g.Namespace != p.Namespace {
			continue
		}
		addrs := statusAddrs(cidr, g.Status.AllocatedIPs)
		if addrs == nil {
			continue
		}
		if g.Spec.PodSelector == nil {
			if wide == nil {
				wide = addrs
			}
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(g.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		return addrs
	}
	return wide
}

// statusAddrs parses a status's addresses; nil when any is not an address
// of cidr.
func statusAddrs(cidr netip.Prefix, ips []v1.IP) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		a, err := netip.ParseAddr(string(ip))
		if err != nil || !cidr.Contains(a) {
			return nil
		}
		out = append(out, a)
	}
	return out
}

// olderFirst orders objects by creation, then name.
func olderFirst(a, b *metav1.ObjectMeta) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
}
