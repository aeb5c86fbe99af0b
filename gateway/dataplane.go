package gateway

import (
	"context"
	"log/slog"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Dataplane is the seam between the gateway's control plane and its cable
// drivers: the engine calls Set with the local endpoint and the complete,
// desired set of remote endpoints whenever that set changes, and may call it
// again with the same input at any time.
type Dataplane interface {
	Set(ctx context.Context, local v1.EndpointSpec, remotes []v1.Endpoint) error
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
func (d *ObserverDataplane) Set(_ context.Context, _ v1.EndpointSpec, remotes []v1.Endpoint) error {
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
