package testpod

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"strait.dev/strait/pkg/nodenet"
)

// NodeStateConfig is a look at a node for what Strait leaves on it, from a
// pod in the node's network namespace (hostNetwork).
type NodeStateConfig struct {
	// Kernel reaches the node; nil is nodenet.Host(), the network namespace
	// the process runs in.
	Kernel nodenet.Kernel
	// WireGuardDir is where the userspace WireGuard device puts its control
	// socket; "" is nodenet.WireGuardSocketDir. From a pod, the node's
	// directory must be mounted there (hostPath).
	WireGuardDir string
}

// NodeStateReport is the one JSON line node-state prints.
type NodeStateReport struct {
	// OK is true when the node holds nothing of Strait's and every read
	// worked.
	OK bool `json:"ok"`
	// Found are nodenet.Leftovers' and nodenet.WireGuardSockets' lines,
	// sorted; [] when none.
	Found []string `json:"found"`
	// Error is why a read failed (the kernel's or the socket's), with what
	// was read; "" when every read worked.
	Error string `json:"error,omitempty"`
}

// NodeState reads what of Strait's the node holds: links, rules, routes of
// its tables, chains (nodenet.Leftovers) and the cable device's WireGuard
// socket (nodenet.WireGuardSockets). A failed read does not stop the
// others: the report has their lines and the error.
func NodeState(cfg NodeStateConfig) NodeStateReport {
	k := cfg.Kernel
	if k == nil {
		k = nodenet.Host()
	}
	dir := cfg.WireGuardDir
	if dir == "" {
		dir = nodenet.WireGuardSocketDir
	}
	found, kerr := nodenet.Leftovers(k)
	socks, serr := nodenet.WireGuardSockets(dir)
	found = append(found, socks...)
	slices.Sort(found)
	rep := NodeStateReport{Found: found}
	if rep.Found == nil {
		rep.Found = []string{}
	}
	if err := errors.Join(kerr, serr); err != nil {
		rep.Error = err.Error()
	}
	rep.OK = len(rep.Found) == 0 && rep.Error == ""
	return rep
}

// RunNodeState prints NodeState's report as one JSON line to w. It returns
// nil when the node is clean, and an error wrapping ErrFailed that names
// what was found or the failed read otherwise.
func RunNodeState(cfg NodeStateConfig, w io.Writer) error {
	rep := NodeState(cfg)
	msg := rep.Error
	if len(rep.Found) > 0 {
		msg = fmt.Sprintf("the node holds Strait's state: %s", strings.Join(rep.Found, "; "))
		if rep.Error != "" {
			msg += "; and " + rep.Error
		}
	}
	return finish(w, rep, rep.OK, msg, nil)
}
