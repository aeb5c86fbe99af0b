//go:build linux

package testpod

import (
	"net"

	"golang.org/x/sys/unix"
)

// dontFragment makes c's datagrams carry Don't Fragment whatever the
// kernel has learnt of the path (IP_PMTUDISC_PROBE, ip(7); IPv6's
// counterpart, ipv6(7)): the probe measures the path, not the kernel's
// cached path MTU. The local device's and route's MTU still apply: a
// larger datagram fails with EMSGSIZE.
func dontFragment(c *net.UDPConn, v6 bool) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
	})
	if err != nil {
		return err
	}
	return serr
}

// localMTU is the path MTU the kernel holds for c's connected destination
// (IP_MTU, ip(7); IPV6_MTU), in bytes, 0 if unknown.
func localMTU(c *net.UDPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	mtu := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU); err == nil {
			mtu = v
		} else if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU); err == nil {
			mtu = v
		}
	})
	return mtu
}
