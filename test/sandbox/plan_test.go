package sandbox

import (
	"net/netip"
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

func TestPlanOverlapping(t *testing.T) {
	plans := Plan(Options{Clusters: 2, Nodes: 1, Overlapping: true})
	if plans[0].PodCIDR != plans[1].PodCIDR || plans[0].ServiceCIDR != plans[1].ServiceCIDR {
		t.Errorf("overlapping clusters got %s/%s and %s/%s", plans[0].PodCIDR, plans[0].ServiceCIDR, plans[1].PodCIDR, plans[1].ServiceCIDR)
	}
	if plans[0].LAN == plans[1].LAN {
		t.Errorf("node networks must stay distinct")
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
