// Package routeagent is the route agent that runs on every node: it routes the
// remote clusters' pod and service CIDRs to the active gateway, keeps that
// traffic out of the cluster's masquerade, and re-points routes when the
// active gateway changes.
package routeagent
