package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"

	"strait.dev/strait/gateway/cable"
	_ "strait.dev/strait/gateway/cable/vxlan"     // registers the vxlan driver
	_ "strait.dev/strait/gateway/cable/wireguard" // registers the wireguard driver
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/mtu"
)

const (
	// CableInterface is the cable device's name on gateway nodes.
	CableInterface = "strait-cable"
	// RouteTable holds the routes to remote subnets (the drivers fill it).
	RouteTable = 150
	// RulePriority is the priority of the rules that send remote subnets to
	// RouteTable: before the main table (32766), after the local one (0).
	RulePriority = 150
	// defaultUnderlayMTU is Ethernet's.
	defaultUnderlayMTU = 1500
)

// NodeSlice is the gateway's share of the node state around the cable
// device: a rule per remote subnet into the cable's table, the masquerade
// exemption, the health-check addresses on the device (nodestate.go).
type NodeSlice interface {
	// Apply makes that share match; the cable device must exist.
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

// kernelNodeSlice is the node's real state.
type kernelNodeSlice struct{}

func (kernelNodeSlice) Apply(s []netip.Prefix, h []netip.Addr) error {
	return applyGatewaySlice(s, h)
}
func (kernelNodeSlice) Remove() error { return removeGatewaySlice() }

// CableDataplane builds the cable with a registered cable driver and keeps
// the node state around it. Its zero value, with UnderlayMTU, is the real
// thing; the other fields are seams for tests.
type CableDataplane struct {
	// UnderlayMTU is the MTU of the node's network, in bytes (default 1500).
	UnderlayMTU int
	Log         *slog.Logger
	// Interface and Table are the device name and route table the driver
	// is opened with (defaults CableInterface and RouteTable).
	Interface string
	Table     int
	// Open opens a driver (default cable.Open, the registry).
	Open func(ctx context.Context, name string, cfg cable.Config) (cable.Driver, error)
	// Node is the node state around the cable (default the kernel's).
	Node NodeSlice
	// Links removes a predecessor's device (default the current namespace).
	Links Links

	mu     sync.Mutex
	driver cable.Driver
	name   string       // the open driver's name
	cfg    cable.Config // and what it was opened or reconfigured with
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
		d.Node = kernelNodeSlice{}
	}
	if d.Links == nil {
		d.Links = &netlink.Handle{}
	}
}

// Set opens the driver on first use; when the state's driver or settings
// differ from those the open driver has, it reconfigures it in place where
// the driver can (make before break) and else closes and reopens it; then
// it gives the driver the peers and applies the node state around it.
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
	if err := d.ensureDriver(ctx, string(s.Driver), cfg); err != nil {
		return err
	}
	if err := d.driver.Set(ctx, s.Peers); err != nil {
		return err
	}
	return d.Node.Apply(s.RemoteSubnets, s.HealthCheckIPs)
}

// ensureDriver makes the open driver the named one with cfg.
func (d *CableDataplane) ensureDriver(ctx context.Context, name string, cfg cable.Config) error {
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
// driver keeps them; nil otherwise. Safe to call from a scrape.
func (d *CableDataplane) Traffic() map[string]cable.Traffic {
	d.mu.Lock()
	defer d.mu.Unlock()
	if tc, ok := d.driver.(cable.TrafficCounter); ok {
		if t, err := tc.Traffic(); err == nil {
			return t
		}
	}
	return nil
}

// Close removes the device (the open driver's, or one a killed predecessor
// left under the same name) and the node state around it.
func (d *CableDataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.defaults()
	var errs []error
	if d.driver != nil {
		errs = append(errs, d.driver.Close())
		d.driver = nil
	} else if l, err := d.Links.LinkByName(d.Interface); err == nil {
		// Left by a predecessor that was killed.
		if err := d.Links.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", d.Interface, err))
		}
	}
	errs = append(errs, d.Node.Remove())
	return errors.Join(errs...)
}
