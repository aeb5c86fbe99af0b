package cabletest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"

	"strait.dev/strait/gateway/cable"
)

// Drivers is a fake of the cable driver registry, for tests of the code
// that opens, reconfigures and closes drivers (the gateway's data plane).
// Its Open is a cable.Factory-like function that makes in-memory drivers;
// like the kernel, it refuses a second device of a name that is open
// (EEXIST). String renders the open devices; Log lists, in order, the calls
// that changed something. Private keys show as a fingerprint only.
type Drivers struct {
	// InPlace makes the drivers cable.Reconfigurers that take a new port,
	// key or MTU on the open device (as WireGuard does); a new name, table
	// or VNI still needs a reopen (cable.ErrReopen).
	InPlace bool
	// OpenErr, when set, is what Open answers instead of opening.
	OpenErr error

	mu   sync.Mutex
	log  []string
	open []*Driver
}

// Driver is a fake driver that Drivers.Open made.
type Driver struct {
	r     *Drivers
	name  string
	cfg   cable.Config
	peers []cable.Peer
}

// inPlace is a Driver that can be reconfigured.
type inPlace struct{ *Driver }

var (
	_ cable.Driver       = (*Driver)(nil)
	_ cable.Reconfigurer = inPlace{}
)

// Open opens a fake driver of the given name.
func (r *Drivers) Open(_ context.Context, name string, cfg cable.Config) (cable.Driver, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.OpenErr != nil {
		return nil, r.OpenErr
	}
	for _, d := range r.open {
		if d.cfg.Interface == cfg.Interface {
			return nil, fmt.Errorf("open %s: %w", cfg.Interface, syscall.EEXIST)
		}
	}
	d := &Driver{r: r, name: name, cfg: cfg}
	r.open = append(r.open, d)
	r.logf("open %s %s", name, renderConfig(cfg))
	if r.InPlace {
		return inPlace{d}, nil
	}
	return d, nil
}

// Set records the peers.
func (d *Driver) Set(_ context.Context, peers []cable.Peer) error {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	if !slices.Contains(d.r.open, d) {
		return fmt.Errorf("set on closed %s: %w", d.cfg.Interface, syscall.ENODEV)
	}
	if render(peers) != render(d.peers) {
		d.r.logf("set %s peers %d", d.cfg.Interface, len(peers))
	}
	d.peers = slices.Clone(peers)
	return nil
}

// Close removes the device.
func (d *Driver) Close() error {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	d.r.open = slices.DeleteFunc(d.r.open, func(x *Driver) bool { return x == d })
	d.r.logf("close %s %s", d.name, d.cfg.Interface)
	return nil
}

// Reconfigure takes a new port, key or MTU in place.
func (d inPlace) Reconfigure(_ context.Context, cfg cable.Config) error {
	d.r.mu.Lock()
	defer d.r.mu.Unlock()
	if cfg.Interface != d.cfg.Interface || cfg.RouteTable != d.cfg.RouteTable || cfg.VNI != d.cfg.VNI {
		return cable.ErrReopen
	}
	d.cfg = cfg
	d.r.logf("reconfigure %s %s", d.name, renderConfig(cfg))
	return nil
}

// Log returns the changes so far, one a line, and forgets them.
func (r *Drivers) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.log, "\n")
	r.log = nil
	return out
}

func (r *Drivers) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

// String renders every open device with its peers.
func (r *Drivers) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, d := range r.open {
		fmt.Fprintf(&b, "%s %s\n%s", d.name, renderConfig(d.cfg), render(d.peers))
	}
	return b.String()
}

// renderConfig renders a Config with the private key as a fingerprint.
func renderConfig(c cable.Config) string {
	key := "none"
	if c.PrivateKey != "" {
		sum := sha256.Sum256([]byte(c.PrivateKey))
		key = "sha256:" + hex.EncodeToString(sum[:4])
	}
	underlay := ""
	if c.IPv6Underlay {
		underlay = " underlay ipv6"
	}
	return fmt.Sprintf("dev %s mtu %d table %d port %d vni %d key %s%s", c.Interface, c.MTU, c.RouteTable, c.ListenPort, c.VNI, key, underlay)
}

func render(peers []cable.Peer) string {
	var b strings.Builder
	for _, p := range peers {
		subs := make([]string, len(p.Subnets))
		for i, s := range p.Subnets {
			subs[i] = s.String()
		}
		fmt.Fprintf(&b, "  peer %s endpoint %s key %q keepalive %s subnets %s\n", p.Name, p.Endpoint, p.PublicKey, p.Keepalive, strings.Join(subs, ","))
	}
	return b.String()
}
