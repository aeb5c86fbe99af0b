// Package cable defines the seam between the gateway engine and its cable
// drivers (WireGuard, VXLAN): a driver is handed the complete desired set of
// peers and makes its device match, as often as it is called, and a registry
// lets the engine pick a driver by name.
package cable

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Peer is one remote gateway as a driver needs it.
type Peer struct {
	// Name identifies the peer (the remote Endpoint's name).
	Name string
	// Endpoint is where the remote gateway listens.
	Endpoint netip.AddrPort
	// Subnets are routed to the peer through the cable.
	Subnets []netip.Prefix
	// PublicKey is the peer's WireGuard key (WireGuard only).
	PublicKey string
	// Keepalive, when set, keeps a NAT mapping open (WireGuard only).
	Keepalive time.Duration
}

// Driver is a cable driver. Set may be called again and again with the same
// input; it changes the device only where it differs from what is wanted.
type Driver interface {
	// Set makes the device carry exactly the given peers.
	Set(ctx context.Context, peers []Peer) error
	// Close removes the device and everything the driver made.
	Close() error
}

// Traffic is what a cable carried to and from one peer.
type Traffic struct {
	RxBytes, TxBytes int64
}

// TrafficCounter is implemented by drivers that count traffic per peer.
type TrafficCounter interface {
	// Traffic returns the counters by peer name.
	Traffic() (map[string]Traffic, error)
}

// Factory opens a driver.
type Factory func(ctx context.Context, cfg Config) (Driver, error)

// Config is what every driver is opened with.
type Config struct {
	// Interface is the device name (at most 15 characters).
	Interface string
	// MTU of the device.
	MTU int
	// ListenPort is the UDP port the device listens on.
	ListenPort int
	// PrivateKey is the WireGuard private key, base64 (WireGuard only).
	PrivateKey string
	// VNI is the VXLAN network identifier (VXLAN only).
	VNI int
}

var (
	mu       sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a driver available by name; drivers call it from init.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("cable: driver " + name + " registered twice")
	}
	registry[name] = f
}

// Open opens the named driver.
func Open(ctx context.Context, name string, cfg Config) (Driver, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown cable driver %q (have %v)", name, Names())
	}
	return f(ctx, cfg)
}

// Names lists the registered drivers.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var names []string
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
