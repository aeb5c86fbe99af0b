package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// TestMCSFamilies is the Multi-Cluster Services API in every IP family of
// the dual-stack or the IPv6-only sandbox (STRAIT_E2E_SANDBOX dual or
// ipv6), as an app team and a platform team use it: c1 and c2 joined with
// straitctl join's defaults (discovered pod and service CIDRs of every
// family, WireGuard; c2 behind NAT44 and NAT66), ClusterIP Services of
// every family order the sandbox has and a headless one exported from c2
// with kubectl, and a network-tools pod in c1 asking its cluster's DNS
// with dig and connecting with curl:
//
//   - each ServiceImport, in c1 and in c2, has one IP per family of the
//     Service, in the Service's order;
//   - <svc>.<ns>.svc.clusterset.local answers A with the import's IPv4
//     IP and AAAA with its IPv6 one, and NODATA (with the zone's SOA,
//     never NXDOMAIN) for a family the Service lacks;
//   - the headless Service answers A with its pods' IPv4 addresses and
//     AAAA with their IPv6 ones, for the service name and for each pod's
//     <hostname>.c2.<svc>... name;
//   - HTTP to every clusterset IP, and by name with curl -4 and -6, is
//     answered by c2's pod;
//   - join --globalnet of a cluster with IPv6 CIDRs (c3) is refused with a
//     message naming Globalnet and IPv6, and leaves c3 untouched.
func TestMCSFamilies(t *testing.T) {
	needFamilies(t)
	leaveClusterSet(t) // this test joins clusters its own way
	start := time.Now()
	state, err := layout.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if len(state.Clusters) < 3 {
		t.Fatalf("the sandbox has %d clusters; this test needs three (dualArgs)", len(state.Clusters))
	}
	// The sandbox's service families, primary first.
	var families []corev1.IPFamily
	for _, p := range state.Clusters[0].ServiceCIDRs {
		families = append(families, familyOf(p.Addr()))
	}
	info := deployBroker(t)

	t.Run("join --globalnet of a cluster with IPv6 CIDRs is refused", func(t *testing.T) {
		out, err := straitctl(t, "join", info, "--kubeconfig", adminKubeconfig("c3"), "--clusterid", "c3",
			"--gateway-nodes", "c3-n1", "--globalnet")
		if err == nil {
			t.Fatalf("join --globalnet of c3 (families %v) succeeded:\n%s", families, out)
		}
		v6 := ""
		for _, p := range state.Clusters[2].ServiceCIDRs {
			if p.Addr().Is6() {
				v6 = p.Masked().String()
			}
		}
		for _, want := range []string{"Globalnet is IPv4-only", "IPv6", v6} {
			if !strings.Contains(out, want) {
				t.Errorf("join --globalnet of c3: the message lacks %q:\n%s", want, out)
			}
		}
		// Refused before it wrote anything: no component namespace.
		_, err = kubeClient(t, "c3").CoreV1().Namespaces().Get(context.Background(), v1.ComponentNamespace, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("c3 after the refused join: namespace %s: %v, want NotFound", v1.ComponentNamespace, err)
		}
	})

	// The workload first (its pods start while nothing else runs), then
	// the joins.
	const ns = familiesNS
	mcsNamespace(t, ns, "c1", "c2")
	type clusterSetIPService struct {
		name     string
		families []corev1.IPFamily
	}
	var services []clusterSetIPService
	if len(families) == 2 {
		services = append(services,
			clusterSetIPService{"v4v6", []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}},
			clusterSetIPService{"v6v4", []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}},
			clusterSetIPService{"v4", []corev1.IPFamily{corev1.IPv4Protocol}})
	}
	services = append(services, clusterSetIPService{"v6", []corev1.IPFamily{corev1.IPv6Protocol}})
	ports := []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}
	for _, s := range services {
		createService(t, "c2", ns, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: s.name},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "srv"}, Ports: ports,
				IPFamilies: s.families, IPFamilyPolicy: ptr.To(familyPolicy(s.families))},
		})
	}
	createService(t, "c2", ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"}, Ports: ports,
			IPFamilies: families, IPFamilyPolicy: ptr.To(familyPolicy(families))},
	})
	// db's pods: one with a hostname (db-0.c2.db...), one without (its
	// names derive from its addresses, one per family).
	db0, dbx := serverPod("db-c2", "db"), serverPod("dbx-c2", "db")
	db0.Spec.Hostname, db0.Spec.Subdomain = "db-0", "db"
	createRunning(t, "c2", kubeClient(t, "c2"), ns, serverPod("srv-c2", "srv"), db0, dbx)
	createRunning(t, "c1", kubeClient(t, "c1"), ns, toolPod("tools"))
	podIPs := func(name string) []netip.Addr {
		p, err := kubeClient(t, "c2").CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Addr
		for _, ip := range p.Status.PodIPs {
			out = append(out, netip.MustParseAddr(ip.IP))
		}
		if len(out) != len(families) {
			t.Fatalf("pod %s has IPs %v; want one per family %v", name, out, families)
		}
		return out
	}
	db0IPs, dbxIPs := podIPs("db-c2"), podIPs("dbx-c2")
	t.Logf("the workload is up after %v", time.Since(start).Round(time.Second))

	joined := time.Now()
	joinDefaults(t, info, "c1", "c2")
	waitConnected(t, []string{"c1", "c2"})
	for _, c := range []string{"c1", "c2"} {
		cl := ctrlClient(t, c)
		waitFor(t, 2*time.Minute, "the Lighthouse Deployment in "+c, func(ctx context.Context) (bool, error) {
			var d appsv1.Deployment
			if err := cl.Get(ctx, types.NamespacedName{Namespace: v1.ComponentNamespace, Name: "strait-lighthouse"}, &d); err != nil {
				return false, nil
			}
			return d.Status.AvailableReplicas >= 1 && d.Status.ObservedGeneration == d.Generation, nil
		})
	}
	t.Logf("c1 and c2 joined and connected, Lighthouse available, %v after the joins began", time.Since(joined).Round(time.Second))

	exported := time.Now()
	for _, s := range services {
		exportService(t, "c2", ns, s.name, nil)
	}
	exportService(t, "c2", ns, "db", nil)

	zone := "svc.clusterset.local."
	for _, s := range services {
		t.Run(fmt.Sprintf("ClusterSetIP %s %v", s.name, s.families), func(t *testing.T) {
			var ips []string
			for _, c := range []string{"c1", "c2"} {
				si := waitImport(t, c, ns, s.name, fmt.Sprintf("with one IP per family %v", s.families), func(si *mcsv1beta1.ServiceImport) bool {
					return len(si.Spec.IPs) == len(s.families)
				})
				if got := ipFamilies(si.Spec.IPs); !slices.Equal(got, s.families) || !slices.Equal(si.Spec.IPFamilies, s.families) {
					t.Errorf("%s: ServiceImport %s: spec.ips %v (families %v), spec.ipFamilies %v; want one IP per family in the Service's order %v",
						c, s.name, si.Spec.IPs, got, si.Spec.IPFamilies, s.families)
				}
				if c == "c1" {
					ips = si.Spec.IPs
				}
			}
			name := s.name + "." + ns + "." + zone
			waitDNS(t, name, "A", ofFamily(ips, corev1.IPv4Protocol))
			waitDNS(t, name, "AAAA", ofFamily(ips, corev1.IPv6Protocol))
			for _, ip := range ips {
				if who, client := waitCurl(t, "http://"+net.JoinHostPort(ip, "80")+"/"); who != "srv-c2" {
					t.Errorf("HTTP to %s answered by %q, want srv-c2 (client %s)", ip, who, client)
				}
			}
			// By name, as an application connects: curl -4 asks A, -6 AAAA.
			for _, f := range s.families {
				flag := map[corev1.IPFamily]string{corev1.IPv4Protocol: "-4", corev1.IPv6Protocol: "-6"}[f]
				if who, _ := waitCurl(t, flag, "http://"+strings.TrimSuffix(name, ".")+"/"); who != "srv-c2" {
					t.Errorf("curl %s http://%s/ answered by %q, want srv-c2", flag, name, who)
				}
			}
		})
	}

	t.Run(fmt.Sprintf("Headless db %v", families), func(t *testing.T) {
		waitImport(t, "c1", ns, "db", "headless from c2", func(si *mcsv1beta1.ServiceImport) bool {
			return si.Spec.Type == mcsv1beta1.Headless && slices.Equal(importClusters(si), []string{"c2"})
		})
		name := "db." + ns + "." + zone
		both := append(slices.Clone(db0IPs), dbxIPs...)
		for _, f := range []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol} {
			qtype := map[corev1.IPFamily]string{corev1.IPv4Protocol: "A", corev1.IPv6Protocol: "AAAA"}[f]
			waitDNS(t, name, qtype, ofFamily(addrStrings(both), f))
			waitDNS(t, "db-0.c2."+name, qtype, ofFamily(addrStrings(db0IPs), f))
		}
		// A pod without a hostname is named after each of its addresses:
		// each name has the records of its own family alone.
		for _, a := range dbxIPs {
			dashed := strings.ReplaceAll(strings.ReplaceAll(a.String(), ".", "-"), ":", "-")
			own, other := "A", "AAAA"
			if a.Is6() {
				own, other = other, own
			}
			waitDNS(t, dashed+".c2."+name, own, []string{a.String()})
			waitDNS(t, dashed+".c2."+name, other, nil)
		}
	})
	t.Logf("exports answered in DNS and over HTTP %v after the ServiceExports were applied; %v in all",
		time.Since(exported).Round(time.Second), time.Since(start).Round(time.Second))
}

// familiesNS is TestMCSFamilies's namespace, in c1 and c2.
const familiesNS = "mcs-families"

// joinDefaults joins clusters to the broker of info as "straitctl join" does
// by default (CIDRs discovered, WireGuard), with node n1 the gateway, all at
// once, and has them leave, all at once too, in the cleanup.
func joinDefaults(t *testing.T, info string, clusters ...string) {
	t.Helper()
	leaveAtCleanup(t, clusters)
	logs := make([]string, len(clusters))
	if errs := both(clusters, func(c string) error {
		out, err := straitctl(t, "join", info, "--kubeconfig", adminKubeconfig(c), "--clusterid", c, "--gateway-nodes", c+"-n1")
		if err != nil {
			return fmt.Errorf("join %s: %w\n%s", c, err, out)
		}
		logs[slices.Index(clusters, c)] = out
		return nil
	}); len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	for _, l := range logs {
		// Its first line names the CIDRs join discovered.
		t.Log(strings.SplitN(l, "\n", 2)[0])
	}
}

// waitDNS waits until dig from c1's tools pod (through the cluster's DNS)
// answers name's qtype with exactly want (sorted here), or, when want is
// empty, with NODATA: NOERROR, no answer and the zone's SOA (the MCS DNS
// specification: a name of the other family is no NXDOMAIN).
func waitDNS(t *testing.T, name, qtype string, want []string) {
	t.Helper()
	want = sortedOf(want...)
	var last digResult
	if err := poll(mcsWait, func(context.Context) (bool, error) {
		last = dig(t, "c1", familiesNS, name, qtype)
		if last.status != "NOERROR" || !slices.Equal(last.rdata(), want) {
			return false, nil
		}
		if len(want) == 0 {
			return len(last.answer) == 0 && len(last.authority) == 1 && len(last.authority[0]) > 3 && last.authority[0][3] == "SOA", nil
		}
		for _, rr := range last.answer {
			if len(rr) < 4 || rr[3] != qtype {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		what := fmt.Sprintf("%q", want)
		if len(want) == 0 {
			what = "NODATA with the SOA"
		}
		t.Errorf("dig %s %s from c1: status %s, answers %q; want %s\n%s", name, qtype, last.status, last.rdata(), what, last.raw)
	}
}

// waitCurl waits until curl (args, the URL last) from c1's tools pod gets
// the test workload's answer, and returns the pod that answered and the
// client address it saw.
func waitCurl(t *testing.T, args ...string) (pod, client string) {
	t.Helper()
	var last kubectlResult
	if err := poll(mcsWait, func(context.Context) (bool, error) {
		last = kubectl(t, "c1", append([]string{"exec", "-n", familiesNS, "tools", "--", "curl", "-s", "--max-time", "3"}, args...)...)
		var a struct{ Pod, Client string }
		if last.code != 0 || json.Unmarshal([]byte(strings.TrimSpace(last.stdout)), &a) != nil || a.Pod == "" {
			return false, nil
		}
		pod, client = a.Pod, a.Client
		return true, nil
	}); err != nil {
		t.Errorf("curl %v from c1 never got an answer: exit %d %s%s", args, last.code, last.stdout, last.stderr)
	}
	return pod, client
}

// familyOf is ip's family as the Service API names it.
func familyOf(ip netip.Addr) corev1.IPFamily {
	if ip.Is4() || ip.Is4In6() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// familyPolicy is the policy of a Service of families: RequireDualStack
// for two, so the apiserver refuses rather than drops one.
func familyPolicy(families []corev1.IPFamily) corev1.IPFamilyPolicy {
	if len(families) == 2 {
		return corev1.IPFamilyPolicyRequireDualStack
	}
	return corev1.IPFamilyPolicySingleStack
}

// ipFamilies are the families of ips, in their order ("?" for one that
// does not parse).
func ipFamilies(ips []string) []corev1.IPFamily {
	var out []corev1.IPFamily
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			out = append(out, "?")
			continue
		}
		out = append(out, familyOf(a))
	}
	return out
}

// ofFamily are the addresses of ips of family f, in their order.
func ofFamily(ips []string, f corev1.IPFamily) []string {
	var out []string
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && familyOf(a) == f {
			out = append(out, a.String())
		}
	}
	return out
}

func addrStrings(addrs []netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}
