//go:build linux

package testpod

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"unsafe"
)

// oobSize holds the one packet-info control message a datagram carries,
// of either family, with room to spare.
const oobSize = 128

// udpControl asks the kernel to report each datagram's destination
// address, so the echo can answer from the address the client sent to.
// Without it, a listener on a wildcard address in a namespace with several
// addresses (a hostNetwork pod on a gateway node) answers from whatever
// source the routing table picks, and the client's connected socket drops
// the answer as coming from a stranger.
//
// It is best effort: a kernel (or gVisor) without the options still gets
// an echo, answering as routing decides, rather than no listener at all.
func udpControl(network, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		// IP_PKTINFO also covers IPv4 datagrams arriving on a dual-stack
		// IPv6 socket.
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
		if strings.HasSuffix(network, "6") {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
		}
	})
}

// readDatagram reads one datagram into buf and returns, besides its length
// and sender, the control message that makes the answer leave from the
// datagram's destination address (nil if there is none to use).
func readDatagram(c *net.UDPConn, buf, oob []byte) (int, netip.AddrPort, []byte, error) {
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return 0, netip.AddrPort{}, nil, err
	}
	return n, from, replyControl(oob[:oobn]), nil
}

// replyControl turns the packet info the kernel reported for a received
// datagram into the packet info for its answer: source address = the
// received destination address.
func replyControl(oob []byte) []byte {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_PKTINFO &&
			len(m.Data) >= syscall.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			dst := netip.AddrFrom4([4]byte(m.Data[8:12]))
			if !usableSource(dst) {
				return nil
			}
			info := make([]byte, syscall.SizeofInet4Pktinfo)
			copy(info[4:8], m.Data[8:12]) // spec_dst: the source to use
			return controlMessage(syscall.IPPROTO_IP, syscall.IP_PKTINFO, info)
		case m.Header.Level == syscall.IPPROTO_IPV6 && m.Header.Type == syscall.IPV6_PKTINFO &&
			len(m.Data) >= syscall.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr addr; unsigned int ifindex; }
			dst := netip.AddrFrom16([16]byte(m.Data[:16]))
			if !usableSource(dst) {
				return nil
			}
			info := make([]byte, syscall.SizeofInet6Pktinfo)
			copy(info[:16], m.Data[:16])
			// Pinning the interface is only needed, and only safe, for a
			// link-local source; elsewhere routing picks the way out.
			if dst.IsLinkLocalUnicast() {
				binary.NativeEndian.PutUint32(info[16:20], binary.NativeEndian.Uint32(m.Data[16:20]))
			}
			return controlMessage(syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, info)
		}
	}
	return nil
}

// usableSource reports whether a datagram's destination can be its
// answer's source: not when it was sent to a group or to everyone.
func usableSource(dst netip.Addr) bool {
	return dst.IsValid() && !dst.IsUnspecified() && !dst.IsMulticast() &&
		dst != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// controlMessage encodes one ancillary message.
func controlMessage(level, typ int, data []byte) []byte {
	b := make([]byte, syscall.CmsgSpace(len(data)))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = int32(level)
	h.Type = int32(typ)
	h.SetLen(syscall.CmsgLen(len(data)))
	copy(b[syscall.CmsgLen(0):], data)
	return b
}
