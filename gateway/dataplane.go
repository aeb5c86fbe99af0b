package gateway

import (
	"context"
	"log/slog"
	"net/netip"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Dataplane is the seam between the gateway's control plane and its cable
// drivers: the engine calls Set with the local endpoint and the complete,
// desired set of remote endpoints whenever that set changes, and may call it
// again with the same input at any time.
type Dataplane interface {
	Set(ctx context.Context, local Local, remotes []v1.Endpoint) error
	// Close removes everything the data plane made on the node.
	Close() error
}

// Local is the local gateway as the data plane needs it.
type Local struct {
	Spec v1.EndpointSpec
	// PrivateKey is the node's WireGuard private key (wireguard only). It is
	// kept out of logs and out of the Endpoint.
	PrivateKey string
	// HealthCheckIPs are the addresses remote gateways probe; the data plane
	// puts them on the cable device.
	HealthCheckIPs []netip.Addr
	// Reach is the address NAT discovery chose for each remote endpoint, by
	// name; a remote without one is reached at its public address.
	Reach map[string]netip.Addr
}

// ObserverDataplane builds no tunnel: it records and logs the desired state.
// It is what runs until a cable driver is chosen with --dataplane, and what
// control-plane tests use to see what the engine asked for.
type ObserverDataplane struct {
	Log *slog.Logger
	// Last is the most recent remote set.
	Last []v1.Endpoint
}

var _ Dataplane = (*ObserverDataplane)(nil)

// Set records the remote set.
func (d *ObserverDataplane) Set(_ context.Context, _ Local, remotes []v1.Endpoint) error {
	d.Last = remotes
	names := make([]string, len(remotes))
	for i, r := range remotes {
		names[i] = r.Name
	}
	if d.Log != nil {
		d.Log.Info("desired remote endpoints", "endpoints", names)
	}
	return nil
}

// Close does nothing: the observer made nothing.
func (d *ObserverDataplane) Close() error { return nil }
