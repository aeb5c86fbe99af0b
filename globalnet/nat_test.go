package globalnet

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

var globalCIDR = netip.MustParsePrefix("242.1.0.0/16")

func objMeta(ns, name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Duration(age) * time.Hour))}
}

func pod(ns, name, ip string, lbl map[string]string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: objMeta(ns, name, 0), Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: ip}, {IP: "fd01::" + name[len(name)-1:]}}}}
	p.Labels = lbl
	return p
}

func ips(s ...string) []v1.IP {
	var out []v1.IP
	for _, x := range s {
		out = append(out, v1.IP(x))
	}
	return out
}

func egressIP(ns, name string, age int, sel map[string]string, addrs ...string) v1.GlobalEgressIP {
	g := v1.GlobalEgressIP{ObjectMeta: objMeta(ns, name, age), Status: v1.GlobalEgressIPStatus{AllocatedIPs: ips(addrs...)}}
	if sel != nil {
		g.Spec.PodSelector = &metav1.LabelSelector{MatchLabels: sel}
	}
	return g
}

func headless(ns, svc, podName, ip string) v1.GlobalIngressIP {
	return v1.GlobalIngressIP{ObjectMeta: objMeta(ns, "pod-"+podName, 0),
		Spec:   v1.GlobalIngressIPSpec{Target: v1.HeadlessServicePod, ServiceRef: v1.ObjectRef{Name: svc}, PodRef: &v1.ObjectRef{Name: podName}},
		Status: v1.GlobalIngressIPStatus{AllocatedIP: v1.IP(ip)}}
}

// The golden NAT state of a gateway node: each case maps the objects to the
// chains, and listing them in any order gives the same state.
func TestComputeNATGolden(t *testing.T) {
	cluster := &v1.ClusterGlobalEgressIP{ObjectMeta: objMeta("", v1.ClusterEgressName, 9),
		Status: v1.GlobalEgressIPStatus{AllocatedIPs: ips("242.1.0.2", "242.1.0.3", "242.1.0.4", "242.1.0.5", "242.1.0.6", "242.1.0.7", "242.1.0.8", "242.1.0.9")}}
	empty := `# iptables-save
*nat
:STRAIT-GN-EGRESS - [0:0]
:STRAIT-GN-INGRESS - [0:0]
-A POSTROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-EGRESS
-A PREROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-INGRESS
COMMIT
`
	empty6 := `# ip6tables-save
*nat
:STRAIT-GN-EGRESS - [0:0]
:STRAIT-GN-INGRESS - [0:0]
-A POSTROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-EGRESS
-A PREROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-INGRESS
COMMIT
`
	for _, tc := range []struct {
		name string
		o    Objects
		want string
	}{{
		name: "nothing allotted yet: empty chains",
		o:    Objects{Pods: []corev1.Pod{pod("a", "p1", "10.1.0.1", nil)}},
		want: empty + empty6,
	}, {
		name: "the cluster's range for everything outside the global CIDR",
		o:    Objects{Cluster: cluster, Pods: []corev1.Pod{pod("a", "p1", "10.1.0.1", nil)}},
		want: `# iptables-save
*nat
:STRAIT-GN-EGRESS - [0:0]
:STRAIT-GN-INGRESS - [0:0]
-A POSTROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-EGRESS
-A PREROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-INGRESS
-A STRAIT-GN-EGRESS ! -s 242.1.0.0/16 -o strait-cable -m comment --comment "strait: cluster leaves with its ClusterGlobalEgressIP" -j SNAT --to-source 242.1.0.2-242.1.0.9
COMMIT
` + empty6,
	}, {
		name: "headless pods first, then pod selectors over namespace-wide objects, oldest first; hostNetwork and finished pods left out",
		o: Objects{Cluster: cluster,
			Egress: []v1.GlobalEgressIP{
				egressIP("a", "ns-wide", 5, nil, "242.1.0.10"),
				egressIP("a", "ns-wide-younger", 1, nil, "242.1.0.11"),
				egressIP("a", "web", 1, map[string]string{"app": "web"}, "242.1.0.12", "242.1.0.13"),
				egressIP("a", "web-younger", 0, map[string]string{"app": "web"}, "242.1.0.14"),
				egressIP("b", "not-allotted", 3, nil),
			},
			Ingress: []v1.GlobalIngressIP{headless("a", "db", "db0", "242.1.0.20"), headless("b", "db", "gone", "242.1.0.21")},
			Pods: func() []corev1.Pod {
				host := pod("a", "h1", "192.168.1.11", map[string]string{"app": "web"})
				host.Spec.HostNetwork = true
				done := pod("a", "w9", "10.1.0.9", map[string]string{"app": "web"})
				done.Status.Phase = corev1.PodSucceeded
				return []corev1.Pod{
					pod("a", "w1", "10.1.0.1", map[string]string{"app": "web"}),
					pod("a", "o2", "10.1.0.2", nil),
					pod("a", "db0", "10.1.0.3", map[string]string{"app": "web"}),
					pod("b", "x4", "10.1.0.4", nil),
					host, done,
				}
			}(),
		},
		want: `# iptables-save
*nat
:STRAIT-GN-EGRESS - [0:0]
:STRAIT-GN-INGRESS - [0:0]
-A POSTROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-EGRESS
-A PREROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-INGRESS
-A STRAIT-GN-EGRESS -s 10.1.0.3/32 -o strait-cable -m comment --comment "strait: headless pod leaves with its global IP" -j SNAT --to-source 242.1.0.20
-A STRAIT-GN-EGRESS -s 10.1.0.1/32 -o strait-cable -m comment --comment "strait: pod leaves with its GlobalEgressIP" -j SNAT --to-source 242.1.0.12-242.1.0.13
-A STRAIT-GN-EGRESS -s 10.1.0.2/32 -o strait-cable -m comment --comment "strait: pod leaves with its GlobalEgressIP" -j SNAT --to-source 242.1.0.10
-A STRAIT-GN-EGRESS ! -s 242.1.0.0/16 -o strait-cable -m comment --comment "strait: cluster leaves with its ClusterGlobalEgressIP" -j SNAT --to-source 242.1.0.2-242.1.0.9
-A STRAIT-GN-INGRESS -d 242.1.0.20/32 -m comment --comment "strait: global IP of a headless pod" -j DNAT --to-destination 10.1.0.3
COMMIT
` + empty6,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := ComputeNAT(NATFactsFrom(globalCIDR, tc.o)).String()
			if got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			for range 20 {
				o := tc.o
				o.Egress = shuffled(o.Egress)
				o.Ingress = shuffled(o.Ingress)
				o.Pods = shuffled(o.Pods)
				if again := ComputeNAT(NATFactsFrom(globalCIDR, o)).String(); again != got {
					t.Fatalf("another listing order gives:\n%s", again)
				}
			}
		})
	}
}

func shuffled[T any](xs []T) []T {
	out := append([]T(nil), xs...)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// An IPv6 global CIDR gives the same rules in the ip6tables chains (the
// forms ip6tables-save prints), the IPv4 chains empty.
func TestComputeNATIPv6(t *testing.T) {
	a := netip.MustParseAddr
	got := ComputeNAT(NATFacts{GlobalCIDR: netip.MustParsePrefix("fd42::/64"),
		Cluster: []netip.Addr{a("fd42::2"), a("fd42::3")},
		Pods:    []PodNAT{{IP: a("fd01::5"), Egress: []netip.Addr{a("fd42::4")}}, {IP: a("fd01::6"), Ingress: a("fd42::5")}},
	}).String()
	want := `# iptables-save
*nat
:STRAIT-GN-EGRESS - [0:0]
:STRAIT-GN-INGRESS - [0:0]
-A POSTROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-EGRESS
-A PREROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-INGRESS
COMMIT
# ip6tables-save
*nat
:STRAIT-GN-EGRESS - [0:0]
:STRAIT-GN-INGRESS - [0:0]
-A POSTROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-EGRESS
-A PREROUTING -m comment --comment "strait globalnet" -j STRAIT-GN-INGRESS
-A STRAIT-GN-EGRESS -s fd01::6/128 -o strait-cable -m comment --comment "strait: headless pod leaves with its global IP" -j SNAT --to-source fd42::5
-A STRAIT-GN-EGRESS -s fd01::5/128 -o strait-cable -m comment --comment "strait: pod leaves with its GlobalEgressIP" -j SNAT --to-source fd42::4
-A STRAIT-GN-EGRESS ! -s fd42::/64 -o strait-cable -m comment --comment "strait: cluster leaves with its ClusterGlobalEgressIP" -j SNAT --to-source fd42::2-fd42::3
-A STRAIT-GN-INGRESS -d fd42::5/128 -m comment --comment "strait: global IP of a headless pod" -j DNAT --to-destination fd01::6
COMMIT
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
