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

// bareSide opens the driver with nothing of Strait around it: one peer, a /32
// address on each end, a rule sending the peer's address to the driver's table.
func bareSide(ctx context.Context, driver, dev, key, peerKey string, addr, peerAddr, peerUnderlay netip.Addr, ready string) error {
	var d cable.Driver
	var err error
	peer := cable.Peer{Name: "bare", Subnets: []netip.Prefix{netip.PrefixFrom(peerAddr, 32)}}
	// The gateway's table: the bare tunnel stands where Strait's cable would.
	table := nodenet.GatewayTable
	switch driver {
	case "wireguard":
		d, err = wireguard.Open(ctx, cable.Config{Interface: dev, MTU: 1420, RouteTable: table, ListenPort: bareWGPort, PrivateKey: key}, nil)
		peer.Endpoint, peer.PublicKey = netip.AddrPortFrom(peerUnderlay, bareWGPort), peerKey
	case "vxlan":
		d, err = vxlan.Open(ctx, cable.Config{Interface: dev, MTU: 1430, RouteTable: table, ListenPort: bareVXLANPort, VNI: bareVNI})
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
	steps := [][]string{
		{"addr", "add", addr.String() + "/32", "dev", dev},
		{"rule", "add", "to", peerAddr.String() + "/32", "lookup", fmt.Sprint(table), "priority", barePriority},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", s, err, out)
		}
	}
	defer func() {
		_ = exec.Command("ip", "rule", "del", "priority", barePriority).Run()
	}()
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	return nil
}
