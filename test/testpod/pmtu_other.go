//go:build !linux

package testpod

import (
	"errors"
	"net"
)

// dontFragment is Linux's only.
func dontFragment(*net.UDPConn, bool) error {
	return errors.New("setting Don't Fragment is only implemented on Linux")
}

// localMTU is unknown off Linux.
func localMTU(*net.UDPConn) int { return 0 }
