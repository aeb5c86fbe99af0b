package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"strait.dev/strait/pkg/probe"
	"strait.dev/strait/test/sandbox"
)

// echoPort is the bench pods' UDP echo port (strait-testpod serve), which
// the failover probes send to.
const echoPort = 9001

// probeLead is how long the probe runs before a kill, so that the gap is
// measured from steady traffic.
const probeLead = 2 * time.Second

// FrozenFailovers are the kill -9 failovers of c2's active gateway while
// the broker's apiserver (c1's kube-apiserver, where "straitctl
// deploy-broker" put the broker) is frozen with SIGSTOP. c2's gateway is
// the one killed because c2's own control plane keeps working, so its
// standby can take the Lease; only the broker is away. Each measurement
// lasts the freeze: a gap that has not ended when the freeze does is
// counted at the cap (CapMs, the freeze after the kill) and marked capped.
type FrozenFailovers struct {
	// CapMs is the freeze length in milliseconds, the bound on each gap.
	CapMs float64 `json:"capMs"`
	// GapsMs are each kill's longest probe gap, in milliseconds; a capped
	// one is CapMs.
	GapsMs []float64 `json:"gapsMs"`
	// CappedRuns says, per kill, whether traffic was still cut when the
	// freeze ended; Capped counts them.
	CappedRuns []bool `json:"cappedRuns"`
	Capped     int    `json:"capped"`
	// MedianMs is the median of GapsMs (capped gaps at the cap, so a
	// median of CapMs means "no recovery within the freeze" for most).
	MedianMs float64 `json:"medianMs"`
	// AfterThawMs are, for the capped kills in order, the milliseconds
	// from resuming the apiserver until c1's pod reached c2's again.
	AfterThawMs []float64 `json:"afterThawMs,omitempty"`
	Load        LoadStats `json:"loadAvg1"`
}

// probeReport is the part of strait-testpod ping's report used here.
type probeReport struct {
	MaxGapMs    float64  `json:"maxGapMs"`
	LastReplyMs *float64 `json:"lastReplyMs"`
	DurationMs  float64  `json:"durationMs"`
}

func parseProbe(out string) (probeReport, error) {
	var rep probeReport
	lines := strings.Split(strings.TrimSpace(out), "\n")
	err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep)
	return rep, err
}

// holder is the node holding a cluster's gateway Lease ("" when unknown).
func holder(kc string) string {
	out, _ := kubectl("--kubeconfig", kc, "-n", "strait-system", "get", "lease", "strait-gateway", "-o", "jsonpath={.spec.holderIdentity}").Output()
	return strings.TrimSpace(string(out))
}

// waitStandby waits until the gateway on node, killed as process pid, runs
// again (another pid) and its Gateway status says passive.
func waitStandby(kc, node string, pid int) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, _ := kubectl("--kubeconfig", kc, "-n", "strait-system", "get", "gateways.strait.dev", node, "-o", "jsonpath={.status.haStatus}").Output()
		if p, err := gatewayPID("strait-" + node); err == nil && p != pid && string(st) == "passive" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come back as the standby", node)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// failoverGaps kills c1's active gateway (kill -9) kills times while a UDP
// probe runs every 10 ms between the non-gateway pods (to target, c2's
// pod's address of the family measured), and returns the
// longest gap of each run. Between runs it waits for the killed gateway to
// come back as the standby and for traffic to flow.
func failoverGaps(state, target string, inPod func(c, pod string, args ...string) *exec.Cmd, kills int) ([]float64, error) {
	kc := filepath.Join(state, "c1.kubeconfig")
	var gaps []float64
	for i := range kills {
		active := holder(kc)
		pid, err := gatewayPID("strait-" + active)
		if err != nil {
			return nil, err
		}
		probe := inPod("c1", "bench-n3", probe.TestpodBinary, "ping", "--udp", net.JoinHostPort(target, strconv.Itoa(echoPort)), "--interval", "10ms", "--duration", "8s")
		var out strings.Builder
		probe.Stdout = &out
		if err := probe.Start(); err != nil {
			return nil, err
		}
		time.Sleep(probeLead)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return nil, err
		}
		if err := probe.Wait(); err != nil {
			return nil, fmt.Errorf("failover %d: probe: %v\n%s", i+1, err, out.String())
		}
		rep, err := parseProbe(out.String())
		if err != nil {
			return nil, fmt.Errorf("failover %d: probe report: %v", i+1, err)
		}
		if rep.LastReplyMs == nil || rep.DurationMs-*rep.LastReplyMs > 1000 {
			return nil, fmt.Errorf("failover %d: traffic did not come back: %s", i+1, out.String())
		}
		fmt.Printf("failover %d/%d: %s -> %s, gap %.0f ms\n", i+1, kills, active, holder(kc), rep.MaxGapMs)
		gaps = append(gaps, rep.MaxGapMs)
		// The killed gateway restarts as the standby; wait until it answers
		// heartbeats again (its Gateway status says passive).
		if err := waitStandby(kc, active, pid); err != nil {
			return nil, fmt.Errorf("failover %d: %w", i+1, err)
		}
		time.Sleep(2 * time.Second)
	}
	return gaps, nil
}

// brokerAPIServerPID finds c1's kube-apiserver, the broker's, among the
// sandbox's processes.
func brokerAPIServerPID(state string) (int, error) {
	for _, pid := range sandbox.MarkedProcesses(state) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) == "kube-apiserver" && strings.Contains(string(cmdline), filepath.Join(state, "clusters", "c1")+"/") {
			return pid, nil
		}
	}
	return 0, errors.New("no kube-apiserver of c1 (the broker's) found")
}

// frozenFailovers kills c2's active gateway o.kills times, each time with
// the broker's apiserver frozen from just before the kill for o.freeze,
// while a UDP probe runs every 10 ms from c1's non-gateway pod to c2's. The
// probe ends with the freeze; then the apiserver is resumed and the run
// waits for it to be ready, for traffic between the pods and for the killed
// gateway to be the standby again.
func frozenFailovers(state, target string, inPod func(c, pod string, args ...string) *exec.Cmd, o options) (*FrozenFailovers, error) {
	ctx := context.Background()
	kc1, kc2 := filepath.Join(state, "c1.kubeconfig"), filepath.Join(state, "c2.kubeconfig")
	lay := sandbox.Layout{Dir: state}
	f := &FrozenFailovers{CapMs: float64(o.freeze.Milliseconds())}
	apiserver, err := brokerAPIServerPID(state)
	if err != nil {
		return nil, err
	}
	frozen := false
	thaw := func() {
		if frozen {
			_ = syscall.Kill(apiserver, syscall.SIGCONT)
			frozen = false
		}
	}
	defer thaw()
	load := startLoad()
	defer func() { f.Load = load.stop() }()
	for i := range o.kills {
		active := holder(kc2)
		pid, err := gatewayPID("strait-" + active)
		if err != nil {
			return nil, err
		}
		// The probe's command is resolved through c1's apiserver, so
		// before the freeze.
		probe, err := lay.ExecCommand(ctx, sandbox.PodRef{Cluster: "c1", Namespace: "default", Name: "bench-n3"},
			probe.TestpodBinary, "ping", "--udp", net.JoinHostPort(target, strconv.Itoa(echoPort)), "--interval", "10ms",
			"--duration", (probeLead + o.freeze).String())
		if err != nil {
			return nil, err
		}
		var out strings.Builder
		probe.Stdout = &out
		if err := probe.Start(); err != nil {
			return nil, err
		}
		time.Sleep(probeLead)
		if err := syscall.Kill(apiserver, syscall.SIGSTOP); err != nil {
			return nil, err
		}
		frozen = true
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return nil, err
		}
		werr := probe.Wait()
		thaw()
		thawed := time.Now()
		if werr != nil {
			return nil, fmt.Errorf("broker-frozen failover %d: probe: %v\n%s", i+1, werr, out.String())
		}
		rep, err := parseProbe(out.String())
		if err != nil {
			return nil, fmt.Errorf("broker-frozen failover %d: probe report: %v", i+1, err)
		}
		// Not back by the end of the freeze: still cut when the probe
		// stopped (no reply in its last second).
		capped := rep.LastReplyMs == nil || rep.DurationMs-*rep.LastReplyMs > 1000
		gap := min(rep.MaxGapMs, f.CapMs)
		if capped {
			gap = f.CapMs
		}
		if err := waitPing(inPod("c1", "bench-n3", "ping", "-c", "1", "-W", "1", target), 3*time.Minute); err != nil {
			return nil, fmt.Errorf("broker-frozen failover %d: no traffic 3 min after the thaw", i+1)
		}
		back := time.Since(thawed)
		f.GapsMs, f.CappedRuns = append(f.GapsMs, gap), append(f.CappedRuns, capped)
		note := ""
		if capped {
			f.Capped++
			f.AfterThawMs = append(f.AfterThawMs, float64(back.Milliseconds()))
			note = fmt.Sprintf(" (capped: still cut at the thaw, back %.1f s after it)", back.Seconds())
		}
		fmt.Printf("broker-frozen failover %d/%d: c2 %s killed, gap %.0f ms%s\n", i+1, o.kills, active, gap, note)
		if err := waitReady(kc1); err != nil {
			return nil, fmt.Errorf("broker-frozen failover %d: %w", i+1, err)
		}
		if err := waitStandby(kc2, active, pid); err != nil {
			return nil, fmt.Errorf("broker-frozen failover %d: %w", i+1, err)
		}
		time.Sleep(2 * time.Second)
	}
	f.MedianMs = median(f.GapsMs)
	return f, nil
}

// waitReady waits until the apiserver of kubeconfig kc answers /readyz.
func waitReady(kc string) error {
	deadline := time.Now().Add(90 * time.Second)
	for kubectl("--kubeconfig", kc, "get", "--raw", "/readyz").Run() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("apiserver of %s not ready 90 s after the thaw", kc)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
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
