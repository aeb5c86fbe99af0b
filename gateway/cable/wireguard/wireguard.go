// Package wireguard is the WireGuard cable driver. It uses the kernel's
// WireGuard device when the kernel has one (adopting a kernel device of the
// same name left by an engine that died) and otherwise runs an embedded
// userspace WireGuard (golang.zx2c4.com/wireguard) inside the gateway
// process; either way the device is configured the same way, through wgctrl,
// so one code path serves both.
//
// The driver reaches the kernel only through two narrow seams, Netlink and
// Client, so that the kernel path can be tested against fakes
// (cabletest.Netlink, cabletest.WGClient) on machines without the module.
package wireguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/pkg/cabledriver"
)

// The driver registers under its descriptor's name.
func init() {
	cable.Register(string(cabledriver.WireGuard.Name), func(ctx context.Context, cfg cable.Config) (cable.Driver, error) {
		return Open(ctx, cfg, nil)
	})
}

// Netlink is the part of netlink the driver uses: its device and the routes
// through it. *netlink.Handle implements it; cabletest.Netlink is its fake.
type Netlink interface {
	cable.RouteHandle
	LinkAdd(link netlink.Link) error
	LinkByName(name string) (netlink.Link, error)
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetUp(link netlink.Link) error
	LinkDel(link netlink.Link) error
}

// Client configures WireGuard devices, kernel or userspace alike.
// *wgctrl.Client implements it; cabletest.WGClient is its fake.
type Client interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
	Close() error
}

var (
	_ Netlink = (*netlink.Handle)(nil)
	_ Client  = (*wgctrl.Client)(nil)
)

// Options are the driver's own knobs and its seams to the kernel; the zero
// value of each field means the real thing.
type Options struct {
	// ForceUserspace skips the kernel device (for tests of the fallback on
	// machines that have the module).
	ForceUserspace bool
	// Log receives the driver's few events; nil means slog.Default().
	Log *slog.Logger
	// Netlink makes the kernel device and routes; nil means the current
	// network namespace (a zero *netlink.Handle).
	Netlink Netlink
	// NewClient opens the WireGuard configuration client, which the driver
	// closes on Close; nil means wgctrl.New.
	NewClient func() (Client, error)
	// StartUserspace runs the embedded userspace device named name, a TUN
	// device that exists until the returned Closer is closed; nil means
	// wireguard-go with its UAPI socket in /var/run/wireguard.
	StartUserspace func(name string, mtu int) (io.Closer, error)
}

// Driver is an open WireGuard device.
type Driver struct {
	cfg       cable.Config
	opts      Options
	link      netlink.Link
	userspace io.Closer // nil with the kernel device
	client    Client
	key       wgtypes.Key

	// mu serializes the client's use: Set, Reconfigure, Traffic and Close
	// against the handshake rush (rushHandshakes).
	mu    sync.Mutex
	names map[wgtypes.Key]string // peer names, for the traffic counters
	// rushing are the new peers across NAT that have not answered yet
	// (rushHandshakes); stopRush ends the rush's loop, which closes
	// rushDone.
	rushing  map[wgtypes.Key]*rushPeer
	stopRush context.CancelFunc
	rushDone chan struct{}
}

// Handshakes with a new peer across NAT. When a cluster behind NAT fails
// over, its new gateway opens its cable, and sends its first handshake
// initiation, before the other clusters know its public key: they drop it.
// WireGuard tries again only after REKEY_TIMEOUT (5 s), and the other
// side's own initiation cannot reach the new gateway (the NAT still maps
// the published port to the old one). So while a new peer across NAT has
// not been heard from, for rushWindow after it was added, the driver has
// WireGuard send it a handshake initiation every rushInterval: it removes
// and adds the peer again (WireGuard sends at most one initiation per
// REKEY_TIMEOUT per peer; a peer made anew has sent none), and the
// persistent keepalive of the new peer starts a handshake at once.
//
// Only a completed handshake ends the rush, not bytes received: when both
// sides add each other at once (a takeover that the other cluster learns
// within milliseconds), their initiations can cross. Each consumes the
// other's, which replaces its own pending one, answers it, and drops the
// answer to its own: both have received a message and neither has a
// session, until one retries after REKEY_TIMEOUT (a 5.2 s gap measured in
// the bench on 2026-12-02; wireguard-go's RoutineHandshake counts a
// consumed initiation in the peer's received bytes and sets the last
// handshake time only on a response or the first data).
const (
	rushInterval = time.Second
	rushWindow   = 15 * time.Second
)

// rushPeer is a peer in the rush: its configuration, when it was added and
// when it was last added again.
type rushPeer struct {
	cfg         wgtypes.PeerConfig
	since, last time.Time
}

var (
	_ cable.Driver         = (*Driver)(nil)
	_ cable.TrafficCounter = (*Driver)(nil)
	_ cable.Reconfigurer   = (*Driver)(nil)
)

// Open creates the device and configures its key and port. Errors: a
// malformed key (the error never echoes it) before
// anything is made; otherwise the failing step's, after the device is
// removed again.
func Open(_ context.Context, cfg cable.Config, o *Options) (*Driver, error) {
	opts := Options{}
	if o != nil {
		opts = *o
	}
	if cfg.RouteTable <= 0 {
		return nil, errors.New("wireguard: no route table in the configuration")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Netlink == nil {
		opts.Netlink = &netlink.Handle{}
	}
	if opts.NewClient == nil {
		opts.NewClient = newWgctrl
	}
	if opts.StartUserspace == nil {
		opts.StartUserspace = startUserspace
	}
	key, err := wgtypes.ParseKey(cfg.PrivateKey)
	if err != nil {
		return nil, errors.New("wireguard: the private key is not a WireGuard key") // never echo key material
	}
	d := &Driver{cfg: cfg, opts: opts, key: key}
	if err := d.createDevice(); err != nil {
		return nil, err
	}
	nl := d.opts.Netlink
	if d.link, err = nl.LinkByName(cfg.Interface); err != nil {
		d.Close()
		return nil, fmt.Errorf("wireguard: find %s: %w", cfg.Interface, err)
	}
	if err := nl.LinkSetMTU(d.link, cfg.MTU); err != nil {
		d.Close()
		return nil, fmt.Errorf("wireguard: set MTU of %s: %w", cfg.Interface, err)
	}
	if err := nl.LinkSetUp(d.link); err != nil {
		d.Close()
		return nil, fmt.Errorf("wireguard: bring %s up: %w", cfg.Interface, err)
	}
	if d.client, err = d.opts.NewClient(); err != nil {
		d.Close()
		return nil, fmt.Errorf("wireguard: open wgctrl: %w", err)
	}
	port := cfg.ListenPort
	if err := d.client.ConfigureDevice(cfg.Interface, wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
		d.Close()
		return nil, fmt.Errorf("wireguard: configure %s: %w", cfg.Interface, err)
	}
	d.probeDF()
	ctx, stop := context.WithCancel(context.Background())
	d.stopRush, d.rushDone = stop, make(chan struct{})
	go func() {
		defer close(d.rushDone)
		// A quarter interval: the first initiation again comes 1 to 1.25
		// intervals after the peer was added.
		tick := time.NewTicker(rushInterval / 4)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if err := d.rushHandshakes(now); err != nil {
					d.opts.Log.Warn("wireguard: initiate handshakes with new peers again", "interface", cfg.Interface, "err", err)
				}
			}
		}
	}()
	return d, nil
}

// rushHandshakes has WireGuard initiate a handshake again with each new
// peer across NAT (one with a persistent keepalive, added by Set) that has
// completed no handshake yet, rushInterval after its last initiation,
// during the first rushWindow after it was added. A peer with a completed
// handshake, or whose time is up, leaves the rush.
func (d *Driver) rushHandshakes(now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.rushing) == 0 {
		return nil
	}
	dev, err := d.client.Device(d.cfg.Interface)
	if err != nil {
		return err
	}
	on := map[wgtypes.Key]bool{}
	var changes []wgtypes.PeerConfig
	for _, p := range dev.Peers {
		on[p.PublicKey] = true
		r := d.rushing[p.PublicKey]
		switch {
		case r == nil:
		case !p.LastHandshakeTime.IsZero() || now.Sub(r.since) >= rushWindow:
			delete(d.rushing, p.PublicKey)
		case now.Sub(r.last) >= rushInterval:
			if r.last.Equal(r.since) {
				d.opts.Log.Info("wireguard: no answer from a new peer yet; initiating a handshake every second",
					"interface", d.cfg.Interface, "peer", d.names[p.PublicKey], "for", rushWindow)
			}
			r.last = now
			changes = append(changes, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true}, r.cfg)
		}
	}
	for k := range d.rushing {
		if !on[k] {
			delete(d.rushing, k)
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return d.client.ConfigureDevice(d.cfg.Interface, wgtypes.Config{Peers: changes})
}

// Userspace reports whether the device is the embedded userspace one.
func (d *Driver) Userspace() bool { return d.userspace != nil }

// createDevice makes the kernel device, or the userspace one when the kernel
// cannot.
func (d *Driver) createDevice() error {
	name := d.cfg.Interface
	if !d.opts.ForceUserspace {
		err := d.opts.Netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: d.cfg.MTU}})
		switch {
		case err == nil:
			d.opts.Log.Info("wireguard: kernel device", "interface", name)
			return nil
		case errors.Is(err, syscall.EEXIST):
			return d.adopt(err)
		case !noKernelSupport(err):
			return fmt.Errorf("wireguard: create %s: %w", name, err)
		}
		d.opts.Log.Info("wireguard: no kernel support, using the embedded userspace device", "interface", name, "kernel", err)
	}
	dev, err := d.opts.StartUserspace(name, d.cfg.MTU)
	if err != nil {
		return err
	}
	d.userspace = dev
	return nil
}

// adopt takes over the kernel device of our name that an engine which died
// without cleaning up (kill -9) left behind, so that its tunnels carry on:
// Open then sets the key and port again and Set leaves matching peers alone.
// A device of another type under our name is not ours to take over.
func (d *Driver) adopt(exists error) error {
	name := d.cfg.Interface
	l, err := d.opts.Netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("wireguard: create %s: %w; find it: %w", name, exists, err)
	}
	if l.Type() != "wireguard" {
		return fmt.Errorf("wireguard: create %s: a %s device of that name exists: %w", name, l.Type(), exists)
	}
	d.opts.Log.Info("wireguard: adopting the existing kernel device", "interface", name)
	return nil
}

// noKernelSupport tells the LinkAdd errors after which the userspace device
// is worth trying: EOPNOTSUPP ("Unknown device type") is a kernel without the
// WireGuard module; after ENODEV or EINVAL, too, no kernel device exists.
// Any other error (EPERM) would stop the userspace device as well.
func noKernelSupport(err error) bool {
	return errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EINVAL)
}

// newWgctrl is wgctrl.New as Options.NewClient; on error it returns a nil
// Client, not a nil *wgctrl.Client inside one, which Close would call.
func newWgctrl() (Client, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// userspaceDevice is wireguard-go running in this process, configured over
// its UAPI socket like the kernel device is over netlink.
type userspaceDevice struct {
	dev  *device.Device
	uapi net.Listener
}

// Close stops the device; its TUN device and UAPI socket go with it.
func (u *userspaceDevice) Close() error {
	err := u.uapi.Close()
	u.dev.Close()
	return err
}

func startUserspace(name string, mtu int) (io.Closer, error) {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("wireguard: create TUN %s: %w", name, err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wireguard("+name+"): "))
	file, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("wireguard: UAPI socket for %s: %w", name, err)
	}
	uapi, err := ipc.UAPIListen(name, file)
	if err != nil {
		file.Close()
		dev.Close()
		return nil, fmt.Errorf("wireguard: UAPI listen for %s: %w", name, err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	if err := dev.Up(); err != nil {
		uapi.Close()
		dev.Close()
		return nil, fmt.Errorf("wireguard: start %s: %w", name, err)
	}
	return &userspaceDevice{dev: dev, uapi: uapi}, nil
}

// Set makes the device's peers and routes exactly the wanted ones. Peers that
// already match are left alone, so repeated calls keep handshakes and
// established flows.
func (d *Driver) Set(_ context.Context, peers []cable.Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.client.Device(d.cfg.Interface)
	if err != nil {
		return fmt.Errorf("wireguard: read %s: %w", d.cfg.Interface, err)
	}
	want := map[wgtypes.Key]cable.Peer{}
	for _, p := range peers {
		k, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return fmt.Errorf("wireguard: peer %s: public key: %w", p.Name, err)
		}
		want[k] = p
	}
	d.names = map[wgtypes.Key]string{}
	for k, p := range want {
		d.names[k] = p.Name
	}
	var changes []wgtypes.PeerConfig
	have := map[wgtypes.Key]bool{}
	for _, cp := range cur.Peers {
		have[cp.PublicKey] = true
		p, ok := want[cp.PublicKey]
		if !ok {
			changes = append(changes, wgtypes.PeerConfig{PublicKey: cp.PublicKey, Remove: true})
			continue
		}
		if !samePeer(cp, p) {
			changes = append(changes, peerConfig(cp.PublicKey, p))
		}
	}
	var added []wgtypes.PeerConfig
	for k, p := range want {
		if !have[k] {
			changes = append(changes, peerConfig(k, p))
			if p.Keepalive > 0 {
				added = append(added, peerConfig(k, p))
			}
		}
	}
	if len(changes) > 0 {
		if err := d.client.ConfigureDevice(d.cfg.Interface, wgtypes.Config{Peers: changes}); err != nil {
			return fmt.Errorf("wireguard: configure peers of %s: %w", d.cfg.Interface, err)
		}
	}
	if d.rushing == nil {
		d.rushing = map[wgtypes.Key]*rushPeer{}
	}
	// A peer in the rush is added again as it is wanted now.
	for k, r := range d.rushing {
		if p, ok := want[k]; ok && p.Keepalive > 0 {
			r.cfg = peerConfig(k, p)
		} else {
			delete(d.rushing, k)
		}
	}
	now := time.Now()
	for _, pc := range added {
		d.rushing[pc.PublicKey] = &rushPeer{cfg: pc, since: now, last: now}
	}
	return cable.SetRoutes(d.opts.Netlink, d.link, d.cfg.RouteTable, peers)
}

// Reconfigure gives the open device a new private key, port and MTU in
// place: its peers, routes and, for peers whose keys stay, the tunnels'
// sessions are kept (make before break). Another interface name or route
// table returns cable.ErrReopen, having changed nothing.
func (d *Driver) Reconfigure(_ context.Context, cfg cable.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cfg.Interface != d.cfg.Interface || cfg.RouteTable != d.cfg.RouteTable {
		return cable.ErrReopen
	}
	key, err := wgtypes.ParseKey(cfg.PrivateKey)
	if err != nil {
		return errors.New("wireguard: the private key is not a WireGuard key") // never echo key material
	}
	if cfg.MTU != d.cfg.MTU {
		if err := d.opts.Netlink.LinkSetMTU(d.link, cfg.MTU); err != nil {
			return fmt.Errorf("wireguard: set MTU of %s: %w", cfg.Interface, err)
		}
	}
	var c wgtypes.Config
	if key != d.key {
		c.PrivateKey = &key
	}
	if cfg.ListenPort != d.cfg.ListenPort {
		port := cfg.ListenPort
		c.ListenPort = &port
	}
	if c.PrivateKey != nil || c.ListenPort != nil {
		if err := d.client.ConfigureDevice(cfg.Interface, c); err != nil {
			return fmt.Errorf("wireguard: reconfigure %s: %w", cfg.Interface, err)
		}
	}
	d.cfg, d.key = cfg, key
	if c.ListenPort != nil {
		d.probeDF() // new sockets
	}
	return nil
}

// probeDF makes the userspace device's sockets send with don't-fragment,
// ignoring the path MTU the kernel learns (df.go); a failure is logged:
// the cable still works where the path does not answer with ICMP. The
// kernel device sends without don't-fragment: routers fragment its
// packets, and nothing is to be done.
func (d *Driver) probeDF() {
	if d.userspace == nil {
		return
	}
	n, err := probeDFOn(d.cfg.ListenPort)
	if err != nil || n == 0 {
		d.opts.Log.Warn("wireguard: cannot make the userspace device's sockets ignore the learnt path MTU; behind a router that answers with ICMP, bulk traffic may stall",
			"interface", d.cfg.Interface, "port", d.cfg.ListenPort, "sockets", n, "err", err)
	}
}

func peerConfig(k wgtypes.Key, p cable.Peer) wgtypes.PeerConfig {
	ep := net.UDPAddrFromAddrPort(p.Endpoint)
	ka := p.Keepalive
	return wgtypes.PeerConfig{
		PublicKey: k, Endpoint: ep, ReplaceAllowedIPs: true, AllowedIPs: cable.IPNets(p.Subnets),
		PersistentKeepaliveInterval: &ka,
	}
}

// roamGrace is how long a peer keeps an endpoint it roamed to without a new
// handshake: WireGuard's own REJECT_AFTER_TIME.
const roamGrace = 180 * time.Second

func samePeer(cur wgtypes.Peer, p cable.Peer) bool {
	// A peer behind NAT is heard from the NAT's address and port, not the
	// published ones; WireGuard follows it there. While its handshakes are
	// fresh, its learned endpoint stands: resetting it would cut the path.
	roamed := !cur.LastHandshakeTime.IsZero() && time.Since(cur.LastHandshakeTime) < roamGrace
	if (cur.Endpoint == nil || cur.Endpoint.AddrPort() != p.Endpoint) && !roamed {
		return false
	}
	if cur.PersistentKeepaliveInterval != p.Keepalive {
		return false
	}
	var a, b []string
	for _, n := range cur.AllowedIPs {
		a = append(a, n.String())
	}
	for _, s := range p.Subnets {
		b = append(b, s.Masked().String())
	}
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// Traffic reads WireGuard's per-peer byte counters.
func (d *Driver) Traffic() (map[string]cable.Traffic, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, err := d.client.Device(d.cfg.Interface)
	if err != nil {
		return nil, err
	}
	out := map[string]cable.Traffic{}
	for _, p := range dev.Peers {
		if name, ok := d.names[p.PublicKey]; ok {
			out[name] = cable.Traffic{RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes}
		}
	}
	return out, nil
}

// Close removes the device; its routes (and the userspace device's UAPI
// socket) go with it.
func (d *Driver) Close() error {
	if d.stopRush != nil {
		d.stopRush()
		<-d.rushDone
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		d.client.Close()
	}
	if d.userspace != nil {
		return d.userspace.Close()
	}
	nl := d.opts.Netlink
	if l, err := nl.LinkByName(d.cfg.Interface); err == nil {
		return nl.LinkDel(l)
	}
	return nil
}
