// Package gateway is the gateway engine: it runs on gateway-labelled nodes,
// elects one active gateway per cluster, publishes the cluster's Cluster and
// Endpoint through the broker, and drives the cable drivers (WireGuard or
// VXLAN) that tunnel traffic to the other clusters' active gateways.
package gateway
