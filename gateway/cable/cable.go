// Package cable defines the seam between the gateway engine and its cable
// drivers (WireGuard, VXLAN): a driver is handed the complete desired set of
// peers and makes its device match, as often as it is called, and a registry
// lets the engine pick a driver by name. A driver registers its Factory
// under the name of its descriptor (pkg/cabledriver), which tells the rest
// of Strait what is particular to it.
package cable

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// Peer is one remote gateway as a driver needs it (declared in the pure
// descriptor package, whose ReadPeer fills it).
type Peer = cabledriver.Peer

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

// Reconfigurer is implemented by drivers that can take new settings (port,
// key, MTU) on the open device, keeping its peers and routes: make before
// break. Reconfigure returns ErrReopen, having changed nothing, when the
// change needs a new device (another name, VNI or table).
type Reconfigurer interface {
	Reconfigure(ctx context.Context, cfg Config) error
}

// ErrReopen is what Reconfigure returns when the driver must be closed and
// opened again with the new Config.
var ErrReopen = errors.New("cable: the change needs a new device")

// Factory opens a driver.
type Factory func(ctx context.Context, cfg Config) (Driver, error)

// Config is what every driver is opened with.
type Config struct {
	// Interface is the device name (at most 15 characters).
	Interface string
	// MTU of the device, in bytes.
	MTU int
	// RouteTable is the policy routing table the peers' subnets go into:
	// the gateway's own, never main. Required.
	RouteTable int
	// ListenPort is the UDP port the device listens on.
	ListenPort int
	// PrivateKey is the private key, base64 (keyed drivers: WireGuard).
	PrivateKey string
	// VNI is the VXLAN network identifier (VXLAN only).
	VNI int
	// IPv6Underlay: the peers' endpoints are IPv6 addresses. A kernel
	// VXLAN device sends over one family, fixed when it is made (IPv4
	// unless told otherwise), and refuses FDB entries of the other
	// (EAFNOSUPPORT); WireGuard's socket takes both and ignores it.
	IPv6Underlay bool
}

// UnderlayIPv6 is Config.IPv6Underlay for peers: whether their endpoints
// are IPv6 (an IPv4-mapped one counts as IPv4). Without peers it is prev,
// so that a cable does not change family while it has none. Peers of both
// families make it IPv6 when the first one is.
func UnderlayIPv6(peers []Peer, prev bool) bool {
	for _, p := range peers {
		if a := p.Endpoint.Addr(); a.IsValid() {
			return a.Unmap().Is6()
		}
	}
	return prev
}

// ConfigFor is the Config of a driver opened with the given device name,
// MTU, table and a gateway's settings.
func ConfigFor(iface string, mtu, table int, s cabledriver.Settings) Config {
	return Config{Interface: iface, MTU: mtu, RouteTable: table, ListenPort: int(s.Port), PrivateKey: s.PrivateKey, VNI: int(s.VNI)}
}

var (
	mu       sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a driver available by name; drivers call it from init. The
// name must be a descriptor's (pkg/cabledriver): a driver without one, or
// registered twice, panics at start.
func Register(name string, f Factory) {
	if _, ok := cabledriver.Lookup(v1.CableDriver(name)); !ok {
		panic("cable: driver " + name + " has no descriptor in pkg/cabledriver")
	}
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
