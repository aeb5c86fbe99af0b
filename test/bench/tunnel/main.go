// Command tunnel is "make bench-tunnel" and "make bench-dataplane": it
// measures Strait's data plane in the sandbox against a bare cable of the
// same driver set up in the same run between the same two gateway nodes.
//
// For each driver: a sandbox of two clusters (no NAT) is joined with that
// driver; iperf3 runs between pods on the two active gateway nodes (through
// Strait) and between the two nodes over a bare device of the driver, made by
// this program with the driver package alone; ping gives RTTs. That is the
// tunnel suite (_output/bench/tunnel.json). The dataplane suite
// (_output/bench/dataplane.json) adds pods on non-gateway nodes, whose
// traffic also crosses the route agents' overlay, and the failover gap: a
// UDP probe every 10 ms between the non-gateway pods while c1's active
// gateway is killed (kill -9), several times; the median gap is reported.
// It then brings up the same two clusters with the same pod and Service
// CIDRs (strait-sandbox up --overlapping), joins them with --globalnet and
// measures again between the pods on the non-gateway nodes, c1's pod to
// the global IP of c2's (a pod behind an exported headless Service gets
// its own, DNAT'd to it for every protocol): Globalnet's throughput and
// RTT as ratios to the non-gateway figures without overlap of the same
// run.
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

	"strait.dev/strait/test/kubetest"
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
	// The dataplane suite: pods on non-gateway nodes, and failovers.
	NonGatewayMbps       float64   `json:"nonGatewayMbps,omitempty"`
	NonGatewayRatio      float64   `json:"nonGatewayRatio,omitempty"`
	NonGatewayRTTMedianM float64   `json:"nonGatewayRttMedianMs,omitempty"`
	NonGatewayRTTP99M    float64   `json:"nonGatewayRttP99Ms,omitempty"`
	FailoverGapsMs       []float64 `json:"failoverGapsMs,omitempty"`
	FailoverGapMedianMs  float64   `json:"failoverGapMedianMs,omitempty"`
	// Globalnet, in the dataplane suite: the same pods in clusters whose
	// CIDRs overlap, c1's to c2's global IP. GlobalnetRatio is
	// GlobalnetMbps / NonGatewayMbps (the goal is >= 0.9);
	// GlobalnetRTTRatio is GlobalnetRTTMedianM / NonGatewayRTTMedianM
	// (above 1 is slower).
	GlobalnetMbps       float64 `json:"globalnetMbps,omitempty"`
	GlobalnetRatio      float64 `json:"globalnetRatio,omitempty"`
	GlobalnetRTTMedianM float64 `json:"globalnetRttMedianMs,omitempty"`
	GlobalnetRTTP99M    float64 `json:"globalnetRttP99Ms,omitempty"`
	GlobalnetRTTRatio   float64 `json:"globalnetRttRatio,omitempty"`
}

// failovers is how many kills the dataplane suite measures.
const failovers = 5

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
	suite := "tunnel"
	if len(os.Args) > 1 {
		suite = os.Args[1]
	}
	if suite != "tunnel" && suite != "dataplane" {
		return fmt.Errorf("unknown suite %q: tunnel or dataplane", suite)
	}
	dataplane := suite == "dataplane"
	if _, err := kubetest.BinDir(); err != nil {
		return err
	}
	if _, err := os.Stat(kubectlPath()); err != nil {
		return fmt.Errorf("kubectl built from source: %w (run 'make kube-binaries')", err)
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
		nodes := "2"
		if dataplane {
			nodes = "3"
		}
		if out, err := sbx("up", "--clusters", "2", "--nodes", nodes).CombinedOutput(); err != nil {
			return fmt.Errorf("sandbox up: %v\n%s", err, out)
		}
		r, err := measure(sbx, bin, state, driver, dataplane)
		if err != nil {
			return err
		}
		if out, err := sbx("down").CombinedOutput(); err != nil {
			return fmt.Errorf("sandbox down: %v\n%s", err, out)
		}
		if dataplane {
			fmt.Printf("== %s, Globalnet\n", driver)
			if out, err := sbx("up", "--clusters", "2", "--nodes", nodes, "--overlapping").CombinedOutput(); err != nil {
				return fmt.Errorf("sandbox up --overlapping: %v\n%s", err, out)
			}
			if err := measureGlobalnet(sbx, bin, state, driver, &r); err != nil {
				return err
			}
			if out, err := sbx("down").CombinedOutput(); err != nil {
				return fmt.Errorf("sandbox down: %v\n%s", err, out)
			}
		}
		results = append(results, r)
	}
	out := filepath.Join(root, "_output", "bench", suite+".json")
	data, _ := json.MarshalIndent(map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "iperfSeconds": iperfSeconds, "results": results}, "", "  ")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	fmt.Printf("\n%-10s %12s %12s %7s %14s %14s %14s %14s\n", "DRIVER", "STRAIT Mb/s", "BARE Mb/s", "RATIO", "STRAIT RTT p50", "STRAIT RTT p99", "BARE RTT p50", "BARE RTT p99")
	for _, r := range results {
		fmt.Printf("%-10s %12.0f %12.0f %7.2f %12.3fms %12.3fms %12.3fms %12.3fms\n", r.Driver, r.StraitMbps, r.BareMbps, r.Ratio,
			r.StraitRTTMedianM, r.StraitRTTP99M, r.BareRTTMedianM, r.BareRTTP99M)
	}
	if dataplane {
		fmt.Printf("\n%-10s %16s %7s %14s %14s %20s %s\n", "DRIVER", "NON-GW Mb/s", "RATIO", "NON-GW RTT p50", "NON-GW RTT p99", "FAILOVER GAP p50", "GAPS (ms)")
		for _, r := range results {
			fmt.Printf("%-10s %16.0f %7.2f %12.3fms %12.3fms %18.0fms %v\n", r.Driver, r.NonGatewayMbps, r.NonGatewayRatio,
				r.NonGatewayRTTMedianM, r.NonGatewayRTTP99M, r.FailoverGapMedianMs, r.FailoverGapsMs)
		}
		fmt.Printf("\n%-10s %16s %12s %7s %14s %14s %10s\n", "DRIVER", "GLOBALNET Mb/s", "NON-GW Mb/s", "RATIO", "GN RTT p50", "GN RTT p99", "RTT RATIO")
		for _, r := range results {
			fmt.Printf("%-10s %16.0f %12.0f %7.2f %12.3fms %12.3fms %10.2f\n", r.Driver, r.GlobalnetMbps, r.NonGatewayMbps, r.GlobalnetRatio,
				r.GlobalnetRTTMedianM, r.GlobalnetRTTP99M, r.GlobalnetRTTRatio)
		}
	}
	fmt.Println("\nwritten", out)
	return nil
}

func measure(sbx func(...string) *exec.Cmd, bin, state, driver string, dataplane bool) (Result, error) {
	r := Result{Driver: driver}
	if err := joinClusters(sbx, bin, state, driver, dataplane, false); err != nil {
		return r, err
	}
	// A pod on each cluster's active gateway node ("bench"), and in the
	// dataplane suite one on the non-gateway node n3 ("bench-n3").
	ips := map[string]string{}
	gwNode := map[string]string{}
	for _, c := range []string{"c1", "c2"} {
		kc := filepath.Join(state, c+".kubeconfig")
		deadline := time.Now().Add(60 * time.Second)
		for gwNode[c] == "" {
			out, _ := kubectl("--kubeconfig", kc, "-n", "strait-system", "get", "lease", "strait-gateway", "-o", "jsonpath={.spec.holderIdentity}").Output()
			gwNode[c] = strings.TrimSpace(string(out))
			if time.Now().After(deadline) {
				return r, fmt.Errorf("no active gateway in %s", c)
			}
			time.Sleep(200 * time.Millisecond)
		}
		pods := map[string]string{"bench": gwNode[c]}
		if dataplane {
			pods["bench-n3"] = c + "-n3"
		}
		for name, node := range pods {
			ip, err := benchPod(kc, name, node)
			if err != nil {
				return r, err
			}
			ips[c+"/"+name] = ip
		}
		ips[c] = ips[c+"/bench"]
	}
	inPodNamed := func(c, pod string, args ...string) *exec.Cmd {
		return sbx(append([]string{"exec", c + "/default/" + pod, "--"}, args...)...)
	}
	inPod := func(c string, args ...string) *exec.Cmd { return inPodNamed(c, "bench", args...) }
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
	if dataplane {
		n3 := ips["c2/bench-n3"]
		if r.NonGatewayMbps, err = iperf(inPodNamed("c2", "bench-n3", "iperf3", "-s", "-1", "-p", "5203"), inPodNamed("c1", "bench-n3", "iperf3", "-c", n3, "-p", "5203", "-t", strconv.Itoa(iperfSeconds), "-J")); err != nil {
			return r, err
		}
		if r.NonGatewayRTTMedianM, r.NonGatewayRTTP99M, err = rtt(inPodNamed("c1", "bench-n3", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", n3)); err != nil {
			return r, err
		}
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
		r.NonGatewayRatio = r.NonGatewayMbps / r.BareMbps
	}
	if dataplane {
		for _, h := range helpers {
			_ = h.Process.Signal(syscall.SIGTERM)
			_ = h.Wait()
		}
		helpers = nil
		if r.FailoverGapsMs, err = failoverGaps(bin, state, ips["c2/bench-n3"], inPodNamed); err != nil {
			return r, err
		}
		r.FailoverGapMedianMs = median(r.FailoverGapsMs)
	}
	return r, nil
}

// straitctl runs straitctl on the sandbox's admin host.
func straitctl(sbx func(...string) *exec.Cmd, bin string, args ...string) error {
	out, err := sbx(append([]string{"admin", "--", filepath.Join(bin, "straitctl")}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("straitctl %s: %v\n%s", args[0], err, out)
	}
	return nil
}

// joinClusters deploys the broker in c1 and joins c1 and c2 with driver.
// With globalnet both join with --globalnet: in the overlapping sandbox
// both have the pod CIDR 10.1.0.0/16.
func joinClusters(sbx func(...string) *exec.Cmd, bin, state, driver string, dataplane, globalnet bool) error {
	info := filepath.Join(state, "broker-info.strait")
	if err := straitctl(sbx, bin, "deploy-broker", "--kubeconfig", filepath.Join(state, "admin", "c1.kubeconfig"), "--output", info); err != nil {
		return err
	}
	for i, c := range []string{"c1", "c2"} {
		podCIDR := fmt.Sprintf("10.%d.0.0/16", i+1)
		var extra []string
		if globalnet {
			podCIDR = "10.1.0.0/16"
			extra = []string{"--globalnet"}
		}
		if err := straitctl(sbx, bin, append([]string{"join", info, "--kubeconfig", filepath.Join(state, "admin", c+".kubeconfig"), "--clusterid", c,
			"--gateway-nodes", gateways(c, dataplane), "--pod-cidr", podCIDR, "--cable-driver", driver}, extra...)...); err != nil {
			return err
		}
	}
	return nil
}

// measureGlobalnet measures, in the overlapping sandbox, between pods on
// the non-gateway nodes n3: c1's pod sends to the global IP of c2's, which
// gets its own GlobalIngressIP as the pod behind an exported headless
// Service. It fills r's Globalnet figures, the ratios to r's non-gateway
// ones.
func measureGlobalnet(sbx func(...string) *exec.Cmd, bin, state, driver string, r *Result) error {
	if err := joinClusters(sbx, bin, state, driver, true, true); err != nil {
		return err
	}
	const pod = "bench-n3"
	for _, c := range []string{"c1", "c2"} {
		if _, err := benchPod(filepath.Join(state, c+".kubeconfig"), pod, c+"-n3"); err != nil {
			return err
		}
	}
	kc2 := filepath.Join(state, "c2.kubeconfig")
	svc := fmt.Sprintf(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"%[1]s","namespace":"default"},"spec":{"clusterIP":"None","selector":{"app":"%[1]s"},"ports":[{"name":"iperf","port":5204,"protocol":"TCP"}]}}`, pod)
	cmd := kubectl("--kubeconfig", kc2, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(svc)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("headless Service: %v\n%s", err, out)
	}
	if err := straitctl(sbx, bin, "export", "service", pod, "-n", "default", "--kubeconfig", filepath.Join(state, "admin", "c2.kubeconfig")); err != nil {
		return err
	}
	// The pod's GlobalIngressIP is "pod-<pod>" (docs/globalnet.md).
	var global string
	deadline := time.Now().Add(2 * time.Minute)
	for global == "" {
		out, _ := kubectl("--kubeconfig", kc2, "-n", "default", "get", "globalingressips.strait.dev", "pod-"+pod, "-o", "jsonpath={.status.allocatedIP}").Output()
		global = strings.TrimSpace(string(out))
		if time.Now().After(deadline) {
			return fmt.Errorf("c2: no global IP for pod %s after 2 min:\n%s", pod, globalnetState(sbx, bin, state))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("c2's %s: global IP %s\n", pod, global)
	inPod := func(c string, args ...string) *exec.Cmd {
		return sbx(append([]string{"exec", c + "/default/" + pod, "--"}, args...)...)
	}
	deadline = time.Now().Add(90 * time.Second)
	for inPod("c1", "ping", "-c", "1", "-W", "1", global).Run() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("no traffic to c2's global IP %s after 90 s:\n%s", global, globalnetState(sbx, bin, state))
		}
	}
	var err error
	if r.GlobalnetMbps, err = iperf(inPod("c2", "iperf3", "-s", "-1", "-p", "5204"), inPod("c1", "iperf3", "-c", global, "-p", "5204", "-t", strconv.Itoa(iperfSeconds), "-J")); err != nil {
		return err
	}
	if r.GlobalnetRTTMedianM, r.GlobalnetRTTP99M, err = rtt(inPod("c1", "ping", "-c", strconv.Itoa(pings), "-i", "0.02", global)); err != nil {
		return err
	}
	if r.NonGatewayMbps > 0 {
		r.GlobalnetRatio = r.GlobalnetMbps / r.NonGatewayMbps
	}
	if r.NonGatewayRTTMedianM > 0 {
		r.GlobalnetRTTRatio = r.GlobalnetRTTMedianM / r.NonGatewayRTTMedianM
	}
	return nil
}

// globalnetState is what a failed Globalnet measurement shows: both
// clusters' connections and GlobalIngressIPs.
func globalnetState(sbx func(...string) *exec.Cmd, bin, state string) string {
	var b strings.Builder
	for _, c := range []string{"c1", "c2"} {
		out, _ := sbx("admin", "--", filepath.Join(bin, "straitctl"), "show", "connections", "--kubeconfig", filepath.Join(state, "admin", c+".kubeconfig")).CombinedOutput()
		fmt.Fprintf(&b, "%s: straitctl show connections:\n%s\n", c, out)
		out, _ = kubectl("--kubeconfig", filepath.Join(state, c+".kubeconfig"), "get", "globalingressips.strait.dev", "-A", "-o", "yaml").CombinedOutput()
		fmt.Fprintf(&b, "%s: GlobalIngressIPs:\n%s\n", c, out)
	}
	return b.String()
}

func gateways(c string, dataplane bool) string {
	if dataplane {
		return c + "-n1," + c + "-n2"
	}
	return c + "-n1"
}

// benchPod runs a test pod (serving, so its UDP echo answers the failover
// probe) on node, labelled app=<name> (the Globalnet run's headless Service
// selects it so), and returns its IP.
func benchPod(kc, name, node string) (string, error) {
	manifest := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%[1]s","namespace":"default","labels":{"app":"%[1]s"}},"spec":{"nodeName":"%[2]s","containers":[{"name":"c","image":"strait/testpod","args":["serve"]}]}}`, name, node)
	cmd := kubectl("--kubeconfig", kc, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench pod: %v\n%s", err, out)
	}
	if out, err := kubectl("--kubeconfig", kc, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s").CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench pod: %v\n%s", err, out)
	}
	out, err := kubectl("--kubeconfig", kc, "get", "pod", name, "-o", "jsonpath={.status.podIP}").Output()
	return string(out), err
}

// failoverGaps kills c1's active gateway (kill -9) while a UDP probe runs
// every 10 ms between the non-gateway pods, and returns the longest gap of
// each run. Between runs it waits for the killed gateway to come back as
// the standby and for traffic to flow.
func failoverGaps(bin, state, target string, inPod func(c, pod string, args ...string) *exec.Cmd) ([]float64, error) {
	kc := filepath.Join(state, "c1.kubeconfig")
	holder := func() string {
		out, _ := kubectl("--kubeconfig", kc, "-n", "strait-system", "get", "lease", "strait-gateway", "-o", "jsonpath={.spec.holderIdentity}").Output()
		return strings.TrimSpace(string(out))
	}
	var gaps []float64
	for i := range failovers {
		active := holder()
		pid, err := gatewayPID("strait-" + active)
		if err != nil {
			return nil, err
		}
		probe := inPod("c1", "bench-n3", filepath.Join(bin, "strait-testpod"), "ping", "--udp", target+":9001", "--interval", "10ms", "--duration", "8s")
		var out strings.Builder
		probe.Stdout = &out
		if err := probe.Start(); err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return nil, err
		}
		if err := probe.Wait(); err != nil {
			return nil, fmt.Errorf("failover %d: probe: %v\n%s", i+1, err, out.String())
		}
		var rep struct {
			MaxGapMs    float64  `json:"maxGapMs"`
			LastReplyMs *float64 `json:"lastReplyMs"`
			DurationMs  float64  `json:"durationMs"`
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
			return nil, fmt.Errorf("failover %d: probe report: %v", i+1, err)
		}
		if rep.LastReplyMs == nil || rep.DurationMs-*rep.LastReplyMs > 1000 {
			return nil, fmt.Errorf("failover %d: traffic did not come back: %s", i+1, out.String())
		}
		now := holder()
		fmt.Printf("failover %d: %s -> %s, gap %.0f ms\n", i+1, active, now, rep.MaxGapMs)
		gaps = append(gaps, rep.MaxGapMs)
		// The killed gateway restarts as the standby; wait until it answers
		// heartbeats again (its Gateway status says passive).
		deadline := time.Now().Add(60 * time.Second)
		for {
			st, _ := kubectl("--kubeconfig", kc, "-n", "strait-system", "get", "gateways.strait.dev", active, "-o", "jsonpath={.status.haStatus}").Output()
			if p, err := gatewayPID("strait-" + active); err == nil && p != pid && string(st) == "passive" {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("failover %d: %s did not come back as the standby", i+1, active)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
	}
	return gaps, nil
}

// kubectl runs the kubectl built from source with the other Kubernetes
// binaries, never one that happens to be on PATH.
func kubectl(args ...string) *exec.Cmd { return exec.Command(kubectlPath(), args...) }

// kubectlPath is where "make kube-binaries" puts kubectl.
func kubectlPath() string {
	dir, err := kubetest.BinDir()
	if err != nil {
		// run checked BinDir first; a path that does not exist, so that an
		// error names it.
		return filepath.Join(string(filepath.Separator), "kubernetes-binaries-not-built", "kubectl")
	}
	return filepath.Join(dir, "kubectl")
}

// gatewayPID finds the gateway process in a node's network namespace.
func gatewayPID(ns string) (int, error) {
	out, _ := exec.Command("pgrep", "-x", "strait-gateway").Output()
	for _, f := range strings.Fields(string(out)) {
		id, _ := exec.Command("ip", "netns", "identify", f).Output()
		if strings.TrimSpace(string(id)) == ns {
			return strconv.Atoi(f)
		}
	}
	return 0, fmt.Errorf("no gateway process in %s", ns)
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
