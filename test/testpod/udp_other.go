//go:build !linux

package testpod

import (
	"net"
	"net/netip"
	"syscall"
)

// oobSize is unused off Linux, where the echo answers from whatever source
// routing picks.
const oobSize = 0

// udpControl sets nothing off Linux.
func udpControl(string, string, syscall.RawConn) error { return nil }

// readDatagram reads one datagram; off Linux there is no reply control.
func readDatagram(c *net.UDPConn, buf, _ []byte) (int, netip.AddrPort, []byte, error) {
	n, from, err := c.ReadFromUDPAddrPort(buf)
	return n, from, nil, err
}
