package gateway

import (
	"context"
	"log/slog"
	"sync"
)

// Dataplane is the seam between the gateway's control plane and its cable
// drivers: the engine calls Set with the desired cable state (a plain value,
// no API object) whenever it changes, and may call it again with the same
// value at any time; Set makes the node match it.
type Dataplane interface {
	// Set opens, reconfigures or reopens the driver as the state's driver
	// and settings say, gives it the peers and keeps the node state around
	// the cable (rules, masquerade exemption, health-check addresses).
	Set(ctx context.Context, s CableState) error
	// Close removes everything the data plane made on the node, or that a
	// killed predecessor on this node left; it is safe to call at any time.
	Close() error
}

// ObserverDataplane builds no tunnel: it records and logs the desired state.
// It is what runs with --dataplane=observe, and what control-plane tests use
// to see what the engine asked for.
type ObserverDataplane struct {
	Log *slog.Logger

	mu     sync.Mutex
	last   CableState
	sets   int
	closes int
}

var _ Dataplane = (*ObserverDataplane)(nil)

// Set records s.
func (d *ObserverDataplane) Set(_ context.Context, s CableState) error {
	d.mu.Lock()
	d.last = s
	d.sets++
	d.mu.Unlock()
	if d.Log != nil {
		names := make([]string, len(s.Peers))
		for i, p := range s.Peers {
			names[i] = p.Name
		}
		d.Log.Info("desired cable state", "driver", s.Driver, "peers", names, "subnets", len(s.RemoteSubnets))
	}
	return nil
}

// Close records that the data plane was cleared; the observer made nothing.
func (d *ObserverDataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = CableState{}
	d.closes++
	return nil
}

// Last returns the most recent state Set was given, the zero CableState
// after a Close, and how many Set and Close calls there were.
func (d *ObserverDataplane) Last() (s CableState, sets, closes int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last, d.sets, d.closes
}
