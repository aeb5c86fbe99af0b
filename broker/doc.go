// Package broker is the broker's side of Strait and a member's way into it:
// installing the broker namespace with its RBAC and write-isolation policy,
// enrolling and removing members, the join file (Info), and the member's
// broker credential Secret in strait-system. The broker runs no process of its
// own, so this package is a library: straitctl, the gateway engine and the
// coming Lighthouse agent import it, and it imports no component and nothing
// of the data plane (netlink, iptables, WireGuard). The syncer that copies
// records between a member and the broker is pkg/syncer.
package broker
