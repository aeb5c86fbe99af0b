package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	_ "strait.dev/strait/gateway/cable/vxlan"   // registers the vxlan driver
	"strait.dev/strait/gateway/cable/wireguard" // registers the wireguard driver
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/mtu"
	"strait.dev/strait/pkg/nodenet"
)

// The cable's device, table and rule priority are pkg/nodenet's, which
// declares every name and number Strait uses on a node.
const (
	// CableInterface is the cable device's name on gateway nodes.
	CableInterface = nodenet.CableDevice
	// RouteTable holds the routes to remote subnets (the drivers fill it).
	RouteTable = nodenet.GatewayTable
	// RulePriority is the priority of the rules that send remote subnets to
	// RouteTable: before the main table (32766), after the local one (0).
	RulePriority = nodenet.GatewayPriority
	// defaultUnderlayMTU is Ethernet's.
	defaultUnderlayMTU = 1500
)

// NodeSlice is the gateway's share of the node state around the cable
// device: a rule per remote subnet into the cable's table, the masquerade
// exemption, the health-check addresses on the device (nodestate.go).
type NodeSlice interface {
	// Apply makes that share match; with health-check addresses, the cable
	// device must exist.
	Apply(remoteSubnets []netip.Prefix, healthCheckIPs []netip.Addr) error
	// Remove takes it away (the device's own addresses go with the device).
	Remove() error
}

// Links is the part of netlink Close uses to remove a device a killed
// predecessor left. *netlink.Handle implements it; cabletest.Netlink is its
// fake.
type Links interface {
	LinkByName(name string) (netlink.Link, error)
	LinkDel(link netlink.Link) error
}

var _ Links = (*netlink.Handle)(nil)

// kernelNodeSlice is the node's real state, around the cable device and
// table the data plane opens the driver with.
type kernelNodeSlice struct{ cable cableNode }

var _ NodeSlice = kernelNodeSlice{}

func (n kernelNodeSlice) Apply(s []netip.Prefix, h []netip.Addr) error {
	return applyGatewaySliceTo(nodenet.Host(), n.cable, s, h)
}
func (n kernelNodeSlice) Remove() error { return removeGatewaySliceFrom(nodenet.Host(), n.cable) }

// CableDataplane builds the cable with a registered cable driver and keeps
// the node state around it. Its zero value, with UnderlayMTU, is the real
// thing; the other fields are seams for tests.
type CableDataplane struct {
	// UnderlayMTU is the MTU of the node's network, in bytes (default 1500).
	UnderlayMTU int
	Log         *slog.Logger
	// Interface and Table are the device name and route table the driver
	// is opened with (defaults CableInterface and RouteTable); the default
	// Node's rules and health-check addresses follow them.
	Interface string
	Table     int
	// Open opens a driver (default cable.Open, the registry).
	Open func(ctx context.Context, name string, cfg cable.Config) (cable.Driver, error)
	// Node is the node state around the cable (default the kernel's).
	Node NodeSlice
	// Links removes a predecessor's device (default the current namespace).
	Links Links
	// SocketDir is where a predecessor's userspace WireGuard device left
	// its control socket (default wireguard.SocketDir).
	SocketDir string

	// mu serialises Set and Close: the whole change of the node.
	mu sync.Mutex
	// subnets are the remote subnets whose rules may be on the node: those
	// of the last Set, or a superset after a failed one (under mu).
	subnets []netip.Prefix
	// driverMu guards the driver and every call into it, and is held only
	// around those calls: a scrape (Traffic) waits for a driver call, never
	// for the node slice's iptables-restore. It is a plain Mutex because a
	// driver's Traffic need not be safe beside its own Set.
	driverMu sync.Mutex
	driver   cable.Driver
	name     string       // the open driver's name
	cfg      cable.Config // and what it was opened or reconfigured with
}

var _ Dataplane = (*CableDataplane)(nil)

func (d *CableDataplane) defaults() {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.UnderlayMTU == 0 {
		d.UnderlayMTU = defaultUnderlayMTU
	}
	if d.Interface == "" {
		d.Interface = CableInterface
	}
	if d.Table == 0 {
		d.Table = RouteTable
	}
	if d.Open == nil {
		d.Open = cable.Open
	}
	if d.Node == nil {
		d.Node = kernelNodeSlice{cable: cableNode{dev: d.Interface, table: d.Table}}
	}
	if d.Links == nil {
		d.Links = &netlink.Handle{}
	}
	if d.SocketDir == "" {
		d.SocketDir = wireguard.SocketDir
	}
}

// Set opens the driver on first use; when the state's driver or settings
// differ from those the open driver has, it reconfigures it in place where
// the driver can (make before break) and else closes and reopens it; then
// it gives the driver the peers and applies the node state around it.
//
// A rule at RulePriority never points at a subnet whose route is gone from
// RouteTable, nor comes before its route: the rules of withdrawn subnets go
// first (the node slice for the subnets both the old and the new state
// have), then the driver takes the peers (adding and removing their
// routes), then the node slice for the new subnets adds the new rules. The
// one exception is a reopen (another driver, or a change the driver cannot
// take in place, such as a VNI): the device, and with it every route of
// RouteTable, goes before the new one comes under the same name, so the
// kept rules point at an empty table for that moment. Lookups then fall
// through to the route agent's table (nodenet.RemoteTable), whose
// unreachable routes on the active gateway keep remote traffic from
// leaking to the default route.
func (d *CableDataplane) Set(ctx context.Context, s CableState) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.defaults()
	desc, err := cabledriver.Get(s.Driver)
	if err != nil {
		return err
	}
	if err := desc.Validate(s.Settings); err != nil {
		return fmt.Errorf("cable settings: %w", err)
	}
	// Sized for an IPv6 outer header, so the MTU fits either family.
	cfg := cable.ConfigFor(d.Interface, mtu.Cable(string(s.Driver), d.UnderlayMTU), d.Table, s.Settings)
	cfg.IPv6Underlay = cable.UnderlayIPv6(s.Peers, d.cfg.IPv6Underlay)
	if err := d.ensureDriver(ctx, string(s.Driver), cfg); err != nil {
		return err
	}
	if kept := intersect(d.subnets, s.RemoteSubnets); len(kept) < len(d.subnets) {
		if err := d.Node.Apply(kept, s.HealthCheckIPs); err != nil {
			return err
		}
		d.subnets = kept
	}
	if err := d.setPeers(ctx, s.Peers); err != nil {
		return err
	}
	if err := d.Node.Apply(s.RemoteSubnets, s.HealthCheckIPs); err != nil {
		// Some of the new rules may be in.
		d.subnets = union(d.subnets, s.RemoteSubnets)
		return err
	}
	d.subnets = slices.Clone(s.RemoteSubnets)
	return nil
}

// setPeers gives the open driver the peers.
func (d *CableDataplane) setPeers(ctx context.Context, peers []cable.Peer) error {
	d.driverMu.Lock()
	defer d.driverMu.Unlock()
	return d.driver.Set(ctx, peers)
}

// intersect is the prefixes of a that are in b, in a's order.
func intersect(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		if slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

// union is a with the prefixes of b it lacks, sorted.
func union(a, b []netip.Prefix) []netip.Prefix {
	out := slices.Concat(a, b)
	slices.SortFunc(out, netip.Prefix.Compare)
	return slices.Compact(out)
}

// ensureDriver makes the open driver the named one with cfg.
func (d *CableDataplane) ensureDriver(ctx context.Context, name string, cfg cable.Config) error {
	d.driverMu.Lock()
	defer d.driverMu.Unlock()
	if d.driver != nil && d.name == name {
		if d.cfg == cfg {
			return nil
		}
		if r, ok := d.driver.(cable.Reconfigurer); ok {
			err := r.Reconfigure(ctx, cfg)
			if err == nil {
				d.Log.Info("cable settings changed; driver reconfigured in place", settingsChange(d.cfg, cfg)...)
				d.cfg = cfg
				return nil
			}
			if !errors.Is(err, cable.ErrReopen) {
				return err
			}
		}
	}
	if d.driver != nil {
		// The new device takes the old one's name, so it cannot be made
		// first: see Set for what the kept rules do meanwhile.
		d.Log.Info("cable driver or settings changed; reopening the driver",
			append([]any{"from", d.name, "to", name}, settingsChange(d.cfg, cfg)...)...)
		err := d.driver.Close()
		d.driver = nil
		if err != nil {
			return fmt.Errorf("close %s cable: %w", d.name, err)
		}
	}
	drv, err := d.Open(ctx, name, cfg)
	if err != nil {
		return fmt.Errorf("open %s cable: %w", name, err)
	}
	d.driver, d.name, d.cfg = drv, name, cfg
	return nil
}

// settingsChange is the log fields of a change of cable.Config, without
// key material.
func settingsChange(from, to cable.Config) []any {
	return []any{"port", to.ListenPort, "previousPort", from.ListenPort, "vni", to.VNI, "mtu", to.MTU,
		"keyChanged", from.PrivateKey != to.PrivateKey}
}

// Traffic returns the cable's per-peer counters, by peer name, when the
// driver keeps them; nil otherwise. Safe to call from a scrape: it waits at
// most for a call into the driver, never for the node state's appliers.
func (d *CableDataplane) Traffic() map[string]cable.Traffic {
	d.driverMu.Lock()
	defer d.driverMu.Unlock()
	if tc, ok := d.driver.(cable.TrafficCounter); ok {
		if t, err := tc.Traffic(); err == nil {
			return t
		}
	}
	return nil
}

// Close removes the node state around the cable, then the device (the open
// driver's, or one a killed predecessor left under the same name): the
// rules go before the routes they point at.
func (d *CableDataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.defaults()
	errs := []error{d.Node.Remove()}
	d.subnets = nil
	d.driverMu.Lock()
	defer d.driverMu.Unlock()
	if d.driver != nil {
		errs = append(errs, d.driver.Close())
		d.driver = nil
	} else if l, err := d.Links.LinkByName(d.Interface); err == nil {
		// Left by a predecessor that was killed.
		if err := d.Links.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", d.Interface, err))
		}
	}
	// The control socket of a userspace device whose gateway was killed
	// outlives it (a device closed cleanly takes its socket along). Close
	// runs when a gateway stands by, at start too, and after each active
	// term, so a leave, which stops the gateways, leaves none behind.
	removed, err := wireguard.RemoveStaleSocket(d.SocketDir, d.Interface)
	if removed {
		d.Log.Info("removed the stale WireGuard control socket of a killed gateway", "interface", d.Interface, "dir", d.SocketDir)
	}
	errs = append(errs, err)
	return errors.Join(errs...)
}
