package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/cable/vxlan"
	"strait.dev/strait/gateway/cable/wireguard"
	"strait.dev/strait/pkg/nodenet"
)

// The bare cable's ports, VNI and rule priority: apart from Strait's own
// (4500/4800, VNI 100, priority 150), so both run side by side on the same
// nodes.
const (
	bareWGPort    = 51999
	bareVXLANPort = 4799
	bareVNI       = 999
	barePriority  = "149"
)

// bareSide opens the driver with nothing of Strait around it: one peer, a
// host-prefix address (/32 or /128, addr's family) on each end, a rule
// sending the peer's address to the driver's table; the peer is reached at
// peerUnderlay (either family).
func bareSide(ctx context.Context, driver, dev, key, peerKey string, addr, peerAddr, peerUnderlay netip.Addr, ready string) error {
	var d cable.Driver
	var err error
	peer := cable.Peer{Name: "bare", Subnets: []netip.Prefix{netip.PrefixFrom(peerAddr, peerAddr.BitLen())}}
	// The gateway's table: the bare tunnel stands where Strait's cable would.
	table := nodenet.GatewayTable
	cfg := cable.Config{Interface: dev, MTU: bareMTU(driver), RouteTable: table, IPv6Underlay: !peerUnderlay.Unmap().Is4()}
	switch driver {
	case "wireguard":
		cfg.ListenPort, cfg.PrivateKey = bareWGPort, key
		d, err = wireguard.Open(ctx, cfg, nil)
		peer.Endpoint, peer.PublicKey = netip.AddrPortFrom(peerUnderlay, bareWGPort), peerKey
	case "vxlan":
		cfg.ListenPort, cfg.VNI = bareVXLANPort, bareVNI
		d, err = vxlan.Open(ctx, cfg)
		peer.Endpoint = netip.AddrPortFrom(peerUnderlay, bareVXLANPort)
	default:
		return fmt.Errorf("unknown driver %q", driver)
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Set(ctx, []cable.Peer{peer}); err != nil {
		return err
	}
	// ip -4 or -6: a rule is of one family, and "ip rule del" without
	// one looks among IPv4's alone.
	fam := "-4"
	if peerAddr.Is6() {
		fam = "-6"
	}
	steps := [][]string{
		// nodad: usable at once, not tentative for a second or two.
		{fam, "addr", "add", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", dev, "nodad"},
		{fam, "rule", "add", "to", netip.PrefixFrom(peerAddr, peerAddr.BitLen()).String(), "lookup", fmt.Sprint(table), "priority", barePriority},
	}
	if addr.Is4() {
		// nodad is IPv6's alone.
		steps[0] = steps[0][:len(steps[0])-1]
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", s, err, out)
		}
	}
	defer func() {
		_ = exec.Command("ip", fam, "rule", "del", "priority", barePriority).Run()
	}()
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}
