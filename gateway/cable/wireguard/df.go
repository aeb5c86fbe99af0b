package wireguard

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The userspace device's UDP sockets are opened by wireguard-go, with the
// system's default path MTU discovery (IP_PMTUDISC_WANT): don't fragment
// while a packet fits the path MTU the kernel learnt from ICMP errors, and
// fragmentation in the kernel above it. Behind a router that answers with
// "fragmentation needed", that breaks the cable: the kernel learns the
// narrower path, fragments single datagrams (the gateways' path MTU probes
// among them, so the search finds the device's MTU), and refuses the
// batched segmentation-offload sends of bulk traffic whose segments are
// over it, which wireguard-go then drops (seen in the e2e: 4 MB stalled
// after some 100 KB). With IP_PMTUDISC_PROBE the sockets always send with
// don't-fragment and ignore the learnt path MTU, as the health checker's
// probes do: a packet the path cannot carry is lost whether the path says
// so or not, and the path MTU search sizes the routes and MSS clamp to
// what gets through. wireguard-go offers no hook for its sockets' options,
// so they are found among this process's descriptors by their port.

// probeDFOn sets IP_PMTUDISC_PROBE (and IPV6_PMTUDISC_PROBE on IPv6
// sockets) on every UDP socket of this process bound to port, and returns
// how many it set. A descriptor that closes meanwhile is skipped.
func probeDFOn(port int) (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("list this process's descriptors: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if !udpOnPort(fd, port) {
			continue
		}
		if err := setProbeDF(fd); err != nil {
			errs = append(errs, fmt.Errorf("descriptor %d: %w", fd, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// udpOnPort reports whether fd is a UDP socket bound to port.
func udpOnPort(fd, port int) bool {
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || proto != unix.IPPROTO_UDP {
		return false // not a socket (ENOTSOCK), closed, or not UDP
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port == port
	case *unix.SockaddrInet6:
		return a.Port == port
	}
	return false
}

// setProbeDF sets IP_PMTUDISC_PROBE on fd, and IPV6_PMTUDISC_PROBE when it
// is an IPv6 socket (which sends IPv4 too, to mapped addresses).
func setProbeDF(fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return err
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE); err != nil {
			return fmt.Errorf("IPV6_MTU_DISCOVER: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil && domain == unix.AF_INET {
		return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
	}
	return nil
}
