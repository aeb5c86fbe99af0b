package testpod

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// narrowEcho is a UDP echo on loopback that drops every datagram making an
// IPv4 packet larger than mtu bytes, as a link that cannot carry them and
// says nothing would. It returns its address.
func narrowEcho(t *testing.T, mtu int) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n+udpIPv4Overhead <= mtu {
				_, _ = c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	return c.LocalAddr().String()
}

func TestPMTU(t *testing.T) {
	for _, tc := range []struct {
		name          string
		path, max     int
		ok            bool
		largest, fail int
	}{
		{"the path carries max", 9000, 1420, true, 1420, 0},
		{"exactly max", 1420, 1420, true, 1420, 0},
		{"narrower by one byte", 1419, 1420, false, 1419, 1420},
		{"a 1400-byte link under a 1420-byte cable", 1400 - 60, 1420, false, 1340, 1341},
		{"not even the minimum", 500, 1420, false, 0, 576},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := PMTUConfig{Target: narrowEcho(t, tc.path), Max: tc.max, Min: DefaultPMTUMin, Count: 2, Timeout: 100 * time.Millisecond}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			rep := PMTU(context.Background(), cfg)
			t.Logf("%+v", rep)
			if rep.OK != tc.ok || rep.Largest != tc.largest || rep.Smallest != tc.fail {
				t.Errorf("ok %v, largest %d, smallest failing %d; want %v, %d, %d", rep.OK, rep.Largest, rep.Smallest, tc.ok, tc.largest, tc.fail)
			}
			if !tc.ok && rep.Error == "" {
				t.Error("a failed probe says nothing")
			}
		})
	}
}

func TestPMTUConfigValidate(t *testing.T) {
	good := PMTUConfig{Target: "127.0.0.1:9001", Max: 1420, Min: 576, Count: 3, Timeout: time.Second}
	for _, tc := range []struct {
		name   string
		change func(*PMTUConfig)
		want   string
	}{
		{"a name", func(c *PMTUConfig) { c.Target = "echo:9001" }, "want IP:PORT"},
		{"max below min", func(c *PMTUConfig) { c.Max = 500 }, "<= max"},
		{"min below the probe's header", func(c *PMTUConfig) { c.Min = 30 }, "<= min"},
		{"max above an IP packet", func(c *PMTUConfig) { c.Max = 70000 }, "<= 65535"},
		{"no count", func(c *PMTUConfig) { c.Count = 0 }, "count"},
	} {
		c := good
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if err := good.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
