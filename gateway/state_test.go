package gateway

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// Public keys of remote gateways in the golden cases (32 bytes, base64).
const (
	keyC2a = "c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyC2b = "c2bAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	keyC3  = "c3AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
)

// localWG is this gateway (cluster c1) with the WireGuard driver.
func localWG() v1.EndpointSpec {
	return v1.EndpointSpec{ClusterID: "c1", Hostname: "gw1", PrivateIPs: v1.DualStackIPs{"192.168.1.1"},
		PublicIPs: v1.DualStackIPs{"198.18.1.1"}, NATDiscoveryPort: 4490, Subnets: []v1.CIDR{"10.1.0.0/16", "10.101.0.0/16"},
		CableDriver: v1.CableDriverWireGuard, WireGuard: &v1.WireGuardConfig{PublicKey: "c1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", Port: 4500},
		HealthCheckIPs: v1.DualStackIPs{"10.1.0.1"}}
}

// remote is a remote gateway's Endpoint, as the syncer imports it.
func remote(name, cluster string, epoch int, mod func(*v1.EndpointSpec)) v1.Endpoint {
	ep := v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.ComponentNamespace,
			Labels:      map[string]string{v1.ClusterIDLabel: cluster},
			Annotations: map[string]string{v1.GatewayEpochAnnotation: strconv.Itoa(epoch)}},
		Spec: v1.EndpointSpec{ClusterID: v1.ClusterID(cluster), Hostname: name, PrivateIPs: v1.DualStackIPs{"192.168.2.1"},
			PublicIPs: v1.DualStackIPs{"198.18.2.1"}, NATDiscoveryPort: 4490, Subnets: []v1.CIDR{"10.2.0.0/16", "10.102.0.0/16"},
			CableDriver: v1.CableDriverWireGuard, WireGuard: &v1.WireGuardConfig{PublicKey: keyC2a, Port: 4500},
			HealthCheckIPs: v1.DualStackIPs{"10.2.0.1"}},
	}
	if mod != nil {
		mod(&ep.Spec)
	}
	return ep
}

func facts(local v1.EndpointSpec, eps ...v1.Endpoint) Facts {
	return Facts{ClusterID: "c1", Local: local, Cable: cabledriver.Settings{Port: 4500, PrivateKey: "secret"},
		HealthCheckPort: 4804, Endpoints: eps}
}

var stateCases = []struct {
	name  string
	facts Facts
	want  string
}{
	{"no remotes", facts(localWG()), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip 10.1.0.1
`},
	{"one remote, this gateway behind NAT", func() Facts {
		l := localWG()
		l.NATTraversal = true
		return facts(l, remote("c2-gw1", "c2", 1, nil))
	}(), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip 10.1.0.1
peer c2-gw1 endpoint 198.18.2.1:4500 key c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= keepalive 25s subnets 10.2.0.0/16,10.102.0.0/16
route 10.2.0.0/16
route 10.102.0.0/16
health c2-gw1 10.2.0.1:4804
discover c2-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
connection c2-gw1 cluster c2 using 198.18.2.1 nat true status connecting "no health-check address published"
`},
	{"failover: the higher epoch wins", facts(localWG(),
		remote("c2-gw1", "c2", 1, nil),
		remote("c2-gw2", "c2", 2, func(s *v1.EndpointSpec) {
			s.PublicIPs, s.WireGuard.PublicKey = v1.DualStackIPs{"198.18.2.2"}, keyC2b
		}),
		remote("c3-gw1", "c3", 0, func(s *v1.EndpointSpec) {
			s.PublicIPs, s.PrivateIPs, s.Subnets, s.HealthCheckIPs = v1.DualStackIPs{"198.18.3.1"}, v1.DualStackIPs{"192.168.3.1"}, []v1.CIDR{"10.3.0.0/16"}, v1.DualStackIPs{"10.3.0.1"}
			s.WireGuard.PublicKey = keyC3
		})), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip 10.1.0.1
peer c2-gw2 endpoint 198.18.2.2:4500 key c2bAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= keepalive off subnets 10.2.0.0/16,10.102.0.0/16
peer c3-gw1 endpoint 198.18.3.1:4500 key c3AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= keepalive off subnets 10.3.0.0/16
route 10.2.0.0/16
route 10.3.0.0/16
route 10.102.0.0/16
health c2-gw2 10.2.0.1:4804
health c3-gw1 10.3.0.1:4804
discover c2-gw2 private 192.168.2.1:4490 public 198.18.2.2:4490
discover c3-gw1 private 192.168.3.1:4490 public 198.18.3.1:4490
connection c2-gw2 cluster c2 using 198.18.2.2 nat false status connecting "no health-check address published"
connection c3-gw1 cluster c3 using 198.18.3.1 nat false status connecting "no health-check address published"
skip c2-gw1: superseded by c2-gw2 (epoch 2, this one 1)
`},
	{"a remote with another driver is an error, not a peer", facts(localWG(),
		remote("c2-gw1", "c2", 1, func(s *v1.EndpointSpec) {
			s.CableDriver, s.WireGuard, s.VXLAN = v1.CableDriverVXLAN, nil, &v1.VXLANConfig{VNI: 100, Port: 4800}
		})), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip 10.1.0.1
discover c2-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
connection c2-gw1 cluster c2 using 198.18.2.1 nat false status error "the remote gateway uses vxlan, this one wireguard"
skip c2-gw1: the remote gateway uses vxlan, this one wireguard
`},
	{"VXLAN: a VNI that differs", func() Facts {
		l := localWG()
		l.CableDriver, l.WireGuard, l.VXLAN = v1.CableDriverVXLAN, nil, &v1.VXLANConfig{VNI: 100, Port: 4800}
		vx := func(vni int32) func(*v1.EndpointSpec) {
			return func(s *v1.EndpointSpec) {
				s.CableDriver, s.WireGuard, s.VXLAN = v1.CableDriverVXLAN, nil, &v1.VXLANConfig{VNI: vni, Port: 4800}
			}
		}
		f := facts(l, remote("c2-gw1", "c2", 1, vx(100)), remote("c3-gw1", "c3", 1, vx(200)))
		f.Cable = cabledriver.Settings{Port: 4800, VNI: 100}
		return f
	}(), `cable vxlan port 4800 vni 100 private-key none
health-check-ip 10.1.0.1
peer c2-gw1 endpoint 198.18.2.1:4800 key none keepalive off subnets 10.2.0.0/16,10.102.0.0/16
route 10.2.0.0/16
route 10.102.0.0/16
health c2-gw1 10.2.0.1:4804
discover c2-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
discover c3-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
connection c2-gw1 cluster c2 using 198.18.2.1 nat false status connecting "no health-check address published"
connection c3-gw1 cluster c3 using 198.18.2.1 nat false status error "VNI 200 differs from this gateway's 100"
skip c3-gw1: VNI 200 differs from this gateway's 100
`},
	{"malformed remote Endpoints are skipped with a reason", facts(localWG(),
		remote("c2-gw1", "c2", 1, func(s *v1.EndpointSpec) { s.Subnets = append(s.Subnets, "10.2.0.0/33") }),
		remote("c3-gw1", "c3", 1, func(s *v1.EndpointSpec) { s.PublicIPs = v1.DualStackIPs{"not-an-ip"} }),
		remote("c4-gw1", "c4", 1, func(s *v1.EndpointSpec) {
			s.Subnets, s.HealthCheckIPs, s.PrivateIPs = []v1.CIDR{"10.4.0.0/16"}, v1.DualStackIPs{"10.4.0.x"}, v1.DualStackIPs{"192.168.2.x"}
			s.WireGuard.PublicKey = keyC3
		}),
		remote("c5-gw1", "c5", 1, func(s *v1.EndpointSpec) { s.Subnets = []v1.CIDR{"10.5.0.0/16"}; s.WireGuard.PublicKey = "short" }),
		remote("c6-gw1", "c6", 1, func(s *v1.EndpointSpec) { s.Subnets = []v1.CIDR{"10.6.0.0/16"}; s.WireGuard = nil }),
	), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip 10.1.0.1
peer c4-gw1 endpoint 198.18.2.1:4500 key c3AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= keepalive off subnets 10.4.0.0/16
route 10.4.0.0/16
discover c2-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
discover c3-gw1 private 192.168.2.1:4490 public none
discover c4-gw1 private none public 198.18.2.1:4490
discover c5-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
discover c6-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
connection c2-gw1 cluster c2 using 198.18.2.1 nat false status error "subnet \"10.2.0.0/33\": netip.ParsePrefix(\"10.2.0.0/33\"): prefix length out of range"
connection c3-gw1 cluster c3 using none nat false status error "address \"not-an-ip\": ParseAddr(\"not-an-ip\"): unable to parse IP"
connection c4-gw1 cluster c4 using 198.18.2.1 nat false status connecting "no health-check address published"
connection c5-gw1 cluster c5 using 198.18.2.1 nat false status error "WireGuard public key: not 32 bytes in base64"
connection c6-gw1 cluster c6 using 198.18.2.1 nat false status error "no WireGuard configuration"
skip c2-gw1: subnet "10.2.0.0/33": netip.ParsePrefix("10.2.0.0/33"): prefix length out of range
skip c3-gw1: address "not-an-ip": ParseAddr("not-an-ip"): unable to parse IP
skip c5-gw1: WireGuard public key: not 32 bytes in base64
skip c6-gw1: no WireGuard configuration
`},
	{"IPv6 and dual stack", func() Facts {
		l := localWG()
		l.HealthCheckIPs = v1.DualStackIPs{"fd00:1::1", "10.1.0.1"}
		return facts(l, remote("c2-gw1", "c2", 1, func(s *v1.EndpointSpec) {
			s.PrivateIPs, s.PublicIPs = v1.DualStackIPs{"fd00:192:168::2"}, v1.DualStackIPs{"2001:db8::2"}
			s.Subnets = []v1.CIDR{"fd00:2::/64", "10.2.0.0/16", "fd00:102::/108"}
			s.HealthCheckIPs = v1.DualStackIPs{"fd00:2::1", "10.2.0.1"}
		}))
	}(), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip fd00:1::1
health-check-ip 10.1.0.1
peer c2-gw1 endpoint [2001:db8::2]:4500 key c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= keepalive off subnets 10.2.0.0/16,fd00:2::/64,fd00:102::/108
route 10.2.0.0/16
route fd00:2::/64
route fd00:102::/108
health c2-gw1 [fd00:2::1]:4804
discover c2-gw1 private [fd00:192:168::2]:4490 public [2001:db8::2]:4490
connection c2-gw1 cluster c2 using 2001:db8::2 nat false status connecting "no health-check address published"
`},
	{"NAT discovery's choice, own cluster and unlabelled Endpoints", func() Facts {
		unlabelled := remote("stray", "c9", 1, nil)
		unlabelled.Labels = nil
		f := facts(localWG(), remote("c1-gw0", "c1", 3, nil), unlabelled, remote("c2-gw1", "c2", 1, func(s *v1.EndpointSpec) { s.NATTraversal = true }))
		f.Reach = map[string]netip.Addr{"c2-gw1": netip.MustParseAddr("192.168.2.1")}
		return f
	}(), `cable wireguard port 4500 vni 0 private-key (redacted)
health-check-ip 10.1.0.1
peer c2-gw1 endpoint 192.168.2.1:4500 key c2aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= keepalive 25s subnets 10.2.0.0/16,10.102.0.0/16
route 10.2.0.0/16
route 10.102.0.0/16
health c2-gw1 10.2.0.1:4804
discover c2-gw1 private 192.168.2.1:4490 public 198.18.2.1:4490
connection c2-gw1 cluster c2 using 192.168.2.1 nat true status connecting "no health-check address published"
skip stray: no strait.dev/cluster-id label
`},
}

func TestComputeGolden(t *testing.T) {
	for _, tc := range stateCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(tc.facts).String()
			if k := tc.facts.Cable.PrivateKey; k != "" && strings.Contains(got, k) {
				t.Errorf("the private key shows in the state:\n%s", got)
			}
			if got != tc.want {
				t.Errorf("state:\n--- got\n%s--- want\n%s", got, tc.want)
			}
		})
	}
}

// The state does not depend on the order of the Endpoints.
func TestComputeOrderIndependent(t *testing.T) {
	for _, tc := range stateCases {
		want := Compute(tc.facts).String()
		for seed := range uint64(20) {
			f := tc.facts
			f.Endpoints = append([]v1.Endpoint(nil), tc.facts.Endpoints...)
			rng := rand.New(rand.NewPCG(seed, 1))
			rng.Shuffle(len(f.Endpoints), func(i, j int) { f.Endpoints[i], f.Endpoints[j] = f.Endpoints[j], f.Endpoints[i] })
			if got := Compute(f).String(); got != want {
				t.Errorf("%s, shuffled (seed %d):\n--- got\n%s--- want\n%s", tc.name, seed, got, want)
			}
		}
	}
}
