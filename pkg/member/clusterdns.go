package member

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"strait.dev/strait/deploy/manifests"
	"strait.dev/strait/pkg/corefile"
	"strait.dev/strait/pkg/kubeapply"
)

// The cluster's own DNS, as kubeadm installs it: CoreDNS reading the key
// CorefileKey of ConfigMap kube-system/coredns.
const (
	CoreDNSNamespace = metav1.NamespaceSystem
	CoreDNSConfigMap = "coredns"
	CorefileKey      = "Corefile"
	// addonManagerMode is the label by which the addon manager of some
	// distributions says it reconciles an object back to its own copy.
	addonManagerMode = "addonmanager.kubernetes.io/mode"
)

// dnsServers reads the cluster IPs of strait-dns's Service in namespace
// (manifests.DNSServiceName), one per family the Service has.
func dnsServers(ctx context.Context, cs kubernetes.Interface, namespace string) ([]netip.Addr, error) {
	svc, err := cs.CoreV1().Services(namespace).Get(ctx, manifests.DNSServiceName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read Service %s/%s: %w", namespace, manifests.DNSServiceName, err)
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("service %s/%s has no cluster IP (%q)", namespace, manifests.DNSServiceName, ips)
	}
	return out, nil
}

// addClusterDNSForward makes the Corefile of kube-system/coredns forward
// clusterset.local to servers, through the marked block of pkg/corefile,
// and says what it did through logf. A second call with the same servers
// writes nothing.
//
// The ConfigMap is not Strait's: it is read, edited and written back with
// an Update that carries the resourceVersion read (the apiserver refuses it
// if anyone wrote the ConfigMap in between, and the edit is made again on
// the fresh copy), never applied: a server-side apply of the Corefile key
// would make straitctl an owner of the whole Corefile text.
//
// Where the cluster's DNS is not a CoreDNS this recognises (no such
// ConfigMap, no Corefile key), where the Corefile serves clusterset.local
// in a block of its own, and where its strait markers do not pair up, it
// writes nothing and logs why, with the block to add by hand; these are not
// errors. Errors: the apiserver's, wrapped.
func addClusterDNSForward(ctx context.Context, cs kubernetes.Interface, servers []netip.Addr, logf func(string, ...any)) error {
	cms := cs.CoreV1().ConfigMaps(CoreDNSNamespace)
	byHand := func(why string, args ...any) {
		logf(why+"; to resolve %s names in this cluster, add this server block to the cluster's DNS configuration by hand:\n%s",
			append(args, corefile.Zone, strings.TrimSuffix(corefile.Block(servers, "\n"), "\n"))...)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, CoreDNSConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			byHand("the cluster has no ConfigMap %s/%s (its DNS is not a CoreDNS that straitctl recognises)", CoreDNSNamespace, CoreDNSConfigMap)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ConfigMap %s/%s: %w", CoreDNSNamespace, CoreDNSConfigMap, err)
		}
		text, ok := cm.Data[CorefileKey]
		if !ok {
			byHand("ConfigMap %s/%s has no key %s (the cluster's DNS is not a CoreDNS that straitctl recognises)", CoreDNSNamespace, CoreDNSConfigMap, CorefileKey)
			return nil
		}
		out, err := corefile.SetForward(text, servers)
		var served *corefile.ZoneServedError
		switch {
		case errors.As(err, &served):
			logf("left the Corefile of %s/%s alone: %v; make it forward to %s for Strait's answers", CoreDNSNamespace, CoreDNSConfigMap, err, addrs(servers))
			return nil
		case errors.Is(err, corefile.ErrMarkers):
			byHand("left the Corefile of %s/%s alone: %v", CoreDNSNamespace, CoreDNSConfigMap, err)
			return nil
		case err != nil:
			return err
		case out == text:
			logf("the cluster's DNS (%s/%s) already forwards %s to %s", CoreDNSNamespace, CoreDNSConfigMap, corefile.Zone, addrs(servers))
			return nil
		}
		cm.Data[CorefileKey] = out
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: kubeapply.FieldManagerCLI}); err != nil {
			return fmt.Errorf("update ConfigMap %s/%s: %w", CoreDNSNamespace, CoreDNSConfigMap, err)
		}
		logf("the cluster's DNS (%s/%s) forwards %s to %s", CoreDNSNamespace, CoreDNSConfigMap, corefile.Zone, addrs(servers))
		if cm.Labels[addonManagerMode] == "Reconcile" {
			logf("warning: %s/%s is labelled %s=Reconcile: the addon manager may put its own Corefile back", CoreDNSNamespace, CoreDNSConfigMap, addonManagerMode)
		}
		return nil
	})
}

// removeClusterDNSForward removes the marked block from the Corefile of
// kube-system/coredns, and nothing else, with the same optimistic Update as
// addClusterDNSForward. A missing ConfigMap, key or block is nothing to do;
// markers that do not pair up are logged and left for the user. Errors: the
// apiserver's, wrapped.
func removeClusterDNSForward(ctx context.Context, cs kubernetes.Interface, logf func(string, ...any)) error {
	cms := cs.CoreV1().ConfigMaps(CoreDNSNamespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cms.Get(ctx, CoreDNSConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ConfigMap %s/%s: %w", CoreDNSNamespace, CoreDNSConfigMap, err)
		}
		text, ok := cm.Data[CorefileKey]
		if !ok {
			return nil
		}
		out, found, err := corefile.RemoveForward(text)
		if err != nil {
			logf("left the Corefile of %s/%s alone: %v; remove the %s block between %q and %q by hand",
				CoreDNSNamespace, CoreDNSConfigMap, err, corefile.Zone, corefile.BeginMarker, corefile.EndMarker)
			return nil
		}
		if !found {
			return nil
		}
		cm.Data[CorefileKey] = out
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: kubeapply.FieldManagerCLI}); err != nil {
			return fmt.Errorf("update ConfigMap %s/%s: %w", CoreDNSNamespace, CoreDNSConfigMap, err)
		}
		logf("removed the %s forward from the cluster's DNS (%s/%s)", corefile.Zone, CoreDNSNamespace, CoreDNSConfigMap)
		return nil
	})
}

// addrs is servers as "a, b".
func addrs(servers []netip.Addr) string {
	s := ""
	for i, a := range servers {
		if i > 0 {
			s += ", "
		}
		s += a.String()
	}
	return s
}
