package health

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A probe that reaches a host where nothing listens on the health port draws
// an ICMP "port unreachable" (RFC 1122 section 4.1.3.1; ICMPv6 type 1 code 4,
// RFC 4443 section 3.1): the host is up, the prober that answered there is
// gone (killed, crashed, restarting). With Options.Refused a Prober reads
// these errors, which the kernel queues on its socket once IP_RECVERR or
// IPV6_RECVERR is set (ip(7), ipv6(7): the error queue, read with
// MSG_ERRQUEUE, holds the sent datagram's destination and a
// sock_extended_err), and a connected target they come from is an error at
// once, without waiting for Failures probes to go unanswered. A path that
// drops ICMP only leaves the timeout; the kernel sends a burst of 6 such
// errors per destination and then one a second (net.ipv4.icmp_ratelimit),
// plenty for one per probe interval until the target is an error.

// setRecvErr turns on the error queue of conn's socket for both families
// (setEither).
func setRecvErr(conn *net.UDPConn) error {
	return setEither(conn,
		sockopt{"IP_RECVERR", unix.IPPROTO_IP, unix.IP_RECVERR, 1},
		sockopt{"IPV6_RECVERR", unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1})
}

// drainErrors reads conn's error queue until it is empty, without waiting,
// and returns the destinations of the datagrams that drew a port
// unreachable (other errors, such as a path MTU's "fragmentation needed",
// are dropped: the path MTU search counts its probes' losses itself).
func drainErrors(conn *net.UDPConn) []netip.AddrPort {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	var refused []netip.AddrPort
	buf := make([]byte, messageBytes)
	oob := make([]byte, 512)
	for {
		var oobn int
		var from unix.Sockaddr
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			_, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			return true // never wait: an empty queue ends the drain
		}); err != nil || rerr != nil {
			return refused
		}
		if to, ok := portUnreachable(oob[:oobn], from); ok {
			refused = append(refused, to)
		}
	}
}

// portUnreachable reports whether the control messages of one error-queue
// read hold an ICMP or ICMPv6 port unreachable, and the destination of the
// datagram that drew it (from, the read's address).
func portUnreachable(oob []byte, from unix.Sockaddr) (netip.AddrPort, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, false
	}
	var to netip.AddrPort
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		to = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		to = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	default:
		return netip.AddrPort{}, false
	}
	for _, m := range msgs {
		isV4 := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		isV6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if (!isV4 && !isV6) || len(m.Data) < int(unsafe.Sizeof(unix.SockExtendedErr{})) {
			continue
		}
		// struct sock_extended_err: errno (4 bytes), origin, type, code.
		errno := binary.NativeEndian.Uint32(m.Data[0:4])
		origin, typ, code := m.Data[4], m.Data[5], m.Data[6]
		switch {
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 3 && code == 3: // destination unreachable, port
		case origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 1 && code == 4: // destination unreachable, port
		default:
			continue
		}
		if unix.Errno(errno) == unix.ECONNREFUSED {
			return to, true
		}
	}
	return netip.AddrPort{}, false
}

// refusedBy makes the connected targets at each of addrs an error, and
// returns their new results by name (under p.mu).
func (p *Prober) refusedBy(addrs []netip.AddrPort) map[string]Result {
	var changed map[string]Result
	for name, t := range p.targets {
		for _, a := range addrs {
			if t.addr.Addr().Unmap() != a.Addr() || t.addr.Port() != a.Port() || t.result.Status != Connected {
				continue
			}
			t.result.Status = Error
			t.result.Message = fmt.Sprintf("refused: nothing listens on %s (ICMP port unreachable)", t.addr)
			if changed == nil {
				changed = map[string]Result{}
			}
			changed[name] = t.result
			break
		}
	}
	return changed
}
