package lighthouse

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/test/kubetest"
)

// A clusterset whose members have different service IP families: a
// dual-stack cluster exports Services of both family orders and of IPv4
// alone; an IPv4-only and an IPv6-only cluster import them. Each import
// gets one clusterset IP per family the Service and the importing cluster
// both have, in the Service's order, and says those families in its
// spec.ipFamilies; where they share none (an IPv4
// Service in an IPv6-only cluster), the import has no IP and its Ready
// condition says IPFamilyNotSupported, naming both sides' families,
// instead of the derived Service being refused again and again with only
// the agent's log to say so.
func TestImportFamilies(t *testing.T) {
	f := buildFabric(t, false, map[string]kubetest.Options{
		"dual": {APIServerArgs: []string{"--service-cluster-ip-range=10.0.0.0/24,fd00:0:0:1::/112"}},
		"v6":   {APIServerArgs: []string{"--service-cluster-ip-range=fd00:0:0:2::/112"}},
	}, "dual", "v4", "v6")
	for _, m := range f.members {
		mustCreate(t, m.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}})
	}
	v4, v6 := corev1.IPv4Protocol, corev1.IPv6Protocol
	exported := map[string][]corev1.IPFamily{"v4v6": {v4, v6}, "v6v4": {v6, v4}, "v4": {v4}}
	for name, fams := range exported {
		svc := service("app", name, svcPort("http", corev1.ProtocolTCP, 80))
		svc.Spec.IPFamilies = fams
		svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		if len(fams) == 2 {
			svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		}
		mustCreate(t, f.members["dual"].c, svc, serviceExport("app", name, nil))
	}
	// A dual-stack headless Service, with a slice of each family.
	hl := service("app", "hl", svcPort("http", corev1.ProtocolTCP, 80))
	hl.Spec.ClusterIP = corev1.ClusterIPNone
	hl.Spec.IPFamilies = []corev1.IPFamily{v4, v6}
	hl.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
	slice6 := localSlice("app", "hl", "hl-v6", hl.Spec.Ports, "fd00:10::5")
	slice6.AddressType = discoveryv1.AddressTypeIPv6
	mustCreate(t, f.members["dual"].c, hl, localSlice("app", "hl", "hl-v4", hl.Spec.Ports, "10.1.0.5"), slice6, serviceExport("app", "hl", nil))
	// The families of each import's IPs, by importing cluster; "none
	// IPFamilyNotSupported" where the import has no IP and says why.
	want := map[string]map[string]string{
		"dual": {"v4v6": "IPv4,IPv6", "v6v4": "IPv6,IPv4", "v4": "IPv4"},
		"v4":   {"v4v6": "IPv4", "v6v4": "IPv4", "v4": "IPv4"},
		"v6":   {"v4v6": "IPv6", "v6v4": "IPv6", "v4": "none IPFamilyNotSupported"},
	}
	for id, services := range want {
		for name, w := range services {
			eventually(t, fmt.Sprintf("%s imports app/%s with %s", id, name, w), func() string {
				if got := importFamilies(f.members[id].c, "app", name); got != w {
					return got
				}
				return ""
			})
		}
	}
	// The headless import: the families and the endpoints of the families
	// the importing cluster has, none of the other family's.
	for id, w := range map[string]string{"dual": "IPv4,IPv6 10.1.0.5 fd00:10::5", "v4": "IPv4 10.1.0.5", "v6": "IPv6 fd00:10::5"} {
		eventually(t, fmt.Sprintf("%s imports headless app/hl as %s", id, w), func() string {
			if got := headlessImport(f.members[id].c, "app", "hl"); got != w {
				return got
			}
			return ""
		})
	}
	// The message names the Service's families and the cluster's.
	var si mcsv1beta1.ServiceImport
	if err := f.members["v6"].c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: "v4"}, &si); err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(si.Status.Conditions, string(mcsv1beta1.ServiceImportConditionReady))
	if cond == nil {
		t.Fatalf("v6's import of app/v4 has no Ready condition: %+v", si.Status)
	}
	for _, s := range []string{"IPv4", "IPv6"} {
		if !strings.Contains(cond.Message, s) {
			t.Errorf("Ready message %q does not name %s", cond.Message, s)
		}
	}
}

// importFamilies renders the families of the IPs of ServiceImport ns/name
// ("IPv4,IPv6"), or "none <reason>" with the reason of its Ready condition
// when it has none, or the mismatch when its spec.ipFamilies are not its
// IPs' families.
func importFamilies(c client.Client, ns, name string) string {
	var si mcsv1beta1.ServiceImport
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &si); err != nil {
		return err.Error()
	}
	if len(si.Spec.IPs) == 0 {
		reason := "(no Ready condition)"
		if cond := meta.FindStatusCondition(si.Status.Conditions, string(mcsv1beta1.ServiceImportConditionReady)); cond != nil {
			reason = cond.Reason
		}
		return "none " + reason
	}
	var fams []string
	for _, ip := range si.Spec.IPs {
		a, err := netip.ParseAddr(ip)
		switch {
		case err != nil:
			fams = append(fams, "?"+ip)
		case a.Is4():
			fams = append(fams, "IPv4")
		default:
			fams = append(fams, "IPv6")
		}
	}
	var spec []string
	for _, f := range si.Spec.IPFamilies {
		spec = append(spec, string(f))
	}
	if got, want := strings.Join(fams, ","), strings.Join(spec, ","); got != want {
		return fmt.Sprintf("ips of %s but spec.ipFamilies %s", got, want)
	}
	return strings.Join(fams, ",")
}

// headlessImport renders a headless import's spec.ipFamilies and the
// addresses of its imported slices: "IPv4,IPv6 10.1.0.5 fd00:10::5".
func headlessImport(c client.Client, ns, name string) string {
	ctx := context.Background()
	var si mcsv1beta1.ServiceImport
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &si); err != nil {
		return err.Error()
	}
	var fams []string
	for _, f := range si.Spec.IPFamilies {
		fams = append(fams, string(f))
	}
	var list discoveryv1.EndpointSliceList
	if err := c.List(ctx, &list, client.InNamespace(ns), importedSlices(name)); err != nil {
		return err.Error()
	}
	var addrs []string
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
	}
	sort.Strings(addrs)
	return strings.Join(append([]string{strings.Join(fams, ",")}, addrs...), " ")
}
