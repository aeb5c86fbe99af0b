// Package routeagent is the route agent that runs on every node of a member
// cluster: remote pod and service CIDRs go through a VXLAN overlay to the
// cluster's active gateway node, replies come back the same way, and
// cross-cluster traffic is exempt from the pod network's masquerade, allowed
// through FORWARD and clamped to the path MTU. Routes are re-pointed when the
// active gateway changes.
//
// The agent computes the desired state as a nodenet.State from a handful of
// facts (Compute, pure) and nodenet's Applier, within the agent's Scope, makes
// the kernel match it; Metrics tell when a state is in the kernel.
package routeagent
