package sandbox

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// run runs a command and returns its error with its output attached.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipns runs "ip -n NS args...".
func ipns(ns string, args ...string) error {
	return run("ip", append([]string{"-n", ns}, args...)...)
}

// nsExec runs a command inside a network namespace.
func nsExec(ns string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

func addNetns(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	return ipns(name, "link", "set", "lo", "up")
}

func addBridge(ns, name string) error {
	if err := ipns(ns, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return ipns(ns, "link", "set", name, "up")
}

// plug connects host namespace hostNS to the bridge br0 of switchNS with a veth
// pair: switchSide in switchNS, hostSide in hostNS, holding addrs (prefixes,
// one per family). Both ends are created inside our namespaces; nothing
// appears in the root namespace, even for a moment. IPv6 addresses skip
// duplicate address detection: the sandbox plans them unique, and a
// tentative address could not be used for the second or so DAD takes.
func plug(switchNS, switchSide, hostNS, hostSide string, addrs ...string) error {
	if err := ipns(switchNS, "link", "add", switchSide, "type", "veth", "peer", "name", hostSide, "netns", hostNS); err != nil {
		return err
	}
	if err := ipns(switchNS, "link", "set", switchSide, "master", "br0", "up"); err != nil {
		return err
	}
	for _, addr := range addrs {
		args := []string{"addr", "add", addr, "dev", hostSide}
		if strings.Contains(addr, ":") {
			args = append(args, "nodad")
		}
		if err := ipns(hostNS, args...); err != nil {
			return err
		}
	}
	return ipns(hostNS, "link", "set", hostSide, "up")
}

// withBits writes each address with the length of the prefix of its family
// among prefixes: 192.168.1.2/24, fd00:192:168:1::2/64.
func withBits(addrs []netip.Addr, prefixes ...netip.Prefix) []string {
	var out []string
	for _, a := range addrs {
		for _, p := range prefixes {
			if p.Addr().Is4() == a.Is4() {
				out = append(out, netip.PrefixFrom(a, p.Bits()).String())
				break
			}
		}
	}
	return out
}

// iptablesFor is the packet filter command of an address's family.
func iptablesFor(a netip.Addr) string {
	if a.Is4() {
		return "iptables"
	}
	return "ip6tables"
}

// familyFlag is iproute2's option for an address's family.
func familyFlag(a netip.Addr) string {
	if a.Is4() {
		return "-4"
	}
	return "-6"
}

// forwardSysctl is the forwarding switch of an address's family.
func forwardSysctl(a netip.Addr) string {
	if a.Is4() {
		return "net.ipv4.ip_forward"
	}
	return "net.ipv6.conf.all.forwarding"
}

func sysctl(ns, key, value string) error {
	return nsExec(ns, "sysctl", "-q", "-w", key+"="+value)
}

// buildNetwork creates every namespace, bridge, link and address of the plan,
// with admin the admin host's addresses: one per family of the sandbox, and
// every host has an address of each. IPv6 is routed and masqueraded as IPv4
// is: the sandbox's NAT router hides its cluster behind its public addresses
// with NAT66 too (ip6tables MASQUERADE), since its tests need a cluster that
// cannot be reached at its own addresses in either family.
func buildNetwork(plans []ClusterPlan, admin []netip.Addr) error {
	if err := addNetns(internetNS); err != nil {
		return err
	}
	if err := addBridge(internetNS, "br0"); err != nil {
		return err
	}
	internet := []netip.Prefix{InternetCIDR, InternetCIDR6}
	if err := addNetns(AdminNS); err != nil {
		return err
	}
	if err := plug(internetNS, "admin", AdminNS, "eth0", withBits(admin, internet...)...); err != nil {
		return err
	}
	for _, c := range plans {
		lan := lanNS(c.Name)
		if err := addNetns(lan); err != nil {
			return err
		}
		if err := addBridge(lan, "br0"); err != nil {
			return err
		}
		cp := controlNS(c.Name)
		if err := addNetns(cp); err != nil {
			return err
		}
		if err := plug(lan, "cp", cp, "eth0", withBits(c.ControlIPs, c.LANs...)...); err != nil {
			return err
		}
		if err := plug(internetNS, c.Name+"cp", cp, "eth1", withBits(c.ControlPublicIPs, internet...)...); err != nil {
			return err
		}
		// Nodes need a default route, as real ones have: kube-proxy's DNAT of
		// a ClusterIP happens after the first routing decision. The NAT router
		// is the nodes' default gateway behind NAT; elsewhere the control
		// plane host routes the node network to the internet.
		routers := c.ControlIPs
		if c.NAT {
			routers = c.RouterLANIPs
		} else {
			for i, lanPrefix := range c.LANs {
				a := c.ControlIPs[i]
				if err := sysctl(cp, forwardSysctl(a), "1"); err != nil {
					return err
				}
				if err := nsExec(cp, iptablesFor(a), "-t", "nat", "-A", "POSTROUTING", "-s", lanPrefix.String(), "-o", "eth1", "-j", "MASQUERADE"); err != nil {
					return err
				}
			}
		}
		if c.NAT {
			r := routerNS(c.Name)
			if err := addNetns(r); err != nil {
				return err
			}
			if err := plug(lan, "nat", r, "eth0", withBits(c.RouterLANIPs, c.LANs...)...); err != nil {
				return err
			}
			if err := plug(internetNS, c.Name+"nat", r, "eth1", withBits(c.RouterPublicIPs, internet...)...); err != nil {
				return err
			}
			for i, lanPrefix := range c.LANs {
				a := c.RouterLANIPs[i]
				if err := sysctl(r, forwardSysctl(a), "1"); err != nil {
					return err
				}
				// The router hides the whole node network behind its public
				// address, like a home or cloud NAT gateway.
				if err := nsExec(r, iptablesFor(a), "-t", "nat", "-A", "POSTROUTING", "-s", lanPrefix.String(), "-o", "eth1", "-j", "MASQUERADE"); err != nil {
					return err
				}
			}
		}
		for _, n := range c.Nodes {
			ns := NodeNS(n.Name)
			if err := addNetns(ns); err != nil {
				return err
			}
			if err := plug(lan, fmt.Sprintf("n%d", n.Index), ns, "eth0", withBits(n.IPs, c.LANs...)...); err != nil {
				return err
			}
			if n.Gateway && len(n.InternetIPs) > 0 {
				if err := plug(internetNS, fmt.Sprintf("%sn%d", c.Name, n.Index), ns, "eth1", withBits(n.InternetIPs, internet...)...); err != nil {
					return err
				}
			}
			for _, router := range routers {
				if err := ipns(ns, familyFlag(router), "route", "add", "default", "via", router.String()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ListNamespaces returns the sandbox's network namespaces that exist now.
func ListNamespaces() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.HasPrefix(fields[0], Prefix) {
			names = append(names, fields[0])
		}
	}
	return names, nil
}

// deleteNamespaces deletes every sandbox network namespace; their links,
// bridges, addresses, routes and packet-filter rules go with them.
func deleteNamespaces() error {
	names, err := ListNamespaces()
	if err != nil {
		return err
	}
	var errs []string
	for _, name := range names {
		if err := run("ip", "netns", "del", name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete namespaces: %s", strings.Join(errs, "; "))
	}
	return nil
}
