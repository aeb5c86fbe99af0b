package sandbox

import (
	"bytes"
	"fmt"
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
// pair: switchSide in switchNS, hostSide in hostNS, holding addr (a prefix).
// Both ends are created inside our namespaces; nothing appears in the root
// namespace, even for a moment.
func plug(switchNS, switchSide, hostNS, hostSide, addr string) error {
	if err := ipns(switchNS, "link", "add", switchSide, "type", "veth", "peer", "name", hostSide, "netns", hostNS); err != nil {
		return err
	}
	if err := ipns(switchNS, "link", "set", switchSide, "master", "br0", "up"); err != nil {
		return err
	}
	if err := ipns(hostNS, "addr", "add", addr, "dev", hostSide); err != nil {
		return err
	}
	return ipns(hostNS, "link", "set", hostSide, "up")
}

func sysctl(ns, key, value string) error {
	return nsExec(ns, "sysctl", "-q", "-w", key+"="+value)
}

// buildNetwork creates every namespace, bridge, link and address of the plan.
func buildNetwork(plans []ClusterPlan) error {
	if err := addNetns(internetNS); err != nil {
		return err
	}
	if err := addBridge(internetNS, "br0"); err != nil {
		return err
	}
	inetBits := fmt.Sprintf("/%d", InternetCIDR.Bits())
	if err := addNetns(AdminNS); err != nil {
		return err
	}
	if err := plug(internetNS, "admin", AdminNS, "eth0", AdminIP.String()+inetBits); err != nil {
		return err
	}
	for _, c := range plans {
		lanBits := fmt.Sprintf("/%d", c.LAN.Bits())
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
		if err := plug(lan, "cp", cp, "eth0", c.ControlIP.String()+lanBits); err != nil {
			return err
		}
		if err := plug(internetNS, c.Name+"cp", cp, "eth1", c.ControlPublicIP.String()+inetBits); err != nil {
			return err
		}
		// Nodes need a default route, as real ones have: kube-proxy's DNAT of
		// a ClusterIP happens after the first routing decision. The NAT router
		// is the nodes' default gateway behind NAT; elsewhere the control
		// plane host routes the node network to the internet.
		router := c.ControlIP
		if c.NAT {
			router = c.RouterLANIP
		} else {
			if err := sysctl(cp, "net.ipv4.ip_forward", "1"); err != nil {
				return err
			}
			if err := nsExec(cp, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", c.LAN.String(), "-o", "eth1", "-j", "MASQUERADE"); err != nil {
				return err
			}
		}
		if c.NAT {
			r := routerNS(c.Name)
			if err := addNetns(r); err != nil {
				return err
			}
			if err := plug(lan, "nat", r, "eth0", c.RouterLANIP.String()+lanBits); err != nil {
				return err
			}
			if err := plug(internetNS, c.Name+"nat", r, "eth1", c.RouterPublicIP.String()+inetBits); err != nil {
				return err
			}
			if err := sysctl(r, "net.ipv4.ip_forward", "1"); err != nil {
				return err
			}
			// The router hides the whole node network behind its public address,
			// like a home or cloud NAT gateway.
			if err := nsExec(r, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", c.LAN.String(), "-o", "eth1", "-j", "MASQUERADE"); err != nil {
				return err
			}
		}
		for _, n := range c.Nodes {
			ns := NodeNS(n.Name)
			if err := addNetns(ns); err != nil {
				return err
			}
			if err := plug(lan, fmt.Sprintf("n%d", n.Index), ns, "eth0", n.IP.String()+lanBits); err != nil {
				return err
			}
			if n.Gateway && n.InternetIP.IsValid() {
				if err := plug(internetNS, fmt.Sprintf("%sn%d", c.Name, n.Index), ns, "eth1", n.InternetIP.String()+inetBits); err != nil {
					return err
				}
			}
			if err := ipns(ns, "route", "add", "default", "via", router.String()); err != nil {
				return err
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
