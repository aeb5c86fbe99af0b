package cabletest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WGClient is a fake wgctrl client (the WireGuard driver's Client seam) over
// a fake Netlink: the WireGuard device lives on the link of its name, a
// "wireguard" link or the userspace device's "tuntap", and goes away with it.
// Its changes are logged in the Netlink's Log and rendered by its String.
type WGClient struct {
	nl *Netlink
	// Configures counts ConfigureDevice calls.
	Configures int
	// PeerChanges counts the peer configurations those calls carried.
	PeerChanges int
	// Closed is set by Close; a closed client answers nothing, as wgctrl.
	Closed bool
}

// NewWGClient returns a client of the WireGuard devices on nl's links.
func NewWGClient(nl *Netlink) *WGClient { return &WGClient{nl: nl} }

// device finds the named WireGuard device; the caller holds nl.mu.
func (c *WGClient) device(name string) (*wgtypes.Device, error) {
	if c.Closed {
		return nil, errors.New("cabletest: wgctrl client used after Close")
	}
	l := c.nl.byName(name)
	if l == nil || (l.link.Type() != "wireguard" && l.link.Type() != "tuntap") {
		return nil, fmt.Errorf("wireguard device %s: %w", name, os.ErrNotExist)
	}
	if l.wg == nil {
		typ := wgtypes.LinuxKernel
		if l.link.Type() == "tuntap" {
			typ = wgtypes.Userspace
		}
		l.wg = &wgtypes.Device{Name: name, Type: typ}
	}
	return l.wg, nil
}

// Device returns a copy of the named device, as wgctrl reads it anew.
func (c *WGClient) Device(name string) (*wgtypes.Device, error) {
	c.nl.mu.Lock()
	defer c.nl.mu.Unlock()
	d, err := c.device(name)
	if err != nil {
		return nil, err
	}
	cp := *d
	cp.Peers = nil
	for _, p := range d.Peers {
		p.AllowedIPs = slices.Clone(p.AllowedIPs)
		if p.Endpoint != nil {
			ep := *p.Endpoint
			p.Endpoint = &ep
		}
		cp.Peers = append(cp.Peers, p)
	}
	return &cp, nil
}

// ConfigureDevice applies cfg as the kernel does: only what cfg sets
// changes; peers are added, updated or removed one by one.
func (c *WGClient) ConfigureDevice(name string, cfg wgtypes.Config) error {
	c.nl.mu.Lock()
	defer c.nl.mu.Unlock()
	d, err := c.device(name)
	if err != nil {
		return err
	}
	c.Configures++
	if cfg.PrivateKey != nil {
		d.PrivateKey, d.PublicKey = *cfg.PrivateKey, cfg.PrivateKey.PublicKey()
		c.nl.logf("wg set %s private-key", name) // never the key itself
	}
	if cfg.ListenPort != nil {
		d.ListenPort = *cfg.ListenPort
		c.nl.logf("wg set %s listen-port %d", name, d.ListenPort)
	}
	if cfg.ReplacePeers {
		d.Peers = nil
		c.nl.logf("wg set %s replace-peers", name)
	}
	for _, pc := range cfg.Peers {
		c.PeerChanges++
		i := slices.IndexFunc(d.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == pc.PublicKey })
		switch {
		case pc.Remove:
			if i >= 0 {
				d.Peers = slices.Delete(d.Peers, i, i+1)
			}
			c.nl.logf("wg set %s peer %s remove", name, pc.PublicKey)
			continue
		case i < 0 && pc.UpdateOnly:
			continue
		case i < 0:
			d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: pc.PublicKey})
			i = len(d.Peers) - 1
		}
		p := &d.Peers[i]
		if pc.Endpoint != nil {
			ep := *pc.Endpoint
			p.Endpoint = &ep
		}
		if pc.PersistentKeepaliveInterval != nil {
			p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
		}
		if pc.ReplaceAllowedIPs {
			p.AllowedIPs = nil
		}
		p.AllowedIPs = append(p.AllowedIPs, pc.AllowedIPs...)
		c.nl.logf("wg set %s %s", name, peerString(*p))
	}
	return nil
}

// Close closes the client; the devices stay.
func (c *WGClient) Close() error {
	c.nl.mu.Lock()
	defer c.nl.mu.Unlock()
	c.Closed = true
	return nil
}

// Handshake records that the peer was last heard from at from (where it
// roamed to, behind NAT) at the given time, as WireGuard does on a
// handshake. It is the remote side's doing, so it is not logged.
func (c *WGClient) Handshake(name string, peer wgtypes.Key, from netip.AddrPort, at time.Time) error {
	return c.updatePeer(name, peer, func(p *wgtypes.Peer) {
		p.Endpoint = net.UDPAddrFromAddrPort(from)
		p.LastHandshakeTime = at
	})
}

// Received records that the device got bytes from peer without a
// completed handshake: a handshake initiation it answered, whose session
// never came (WireGuard counts the initiation in the peer's received
// bytes).
func (c *WGClient) Received(name string, peer wgtypes.Key, bytes int64) error {
	return c.updatePeer(name, peer, func(p *wgtypes.Peer) { p.ReceiveBytes += bytes })
}

// updatePeer applies the remote side's doing to one peer of device name.
func (c *WGClient) updatePeer(name string, peer wgtypes.Key, update func(*wgtypes.Peer)) error {
	c.nl.mu.Lock()
	defer c.nl.mu.Unlock()
	d, err := c.device(name)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(d.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == peer })
	if i < 0 {
		return fmt.Errorf("wireguard device %s: no peer %s", name, peer)
	}
	update(&d.Peers[i])
	return nil
}

// writeDevice renders a device in the spirit of `wg show`, peers sorted; the
// private key appears only as its public key.
func writeDevice(b *strings.Builder, d *wgtypes.Device) {
	fmt.Fprintf(b, "  wg public-key %s listen-port %d\n", d.PublicKey, d.ListenPort)
	var peers []string
	for _, p := range d.Peers {
		peers = append(peers, "  wg "+peerString(p)+"\n")
	}
	sort.Strings(peers)
	b.WriteString(strings.Join(peers, ""))
}

func peerString(p wgtypes.Peer) string {
	ep := "(none)"
	if p.Endpoint != nil {
		ep = p.Endpoint.String()
	}
	var ips []string
	for _, n := range p.AllowedIPs {
		ips = append(ips, n.String())
	}
	sort.Strings(ips)
	ka := "off"
	if p.PersistentKeepaliveInterval > 0 {
		ka = p.PersistentKeepaliveInterval.String()
	}
	return fmt.Sprintf("peer %s endpoint %s allowed-ips %s keepalive %s", p.PublicKey, ep, strings.Join(ips, ","), ka)
}
