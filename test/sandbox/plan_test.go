package sandbox

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestPlanAddresses(t *testing.T) {
	plans := Plan(Options{Clusters: 3, Nodes: 3, GatewayNodes: 2, NAT: []string{"c2"}})
	seen := map[netip.Addr]string{AdminIP: "admin host"}
	claim := func(a netip.Addr, who string) {
		t.Helper()
		if !a.IsValid() {
			return
		}
		if prev, ok := seen[a]; ok {
			t.Errorf("%s and %s share %s", prev, who, a)
		}
		seen[a] = who
	}
	var prefixes []netip.Prefix
	for _, c := range plans {
		claim(c.ControlIP, c.Name+" control plane")
		claim(c.ControlPublicIP, c.Name+" control plane public")
		if !InternetCIDR.Contains(c.ControlPublicIP) {
			t.Errorf("%s control plane public %s outside the internet", c.Name, c.ControlPublicIP)
		}
		claim(c.RouterLANIP, c.Name+" router")
		claim(c.RouterPublicIP, c.Name+" router public")
		prefixes = append(prefixes, c.PodCIDR, c.ServiceCIDR, c.LAN)
		if !c.ServiceCIDR.Contains(c.KubernetesServiceIP) {
			t.Errorf("%s: kubernetes service IP %s outside %s", c.Name, c.KubernetesServiceIP, c.ServiceCIDR)
		}
		for _, n := range c.Nodes {
			claim(n.IP, n.Name)
			claim(n.InternetIP, n.Name+" internet")
			if !c.LAN.Contains(n.IP) {
				t.Errorf("%s %s outside the node network %s", n.Name, n.IP, c.LAN)
			}
			if n.Gateway != (n.Index <= 2) {
				t.Errorf("%s gateway=%v", n.Name, n.Gateway)
			}
			switch {
			case n.Gateway && c.NAT:
				if n.InternetIP.IsValid() || n.PublicIP != c.RouterPublicIP {
					t.Errorf("%s behind NAT: internet %s public %s, want none and the router's", n.Name, n.InternetIP, n.PublicIP)
				}
			case n.Gateway:
				if !InternetCIDR.Contains(n.InternetIP) || n.PublicIP != n.InternetIP {
					t.Errorf("%s: internet %s public %s", n.Name, n.InternetIP, n.PublicIP)
				}
			default:
				if n.PublicIP.IsValid() {
					t.Errorf("non-gateway %s has a public IP", n.Name)
				}
			}
			if len(NodeNS(n.Name)) > 32 {
				t.Errorf("namespace name %q too long", NodeNS(n.Name))
			}
		}
	}
	for i, a := range prefixes {
		for _, b := range prefixes[i+1:] {
			if a.Overlaps(b) {
				t.Errorf("%s overlaps %s", a, b)
			}
		}
	}
}

// --overlapping: every cluster has the same pod and Service CIDRs, so the
// same kubernetes and cluster DNS Service IPs too (each cluster's node
// namespaces reach only their own); everything that connects clusters or
// the admin host (node networks, control-plane, node, NAT router and
// internet addresses) stays distinct, as without it.
func TestPlanOverlapping(t *testing.T) {
	plans := Plan(Options{Clusters: 3, Nodes: 2, GatewayNodes: 1, NAT: []string{"c2"}, Overlapping: true})
	first := plans[0]
	if first.PodCIDR.String() != "10.1.0.0/16" || first.ServiceCIDR.String() != "10.101.0.0/16" ||
		first.KubernetesServiceIP.String() != "10.101.0.1" || first.DNSServiceIP.String() != "10.101.0.10" {
		t.Errorf("c1: pods %s services %s kubernetes %s DNS %s", first.PodCIDR, first.ServiceCIDR, first.KubernetesServiceIP, first.DNSServiceIP)
	}
	seen := map[string]string{} // address or prefix -> what has it
	distinct := func(what string, v fmt.Stringer) {
		if prev, dup := seen[v.String()]; dup {
			t.Errorf("%s and %s are both %s", prev, what, v)
		}
		seen[v.String()] = what
	}
	distinct("the admin host", AdminIP)
	for _, c := range plans {
		if c.PodCIDR != first.PodCIDR || c.ServiceCIDR != first.ServiceCIDR || c.KubernetesServiceIP != first.KubernetesServiceIP || c.DNSServiceIP != first.DNSServiceIP {
			t.Errorf("%s: pods %s services %s kubernetes %s DNS %s, want c1's", c.Name, c.PodCIDR, c.ServiceCIDR, c.KubernetesServiceIP, c.DNSServiceIP)
		}
		if c.LAN.Overlaps(c.PodCIDR) || c.LAN.Overlaps(c.ServiceCIDR) || InternetCIDR.Overlaps(c.PodCIDR) {
			t.Errorf("%s: node network %s or the internet overlaps pods %s or services %s", c.Name, c.LAN, c.PodCIDR, c.ServiceCIDR)
		}
		distinct(c.Name+" node network", c.LAN)
		distinct(c.Name+" control plane", c.ControlIP)
		distinct(c.Name+" control plane's public IP", c.ControlPublicIP)
		if c.NAT != (c.Name == "c2") {
			t.Errorf("%s: NAT %v", c.Name, c.NAT)
		}
		if c.NAT {
			distinct(c.Name+" NAT router", c.RouterLANIP)
			distinct(c.Name+" NAT router's public IP", c.RouterPublicIP)
		}
		for _, n := range c.Nodes {
			distinct(n.Name, n.IP)
			if n.InternetIP.IsValid() {
				distinct(n.Name+" on the internet", n.InternetIP)
			}
		}
	}
	// The same options without --overlapping differ only in the ranges.
	plain := Plan(Options{Clusters: 3, Nodes: 2, GatewayNodes: 1, NAT: []string{"c2"}})
	for i := range plans {
		a, b := plans[i], plain[i]
		a.PodCIDR, a.ServiceCIDR, a.KubernetesServiceIP, a.DNSServiceIP = b.PodCIDR, b.ServiceCIDR, b.KubernetesServiceIP, b.DNSServiceIP
		a.PodCIDRs, a.ServiceCIDRs, a.DNSServiceIPs = b.PodCIDRs, b.ServiceCIDRs, b.DNSServiceIPs
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s differs beyond its CIDRs:\n%+v\n%+v", a.Name, a, b)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Clusters: 2, Nodes: 3, GatewayNodes: 2}, ""},
		{Options{Clusters: 0, Nodes: 3}, "--clusters"},
		{Options{Clusters: 2, Nodes: 10}, "--nodes"},
		{Options{Clusters: 2, Nodes: 1, GatewayNodes: 2}, "--gateway-nodes"},
		{Options{Clusters: 2, Nodes: 1, NAT: []string{"c3"}}, "--nat c3: no such cluster"},
		{Options{Clusters: 2, Nodes: 1, IPFamily: "dual"}, ""},
		{Options{Clusters: 2, Nodes: 1, IPFamily: "ipv6"}, ""},
		{Options{Clusters: 2, Nodes: 1, IPFamily: "inet6"}, `--ip-family "inet6": must be ipv4, ipv6, dual`},
	} {
		err := tc.o.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestParsePodRef(t *testing.T) {
	if r, err := ParsePodRef("c1/default/web-0"); err != nil || r != (PodRef{"c1", "default", "web-0"}) {
		t.Errorf("got %+v, %v", r, err)
	}
	for _, bad := range []string{"", "c1/web", "c1//web", "a/b/c/d"} {
		if _, err := ParsePodRef(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// --proxy-mode: a mode for all clusters, overrides per cluster, and clear
// errors for what cannot be.
func TestProxyModes(t *testing.T) {
	for _, tc := range []struct {
		flag string
		want []string // c1, c2, c3's modes
		err  string
	}{
		{"", []string{"iptables", "iptables", "iptables"}, ""},
		{"nftables", []string{"nftables", "nftables", "nftables"}, ""},
		{"iptables,c2=nftables,c3=nftables", []string{"iptables", "nftables", "nftables"}, ""},
		{"c3=nftables", []string{"iptables", "iptables", "nftables"}, ""},
		{"nftables,c1=iptables", []string{"iptables", "nftables", "nftables"}, ""},
		{"ipvs", nil, `--proxy-mode "ipvs": kube-proxy mode must be iptables or nftables`},
		{"iptables,c2=ebpf", nil, "--proxy-mode c2=ebpf: kube-proxy mode must be iptables or nftables"},
		{"c4=nftables", nil, "--proxy-mode c4=nftables: no such cluster (have c1 to c3)"},
		{"iptables,nftables", nil, "two modes for all clusters"},
		{"c2=nftables,c2=iptables", nil, "cluster c2 named twice"},
		{"iptables,", nil, "an empty item"},
	} {
		o := Options{Clusters: 3, Nodes: 1}
		var err error
		if tc.flag != "" {
			err = o.ParseProxyModes(tc.flag)
		}
		if err == nil {
			err = o.Validate()
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--proxy-mode %s: error %v, want one with %q", tc.flag, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("--proxy-mode %s: %v", tc.flag, err)
			continue
		}
		var got []string
		for _, c := range Plan(o) {
			got = append(got, c.ProxyMode)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("--proxy-mode %s: clusters' modes %v, want %v", tc.flag, got, tc.want)
		}
	}
}

// --ip-family: every network has one prefix or address per family, primary
// first (IPv4 first in dual), the IPv4 ones are those of an ipv4 sandbox,
// IPv6 cluster networks are ULA (fd00::/8) and the internet is the
// benchmarking range 2001:2::/48; nothing overlaps, within a family or
// across clusters.
func TestPlanFamilies(t *testing.T) {
	ula := netip.MustParsePrefix("fd00::/8")
	opts := Options{Clusters: 3, Nodes: 3, GatewayNodes: 2, NAT: []string{"c2"}}
	v4 := Plan(opts)
	for _, tc := range []struct {
		family string
		want   []int // families, in order
	}{
		{"", []int{4}},
		{IPv4, []int{4}},
		{IPv6, []int{6}},
		{Dual, []int{4, 6}},
	} {
		t.Run("family "+tc.family, func(t *testing.T) {
			o := opts
			o.IPFamily = tc.family
			plans := Plan(o)
			famOf := func(a netip.Addr) int {
				if a.Is4() {
					return 4
				}
				return 6
			}
			checkAddrs := func(what string, got []netip.Addr) {
				t.Helper()
				if len(got) != len(tc.want) {
					t.Errorf("%s: %v, want one per family %v", what, got, tc.want)
					return
				}
				for i, a := range got {
					if famOf(a) != tc.want[i] {
						t.Errorf("%s: %v, want families %v in that order", what, got, tc.want)
					}
				}
			}
			checkPrefixes := func(what string, got []netip.Prefix, cluster bool) {
				t.Helper()
				addrs := make([]netip.Addr, len(got))
				for i, p := range got {
					addrs[i] = p.Addr()
					if cluster && p.Addr().Is6() && !ula.Contains(p.Addr()) {
						t.Errorf("%s: %s is not a ULA prefix", what, p)
					}
				}
				checkAddrs(what, addrs)
			}
			seen := map[netip.Addr]string{}
			claim := func(who string, as ...netip.Addr) {
				t.Helper()
				for _, a := range as {
					if prev, ok := seen[a]; ok {
						t.Errorf("%s and %s share %s", prev, who, a)
					}
					seen[a] = who
				}
			}
			admin := AdminIPs(o)
			checkAddrs("admin host", admin)
			claim("admin host", admin...)
			var prefixes []netip.Prefix
			for ci, c := range plans {
				checkPrefixes(c.Name+" node network", c.LANs, true)
				checkPrefixes(c.Name+" pods", c.PodCIDRs, true)
				checkPrefixes(c.Name+" services", c.ServiceCIDRs, true)
				checkAddrs(c.Name+" control plane", c.ControlIPs)
				checkAddrs(c.Name+" control plane public", c.ControlPublicIPs)
				checkAddrs(c.Name+" DNS service", c.DNSServiceIPs)
				claim(c.Name+" control plane", c.ControlIPs...)
				claim(c.Name+" control plane public", c.ControlPublicIPs...)
				claim(c.Name+" router", c.RouterLANIPs...)
				claim(c.Name+" router public", c.RouterPublicIPs...)
				if c.NAT {
					checkAddrs(c.Name+" router", c.RouterLANIPs)
					checkAddrs(c.Name+" router public", c.RouterPublicIPs)
				}
				prefixes = append(prefixes, c.LANs...)
				prefixes = append(prefixes, c.PodCIDRs...)
				prefixes = append(prefixes, c.ServiceCIDRs...)
				for i := range c.ServiceCIDRs {
					if !c.ServiceCIDRs[i].Contains(c.DNSServiceIPs[i]) {
						t.Errorf("%s: DNS service IP %s outside %s", c.Name, c.DNSServiceIPs[i], c.ServiceCIDRs[i])
					}
					if !c.LANs[i].Contains(c.ControlIPs[i]) {
						t.Errorf("%s: control plane %s outside %s", c.Name, c.ControlIPs[i], c.LANs[i])
					}
					if !InternetPrefix(tc.want[i]).Contains(c.ControlPublicIPs[i]) {
						t.Errorf("%s: control plane public %s outside the internet", c.Name, c.ControlPublicIPs[i])
					}
					if c.PodCIDRs[i].Bits() > NodeCIDRMaskSize[tc.want[i]] || NodeCIDRMaskSize[tc.want[i]]-c.PodCIDRs[i].Bits() > 16 {
						t.Errorf("%s: pods %s cannot be cut into /%d node CIDRs", c.Name, c.PodCIDRs[i], NodeCIDRMaskSize[tc.want[i]])
					}
				}
				// The singular fields are the primary family's.
				if c.LAN != c.LANs[0] || c.ControlIP != c.ControlIPs[0] || c.PodCIDR != c.PodCIDRs[0] ||
					c.ServiceCIDR != c.ServiceCIDRs[0] || c.DNSServiceIP != c.DNSServiceIPs[0] ||
					c.KubernetesServiceIP != c.ServiceCIDRs[0].Addr().Next() {
					t.Errorf("%s: singular fields are not the primary family's: %+v", c.Name, c)
				}
				for _, n := range c.Nodes {
					checkAddrs(n.Name, n.IPs)
					claim(n.Name, n.IPs...)
					claim(n.Name+" internet", n.InternetIPs...)
					for i, a := range n.IPs {
						if !c.LANs[i].Contains(a) {
							t.Errorf("%s %s outside the node network %s", n.Name, a, c.LANs[i])
						}
					}
					if n.Gateway {
						checkAddrs(n.Name+" public", n.PublicIPs)
						if n.PublicIP != n.PublicIPs[0] {
							t.Errorf("%s: public %s, want %s", n.Name, n.PublicIP, n.PublicIPs[0])
						}
						for i, a := range n.PublicIPs {
							if !InternetPrefix(tc.want[i]).Contains(a) {
								t.Errorf("%s: public %s outside the internet", n.Name, a)
							}
						}
					}
				}
				// What an IPv4 (or dual) sandbox has of IPv4 is the ipv4
				// sandbox's, so the default does not change.
				if tc.want[0] == 4 {
					w := v4[ci]
					if c.LAN != w.LAN || c.PodCIDR != w.PodCIDR || c.ServiceCIDR != w.ServiceCIDR || c.ControlIP != w.ControlIP ||
						c.ControlPublicIP != w.ControlPublicIP || c.RouterPublicIP != w.RouterPublicIP || c.Nodes[0].IP != w.Nodes[0].IP {
						t.Errorf("%s: IPv4 plan differs from the ipv4 sandbox's", c.Name)
					}
				}
			}
			for i, a := range prefixes {
				if InternetCIDR.Overlaps(a) || InternetCIDR6.Overlaps(a) {
					t.Errorf("%s overlaps the internet", a)
				}
				for _, b := range prefixes[i+1:] {
					if a.Overlaps(b) {
						t.Errorf("%s overlaps %s", a, b)
					}
				}
			}
		})
	}
	// The IPv6 layout, spelled out once.
	c := Plan(Options{Clusters: 2, Nodes: 2, GatewayNodes: 1, NAT: []string{"c2"}, IPFamily: Dual})
	got := fmt.Sprint(c[0].LANs, c[0].PodCIDRs, c[0].ServiceCIDRs, c[0].DNSServiceIPs, c[0].Nodes[0].IPs, c[0].Nodes[0].PublicIPs, c[1].RouterLANIPs, c[1].RouterPublicIPs, c[1].Nodes[0].PublicIPs)
	want := "[192.168.1.0/24 fd00:192:168:1::/64] [10.1.0.0/16 fd00:10:1::/48] [10.101.0.0/16 fd00:10:101::/112] [10.101.0.10 fd00:10:101::a] " +
		"[192.168.1.11 fd00:192:168:1::11] [198.18.1.11 2001:2::1:11] [192.168.2.1 fd00:192:168:2::1] [198.18.2.1 2001:2::2:1] [198.18.2.1 2001:2::2:1]"
	if got != want {
		t.Errorf("dual layout:\n got %s\nwant %s", got, want)
	}
}
