// Command tunnel is "make bench-tunnel": it measures Strait's cables in the
// sandbox against a bare cable of the same driver set up in the same run
// between the same two gateway nodes, and writes _output/bench/tunnel.json.
//
// For each driver: a sandbox of two clusters (no NAT) is joined with that
// driver; iperf3 runs between pods on the two active gateway nodes (through
// Strait) and between the two nodes over a bare device of the driver, made by
// this program with the driver package alone; ping gives RTTs both ways.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Result is one driver's figures.
type Result struct {
	Driver           string  `json:"driver"`
	StraitMbps       float64 `json:"straitMbps"`
	BareMbps         float64 `json:"bareMbps"`
	Ratio            float64 `json:"ratio"`
	StraitRTTMedianM float64 `json:"straitRttMedianMs"`
	StraitRTTP99M    float64 `json:"straitRttP99Ms"`
	BareRTTMedianM   float64 `json:"bareRttMedianMs"`
	BareRTTP99M      float64 `json:"bareRttP99Ms"`
}

const (
	iperfSeconds = 5
	pings        = 100
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-tunnel:", err)
		os.Exit(1)
	}
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (the sandbox)")
	}
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		return bare(os.Args[2:])
	}
	root, _ := os.Getwd()
	bin := filepath.Join(root, "_output", "bin")
	state := filepath.Join(root, "_output", "bench", "sandbox")
	sbx := func(args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, "strait-sandbox"), append([]string{"--state-dir", state}, args...)...)
	}
	defer func() { _ = sbx("down").Run() }()
	var results []Result
	for _, driver := range []string{"wireguard", "vxlan"} {
		fmt.Printf("== %s\n", driver)
		if out, err := sbx("up", "--clusters", "2", "--nodes", "2").CombinedOutput(); err != nil {
			return fmt.Errorf("sandbox up: %v\n%s", err, out)
		}
		r, err := measure(sbx, bin, state, driver)
		if err != nil {
			return err
		}
		results = append(results, r)
		if out, err := sbx("down").CombinedOutput(); err != nil {
			return fmt.Errorf("sandbox down: %v\n%s", err, out)
		}
	}
	out := filepath.Join(root, "_output", "bench", "tunnel.json")
	data, _ := json.MarshalIndent(map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "iperfSeconds": iperfSeconds, "results": results}, "", "  ")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	fmt.Printf("\n%-10s %12s %12s %7s %14s %14s %14s %14s\n", "DRIVER", "STRAIT Mb/s", "BARE Mb/s", "RATIO", "STRAIT RTT p50", "STRAIT RTT p99", "BARE RTT p50", "BARE RTT p99")
	for _, r := range results {
		fmt.Printf("%-10s %12.0f %12.0f %7.2f %12.3fms %12.3fms %12.3fms %12.3fms\n", r.Driver, r.StraitMbps, r.BareMbps, r.Ratio,
			r.StraitRTTMedianM, r.StraitRTTP99M, r.BareRTTMedianM, r.BareRTTP99M)
	}
	fmt.Println("\nwritten", out)
	return nil
}

func measure(sbx func(...string) *exec.Cmd, bin, state, driver string) (Result, error) {
	r := Result{Driver: driver}
	ctl := filepath.Join(bin, "straitctl")
	info := filepath.Join(state, "broker-info.strait")
	admin := func(args ...string) error {
		out, err := sbx(append([]string{"admin", "--", ctl}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("straitctl %s: %v\n%s", args[0], err, out)
		}
		return nil
	}
	if err := admin("deploy-broker", "--kubeconfig", filepath.Join(state, "admin", "c1.kubeconfig"), "--output", info); err != nil {
		return r, err
	}
	for i, c := range []string{"c1", "c2"} {
		if err := admin("join", info, "--kubeconfig", filepath.Join(state, "admin", c+".kubeconfig"), "--clusterid", c,
			"--gateway-nodes", c+"-n1", "--pod-cidr", fmt.Sprintf("10.%d.0.0/16", i+1), "--cable-driver", driver); err != nil {
			return r, err
		}
	}
	// A pod on each gateway node (n1, the only gateway).
	ips := map[string]string{}
	for _, c := range []string{"c1", "c2"} {
		kc := filepath.Join(state, c+".kubeconfig")
		manifest := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bench","namespace":"default"},"spec":{"nodeName":"%s-n1","containers":[{"name":"c","image":"strait/testpod","args":["sleep"]}]}}`, c)
		cmd := exec.Command("kubectl", "--kubeconfig", kc, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(manifest)
		if out, err := cmd.CombinedOutput(); err != nil {
			return r, fmt.Errorf("bench pod: %v\n%s", err, out)
		}
		if out, err := exec.Command("kubectl", "--kubeconfig", kc, "wait", "--for=condition=Ready", "pod/bench", "--timeout=60s").CombinedOutput(); err != nil {
			return r, fmt.Errorf("bench pod: %v\n%s", err, out)
		}
		out, err := exec.Command("kubectl", "--kubeconfig", kc, "get", "pod", "bench", "-o", "jsonpath={.status.podIP}").Output()
		if err != nil {
			return r, err
		}
		ips[c] = string(out)
	}
	inPod := func(c string, args ...string) *exec.Cmd {
		return sbx(append([]string{"exec", c + "/default/bench", "--"}, args...)...)
	}
	// Wait for the cable.
	deadline := time.Now().Add(90 * time.Second)
	for inPod("c1", "ping", "-c", "1", "-W", "1", ips["c2"]).Run() != nil {
		if time.Now().After(deadline) {
			return r, errors.New("no traffic through the cable after 90 s")
		}
	}
	var err error
	if r.StraitMbps, err = iperf(inPod("c2", "iperf3", "-s", "-1", "-p", "5201"), inPod("c1", "iperf3", "-c", ips["c2"], "-p", "5201", "-t", strconv.Itoa(iperfSeconds), "-J")); err != nil {
		return r, err
	}
	if r.StraitRTTMedianM, r.StraitRTTP99M, err = rtt(inPod("c1", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", ips["c2"])); err != nil {
		return r, err
	}

	// The bare cable: the same driver package between the same two nodes,
	// with /32 tunnel addresses and nothing of Strait around it.
	self, _ := os.Executable()
	ka, _ := wgtypes.GeneratePrivateKey()
	kb, _ := wgtypes.GeneratePrivateKey()
	// Userspace WireGuard's UAPI sockets share /var/run/wireguard here (the
	// helpers run outside the nodes' own /run): one device name per side.
	sides := []struct{ ns, dev, key, peerKey, addr, peerAddr, peerUnderlay string }{
		{"strait-c1-n1", "bench-c1", ka.String(), kb.PublicKey().String(), "100.127.0.1", "100.127.0.2", "198.18.2.11"},
		{"strait-c2-n1", "bench-c2", kb.String(), ka.PublicKey().String(), "100.127.0.2", "100.127.0.1", "198.18.1.11"},
	}
	var helpers []*exec.Cmd
	defer func() {
		for _, h := range helpers {
			_ = h.Process.Signal(syscall.SIGTERM)
			_ = h.Wait()
		}
	}()
	for _, s := range sides {
		ready := filepath.Join(state, "bare-"+s.ns)
		h := exec.Command("ip", "netns", "exec", s.ns, self, "bare", driver, s.dev, s.key, s.peerKey, s.addr, s.peerAddr, s.peerUnderlay, ready)
		h.Stderr = os.Stderr
		if err := h.Start(); err != nil {
			return r, err
		}
		helpers = append(helpers, h)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("bare %s in %s did not come up", driver, s.ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	inNode := func(ns string, args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	}
	deadline = time.Now().Add(30 * time.Second)
	for inNode("strait-c1-n1", "ping", "-c", "1", "-W", "1", "100.127.0.2").Run() != nil {
		if time.Now().After(deadline) {
			return r, errors.New("no traffic through the bare cable")
		}
	}
	if r.BareMbps, err = iperf(inNode("strait-c2-n1", "iperf3", "-s", "-1", "-p", "5202"), inNode("strait-c1-n1", "iperf3", "-c", "100.127.0.2", "-p", "5202", "-t", strconv.Itoa(iperfSeconds), "-J")); err != nil {
		return r, err
	}
	if r.BareRTTMedianM, r.BareRTTP99M, err = rtt(inNode("strait-c1-n1", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", "100.127.0.2")); err != nil {
		return r, err
	}
	if r.BareMbps > 0 {
		r.Ratio = r.StraitMbps / r.BareMbps
	}
	return r, nil
}

// iperf runs server (one test, then it exits) and client; returns Mb/s
// received.
func iperf(server, client *exec.Cmd) (float64, error) {
	if err := server.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	var out []byte
	var err error
	for range 20 { // until the server listens
		time.Sleep(200 * time.Millisecond)
		c := exec.Command(client.Path, client.Args[1:]...)
		if out, err = c.Output(); err == nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v\n%s", err, out)
	}
	var rep struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return rep.End.SumReceived.BitsPerSecond / 1e6, nil
}

// rtt runs ping and returns the median and 99th percentile in milliseconds.
func rtt(cmd *exec.Cmd) (median, p99 float64, err error) {
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("ping: %v\n%s", err, out)
	}
	var ms []float64
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "time="); i >= 0 {
			f := strings.Fields(line[i+5:])
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				ms = append(ms, v)
			}
		}
	}
	if len(ms) == 0 {
		return 0, 0, errors.New("ping: no replies")
	}
	sort.Float64s(ms)
	return ms[len(ms)/2], ms[min(len(ms)-1, len(ms)*99/100)], nil
}

// bare sets up one side of the bare cable in the current namespace and waits.
func bare(args []string) error {
	if len(args) != 8 {
		return errors.New("bare: want driver device key peerKey addr peerAddr peerUnderlay readyFile")
	}
	driver, dev, key, peerKey, addr, peerAddr, peerUnderlay, ready := args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7]
	return bareSide(context.Background(), driver, dev, key, peerKey, netip.MustParseAddr(addr), netip.MustParseAddr(peerAddr), netip.MustParseAddr(peerUnderlay), ready)
}
