package testpod

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Default ports of serve when no listener flag is given. They are the
// conventional unprivileged choices, so test manifests can rely on them
// without spelling them out.
const (
	// DefaultHTTPPort is the conventional unprivileged HTTP port.
	DefaultHTTPPort = 8080
	// DefaultTCPEchoPort is the TCP echo port.
	DefaultTCPEchoPort = 9000
	// DefaultUDPEchoPort is the UDP echo port, next to the TCP one so that
	// both fit one Service with two ports.
	DefaultUDPEchoPort = 9001
)

// Ports is a list of port numbers, usable as a flag.Value: it accepts a
// comma-separated list ("8080,8081"), and a repeated flag appends.
type Ports []uint16

// String returns the ports comma separated.
func (p *Ports) String() string {
	if p == nil {
		return ""
	}
	s := make([]string, len(*p))
	for i, port := range *p {
		s[i] = strconv.Itoa(int(port))
	}
	return strings.Join(s, ",")
}

// Set parses a comma-separated list of ports from 1 to 65535 and appends
// them.
func (p *Ports) Set(v string) error {
	var parsed Ports
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("invalid port %q: want a number from 1 to 65535", f)
		}
		parsed = append(parsed, uint16(n))
	}
	*p = append(*p, parsed...)
	return nil
}

// Addrs returns listen addresses for every port on all addresses of both
// families (":PORT").
func (p Ports) Addrs() []string {
	addrs := make([]string, len(p))
	for i, port := range p {
		addrs[i] = net.JoinHostPort("", strconv.Itoa(int(port)))
	}
	return addrs
}
