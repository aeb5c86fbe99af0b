package lighthouse

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Globalnet (docs/globalnet.md): when the exporting cluster has a global
// CIDR (its own Cluster record, named after its cluster ID in the component
// namespace, lists spec.globalCIDRs), its pod and Service addresses may be
// another cluster's too, so its slice records carry the global IPs that
// the Globalnet controller allots (GlobalIngressIP status.allocatedIP)
// instead:
//
//   - a ClusterIP Service: one record with one endpoint, the Service's
//     global IP, and the Service's ports (the global IP is an externalIP
//     of a Service of the same ports, so traffic goes to the Service port,
//     not to the pods' target ports). The endpoint is ready when one of the
//     Service's local endpoints is.
//   - a headless Service: each local slice's record, with every endpoint's
//     address replaced by its pod's global IP; endpoints whose pod has none
//     (yet) are left out.
//
// Until an address exists the export's Ready condition stays
// Unknown/Pending, its message naming what is missing (syncSlices).

// GlobalSliceName is the local slice name that the one slice record of a
// Globalnet ClusterIP Service is named after (SliceRecordName): no real
// EndpointSlice has it, since the EndpointSlice controller's names end in
// a random suffix after a dash.
const GlobalSliceName = "globalnet"

// isGlobalnet reports whether this cluster uses Globalnet: its own Cluster
// record has global CIDRs. A missing record (no gateway has published it
// yet) is a cluster without Globalnet.
func (x *exporter) isGlobalnet(ctx context.Context) (bool, error) {
	var cl v1.Cluster
	if err := x.c.Get(ctx, client.ObjectKey{Namespace: x.cfg.Namespace, Name: x.cfg.ClusterID}, &cl); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("read cluster %s's Cluster record: %w", x.cfg.ClusterID, err)
	}
	return len(cl.Spec.GlobalCIDRs) > 0, nil
}

// globalIPs are the global IPs of one Service's GlobalIngressIPs.
type globalIPs struct {
	service netip.Addr            // ClusterIPService
	pods    map[string]netip.Addr // HeadlessServicePod, by pod name
	// why says, for a ClusterIPService object without an address, what its
	// Allocated condition says ("" when it has none).
	why string
}

// globalIPsOf reads the global IPs of Service svc from the GlobalIngressIPs
// in its namespace. An object whose allocatedIP does not parse counts as
// one without an address.
func globalIPsOf(ctx context.Context, c client.Reader, svc *corev1.Service) (globalIPs, error) {
	var list v1.GlobalIngressIPList
	if err := c.List(ctx, &list, client.InNamespace(svc.Namespace)); err != nil {
		return globalIPs{}, fmt.Errorf("list GlobalIngressIPs in %s: %w", svc.Namespace, err)
	}
	out := globalIPs{pods: map[string]netip.Addr{}}
	for i := range list.Items {
		g := &list.Items[i]
		if g.Spec.ServiceRef.Name != svc.Name || g.DeletionTimestamp != nil {
			continue
		}
		ip, err := netip.ParseAddr(string(g.Status.AllocatedIP))
		switch g.Spec.Target {
		case v1.ClusterIPService:
			if err == nil {
				out.service = ip
			} else if cond := meta.FindStatusCondition(g.Status.Conditions, v1.ConditionAllocated); cond != nil && cond.Status == metav1.ConditionFalse {
				out.why = cond.Reason + ": " + cond.Message
			}
		case v1.HeadlessServicePod:
			if err == nil && g.Spec.PodRef != nil {
				out.pods[g.Spec.PodRef.Name] = ip
			}
		}
	}
	return out, nil
}

// GlobalServiceRecord is the one slice record of ClusterIP Service svc of
// a Globalnet cluster, in namespace ns: one endpoint at ip, ready when
// ready is, with the Service's ports (name, protocol, app protocol and the
// Service's port number).
func GlobalServiceRecord(svc *corev1.Service, ip netip.Addr, ready bool, cluster, ns string) *discoveryv1.EndpointSlice {
	rec := SliceRecord(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: svc.Namespace, Name: GlobalSliceName},
		AddressType: addressType(ip),
	}, svc.Name, cluster, ns)
	for _, p := range svc.Spec.Ports {
		rec.Ports = append(rec.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.Port), AppProtocol: p.AppProtocol})
	}
	rec.Endpoints = []discoveryv1.Endpoint{{
		Addresses:  []string{ip.String()},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
	}}
	return rec
}

// GlobalHeadlessRecord is SliceRecord for a headless Service of a
// Globalnet cluster: each endpoint's addresses become its pod's global IP
// (pods maps pod names to them). Endpoints without a pod, or whose pod has
// no global IP of the slice's address family, are left out; missing counts
// the ready ones among them.
func GlobalHeadlessRecord(slice *discoveryv1.EndpointSlice, name, cluster, ns string, pods map[string]netip.Addr) (rec *discoveryv1.EndpointSlice, missing []string) {
	rec = SliceRecord(slice, name, cluster, ns)
	rec.Endpoints = nil
	for _, ep := range slice.Endpoints {
		var pod string
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
			pod = ep.TargetRef.Name
		}
		ip, ok := pods[pod]
		if !ok || addressType(ip) != slice.AddressType {
			if ptr.Deref(ep.Conditions.Ready, true) {
				missing = append(missing, cmp.Or(pod, strings.Join(ep.Addresses, ",")))
			}
			continue
		}
		ep := *ep.DeepCopy()
		ep.Addresses = []string{ip.String()}
		ep.TargetRef, ep.Hints = nil, nil
		rec.Endpoints = append(rec.Endpoints, ep)
	}
	return rec, missing
}

// anyReady reports whether one of the slices has a ready endpoint.
func anyReady(local []discoveryv1.EndpointSlice) bool {
	for _, s := range local {
		if slices.ContainsFunc(s.Endpoints, func(ep discoveryv1.Endpoint) bool { return ptr.Deref(ep.Conditions.Ready, true) }) {
			return true
		}
	}
	return false
}

// addressType is the EndpointSlice address type of ip's family.
func addressType(ip netip.Addr) discoveryv1.AddressType {
	if ip.Is4() {
		return discoveryv1.AddressTypeIPv4
	}
	return discoveryv1.AddressTypeIPv6
}
