package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"strait.dev/strait/test/proc"
)

// masqChain is the sandbox CNI's own NAT chain, jumped to from POSTROUTING.
const masqChain = "SANDBOX-POD-MASQ"

// setupPodNetwork installs the pod network's masquerade: pod traffic leaving
// the cluster's pod CIDR takes the node's address, as flannel, kindnet and
// most CNIs do. Strait's route agent must exempt cross-cluster traffic from it.
// In a dual-stack cluster each family gets its own, with ip6tables for IPv6.
//
// It is idempotent, so that a restarted agent converges on the same rules.
func (a *Agent) setupPodNetwork(context.Context) error {
	for _, cidr := range a.cfg.clusterPodCIDRs() {
		if err := setupMasquerade(iptablesCommand(cidr.Addr()), cidr.String()); err != nil {
			return err
		}
	}
	return nil
}

// iptablesCommand is the packet filter command of an address's family.
func iptablesCommand(a netip.Addr) string {
	if a.Is4() {
		return "iptables"
	}
	return "ip6tables"
}

// setupMasquerade installs masqChain with command (iptables or ip6tables)
// for the cluster's pod CIDR pods.
func setupMasquerade(command, pods string) error {
	iptables := func(args ...string) error {
		if out, err := exec.Command(command, append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", command, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if iptables("-t", "nat", "-n", "-L", masqChain) != nil {
		if err := iptables("-t", "nat", "-N", masqChain); err != nil {
			return err
		}
	}
	if err := iptables("-t", "nat", "-F", masqChain); err != nil {
		return err
	}
	if err := iptables("-t", "nat", "-A", masqChain, "-d", pods, "-j", "RETURN"); err != nil {
		return err
	}
	if err := iptables("-t", "nat", "-A", masqChain, "-s", pods, "-j", "MASQUERADE", "--random-fully"); err != nil {
		return err
	}
	jump := []string{"POSTROUTING", "-m", "comment", "--comment", "sandbox pod network masquerade", "-j", masqChain}
	if iptables(append([]string{"-t", "nat", "-C"}, jump...)...) != nil {
		return iptables(append([]string{"-t", "nat", "-A"}, jump...)...)
	}
	return nil
}

// podSandbox is a pod's network namespace, held open by a pause process.
type podSandbox struct {
	pause  *exec.Cmd
	exited chan struct{}
	// ip is the pod's address of the primary family; ips has one per
	// family of the node's pod CIDRs, primary first (status.podIPs).
	ip       netip.Addr
	ips      []netip.Addr
	hostVeth string
}

// hostVethName derives a stable, unique interface name from the pod UID.
func hostVethName(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return "veth" + hex.EncodeToString(sum[:])[:11]
}

// createSandbox starts the pause process in new network and UTS namespaces,
// and connects it point-to-point to the node: the pod holds ip/32 with a
// route to the node's gateway address, which every host-side veth holds, and
// the node routes ip/32 to the veth (the CNI ptp plugin's layout). All pod
// traffic is routed by the node, so kube-proxy sees both directions. In a
// dual-stack cluster the same is done for IPv6, with /128s, on the same veth
// pair; IPv6 addresses skip duplicate address detection (the agent hands
// them out), or they would stay unusable for a second or so.
func (a *Agent) createSandbox(uid, hostname string) (*podSandbox, error) {
	cidrs, gateways := a.podNets()
	var addrs []netip.Addr
	release := func() {
		for _, addr := range addrs {
			a.releaseIP(addr)
		}
	}
	for i, cidr := range cidrs {
		addr, err := a.allocateIP(cidr, gateways[i])
		if err != nil {
			release()
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	cmd := exec.Command(a.cfg.SandboxExecutable, "pause", "--hostname", hostname)
	cmd.Env = []string{a.cfg.MarkerEnv}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS}
	if err := proc.Start(cmd); err != nil {
		release()
		return nil, fmt.Errorf("start pause: %w", err)
	}
	sb := &podSandbox{pause: cmd, exited: make(chan struct{}), ip: addrs[0], ips: addrs, hostVeth: hostVethName(uid)}
	go func() { _ = cmd.Wait(); close(sb.exited) }()

	pid := strconv.Itoa(cmd.Process.Pid)
	inPod := func(args ...string) error {
		out, err := exec.Command("nsenter", append([]string{"--target", pid, "--net", "--", "ip"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s in pod: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	steps := []func() error{
		func() error {
			return ip("link", "add", sb.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", pid)
		},
		func() error { return inPod("link", "set", "lo", "up") },
	}
	for i, addr := range addrs {
		gw := gateways[i].String()
		host := netip.PrefixFrom(addr, addr.BitLen()).String()
		gwHost := netip.PrefixFrom(gateways[i], addr.BitLen()).String()
		fam, nodad := "-4", []string(nil)
		if addr.Is6() {
			fam, nodad = "-6", []string{"nodad"}
		}
		steps = append(steps,
			func() error { return ip(append([]string{fam, "addr", "add", gwHost, "dev", sb.hostVeth}, nodad...)...) },
			func() error { return inPod(append([]string{fam, "addr", "add", host, "dev", "eth0"}, nodad...)...) },
		)
		if i == 0 {
			steps = append(steps,
				func() error { return ip("link", "set", sb.hostVeth, "up") },
				func() error { return inPod("link", "set", "eth0", "up") },
			)
		}
		steps = append(steps,
			func() error { return ip(fam, "route", "replace", host, "dev", sb.hostVeth, "src", gw) },
			func() error { return inPod(fam, "route", "add", gw, "dev", "eth0", "scope", "link") },
			func() error { return inPod(fam, "route", "add", "default", "via", gw, "dev", "eth0") },
		)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			a.destroySandbox(sb)
			return nil, err
		}
	}
	return sb, nil
}

// destroySandbox ends the pause process; the namespace and the veth pair go
// with it.
func (a *Agent) destroySandbox(sb *podSandbox) {
	proc.StopWaiting(sb.pause, a.cfg.StopGrace, sb.exited)
	_ = ip("link", "del", sb.hostVeth) // gone already, unless a container still holds the namespace
	for _, addr := range sb.ips {
		a.releaseIP(addr)
	}
}

// Pause is the body of a pod's pause process: it holds the pod's namespaces
// open until told to stop.
func Pause(hostname string) error {
	if hostname != "" {
		if err := syscall.Sethostname([]byte(hostname)); err != nil {
			return err
		}
	}
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	<-sigs
	return nil
}
