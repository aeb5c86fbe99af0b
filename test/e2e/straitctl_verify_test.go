package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/gateway/health"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/corefile"
	"strait.dev/strait/test/sandbox"
)

// straitctlResult is one straitctl run on the admin host: what it printed
// on each stream and its exit code.
type straitctlResult struct {
	stdout, stderr string
	code           int
}

// runStraitctl runs the built straitctl on the admin host, as a user
// would, bounded so that a hang fails the test instead of the suite.
func runStraitctl(t *testing.T, args ...string) straitctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := withContext(ctx, sandboxCmd(append([]string{"admin", "--", filepath.Join(binDir, "straitctl")}, args...)...))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := straitctlResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("straitctl %v: %v", args, err)
	}
	return r
}

// kubeconfigsFlag is --kubeconfig for every cluster of mcsClusters.
func kubeconfigsFlag() []string {
	var files []string
	for _, c := range mcsClusters {
		files = append(files, adminKubeconfig(c))
	}
	return []string{"--kubeconfig", strings.Join(files, ",")}
}

// straitctlVerify drives "straitctl verify", "diagnose" and "benchmark"
// against the joined clusterset as an operator would, and breaks the
// fabric to see each name what broke. Its last subtest has c3 leave.
func straitctlVerify(t *testing.T, info string, joinArgs func(string) []string) {
	ctx := context.Background()

	t.Run("verify passes on the joined clusters, failover included", func(t *testing.T) {
		// A deleted gateway pod shuts down gracefully; the gap that
		// follows has been 4 to 8 s here (a killed one's is under 1 s,
		// TestDataplane): the bound only keeps a hang from passing.
		r := runStraitctl(t, append([]string{"verify", "--disruptive", "--max-gap", "15s"}, kubeconfigsFlag()...)...)
		t.Logf("straitctl verify --disruptive: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 0 {
			t.Fatalf("verify failed on a working clusterset: exit %d: %s", r.code, r.stderr)
		}
		// A run that checked nothing passes too: count what it checked.
		// Three clusters, six ordered pairs: per pair two placements
		// over TCP and UDP, a ServiceImport, and per placement a Service
		// and a name; three failovers.
		for check, want := range map[string]int{"pod-to-pod/tcp": 12, "pod-to-pod/udp": 12, "service-import": 6,
			"service ": 12, "clusterset-dns": 12, "gateway-failover": 3, "active-gateway": 3} {
			if got := countRows(r.stdout, check, "pass"); got != want {
				t.Errorf("%d passed %q rows, want %d", got, check, want)
			}
		}
		// Its namespaces are gone or going.
		for _, c := range mcsClusters {
			list, err := kubeClient(t, c).CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=straitctl"})
			if err != nil {
				t.Fatal(err)
			}
			for _, ns := range list.Items {
				if ns.DeletionTimestamp == nil {
					t.Errorf("%s: verify left namespace %s behind", c, ns.Name)
				}
			}
		}
	})

	t.Run("verify fails naming the checks when c2's gateways are frozen", func(t *testing.T) {
		pids := []int{gatewayPID(t, "c2", "c2-n1"), gatewayPID(t, "c2", "c2-n2")}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		thawed := false
		thaw := func() {
			if !thawed {
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
				thawed = true
			}
		}
		defer thaw()
		r := runStraitctl(t, append([]string{"verify", "--timeout", "1s"}, kubeconfigsFlag()...)...)
		thaw()
		t.Logf("straitctl verify with c2's gateways frozen: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		for _, want := range []string{"pod-to-pod/tcp c1/gateway -> c2/gateway", "pod-to-pod/udp c2/non-gateway -> c1/non-gateway"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the error does not name %q: %s", want, r.stderr)
			}
		}
		// c1 and c3 still reach each other: the failures are c2's.
		if strings.Contains(r.stderr, "c1/gateway -> c3/gateway") || countRows(r.stdout, "pod-to-pod/tcp", "pass") != 4 {
			t.Errorf("checks between c1 and c3 failed too, or did not run")
		}
		// The next subtests read every cable's health: c3's and c2's own
		// must be back too, not only c1's.
		clients := map[string]client.Client{}
		for _, c := range mcsClusters {
			clients[c] = ctrlClient(t, c)
		}
		last := map[string]string{}
		waitFor(t, 60*time.Second, "every cluster to report its cables connected again", func(ctx context.Context) (bool, error) {
			all := true
			for _, c := range mcsClusters {
				got := connectionsOf(ctx, clients[c])
				if got != last[c] {
					t.Logf("%s: %s", c, got)
					last[c] = got
				}
				all = all && strings.Count(got, "=connected") == len(mcsClusters)-1
			}
			return all, nil
		})
	})

	t.Run("diagnose names a firewall dropping NAT discovery at c2's gateways", func(t *testing.T) {
		// Drop the answers to c2's gateway nodes' NAT discovery requests
		// (UDP from port 4490), as a firewall in front of them would.
		rule := []string{"INPUT", "-p", "udp", "--sport", "4490", "-j", "DROP"}
		for _, node := range []string{"c2-n1", "c2-n2"} {
			ns := sandbox.NodeNS(node)
			if out, err := runHost("ip", append([]string{"netns", "exec", ns, "iptables", "-I"}, rule...)...); err != nil {
				t.Fatalf("%s: iptables: %v %s", node, err, out)
			}
			t.Cleanup(func() {
				if out, err := runHost("ip", append([]string{"netns", "exec", ns, "iptables", "-D"}, rule...)...); err != nil {
					t.Errorf("%s: remove the rule: %v %s", node, err, out)
				}
			})
		}
		r := runStraitctl(t, append([]string{"diagnose"}, kubeconfigsFlag()...)...)
		t.Logf("straitctl diagnose with NAT discovery dropped at c2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1", r.code)
		}
		for _, want := range []string{"nat-discovery c2 -> c1", "nat-discovery c2 -> c3"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("the error does not name %q", want)
			}
		}
		// Everything else is healthy, and says so: the other checks ran
		// and did not fail.
		if n := strings.Count("\n"+r.stdout, "\nfail "); n != 2 {
			t.Errorf("%d checks failed, want the 2 NAT discovery probes from c2", n)
		}
		for _, check := range []string{"kube-proxy-mode", "cidrs", "cidr-overlap", "gateway-nodes", "public-ip", "cables", "mtu", "dns-forward", "clock-skew", "versions"} {
			if countRows(r.stdout, "ok", check) == 0 {
				t.Errorf("no %q check came out ok", check)
			}
		}
		if n := strings.Count(r.stdout, " answered in "); n != 2 { // c1 -> c3 and c3 -> c1
			t.Errorf("%d NAT discovery probes answered, want the 2 between c1 and c3", n)
		}
	})

	t.Run("diagnose names a link between the gateways narrower than the cable", func(t *testing.T) {
		// c3's gateway nodes' ports on the internet switch carry 1400
		// bytes and drop larger frames without a word, both ways (a veth
		// drops what its receiver's MTU cannot take, a bridge what its
		// port's cannot): a tunnel or cloud path narrower than the
		// nodes' NICs. The WireGuard cable sends up to 1420 bytes in
		// 1480-byte UDP packets.
		setMTU := func(mtu string) {
			for _, i := range []int{1, 2} {
				sp := sandbox.SwitchPorts("c3", i)[1]
				if out, err := runHost("ip", "-n", sp[0], "link", "set", sp[1], "mtu", mtu); err != nil {
					t.Errorf("ip link set %s mtu %s: %v %s", sp[1], mtu, err, out)
				}
			}
		}
		setMTU("1400")
		t.Cleanup(func() { setMTU("1500") })
		r := runStraitctl(t, append([]string{"diagnose"}, kubeconfigsFlag()...)...)
		setMTU("1500")
		t.Logf("straitctl diagnose with c3's gateways behind a 1400-byte link: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		// Every path to and from c3 fails, at the size that fits: 1328
		// bytes, as WireGuard pads what it encrypts to a multiple of 16
		// bytes and adds 32, UDP and IPv4 28: a 1328-byte packet makes
		// 1388 bytes on the link, a 1329-byte one 1404. Unless the
		// sending cluster's gateway has already measured the narrower
		// path (its search re-checks every 10 s, and diagnose probes the
		// MTU some seconds after the link narrowed): then its route
		// agents have sized the routes to 1328, and the row warns that
		// the path says so. Or its search is under way: a gateway whose
		// check of the old figure went unanswered reports the floor (576)
		// while it searches again (gateway/health's pmtuSearch.tooBig), and
		// the sender's kernel holds that, which crosses too.
		lines := strings.Split(r.stdout, "\n")
		row := func(result, path, text string) bool {
			return slices.ContainsFunc(lines, func(l string) bool {
				return strings.HasPrefix(l, result) && strings.Contains(l, path) && strings.Contains(l, text)
			})
		}
		vanished := 0
		for _, path := range []string{"c1/c1-n3 -> c3/c3-n3", "c3/c3-n3 -> c1/c1-n3", "c2/c2-n3 -> c3/c3-n3", "c3/c3-n3 -> c2/c2-n3"} {
			switch held := heldMTU(lines, path); {
			case row("fail", path, "packets over 1328 bytes vanish"):
				vanished++
				if !strings.Contains(r.stderr, "mtu "+path) {
					t.Errorf("the error does not name %q", "mtu "+path)
				}
			case held == 1328:
				t.Logf("%s: the path MTU search had sized the routes already", path)
			case held == health.FloorIPv4:
				t.Logf("%s: the path MTU search was searching again, the routes sized to its floor meanwhile", path)
			default:
				t.Errorf("%s: neither packets over 1328 bytes vanish nor does the sender hold the measured 1328 or the floor %d", path, health.FloorIPv4)
			}
		}
		if n := strings.Count("\n"+r.stdout, "\nfail "); n != vanished {
			t.Errorf("%d checks failed, want the %d MTU probes to and from c3 whose packets vanished", n, vanished)
		}
		if n := countRows(r.stdout, "ok", "mtu"); n != 2 { // c1 -> c2 and c2 -> c1
			t.Errorf("%d MTU probes passed, want the 2 between c1 and c2", n)
		}
		if want := min(vanished, 1); r.code != want {
			t.Fatalf("exit %d, want %d", r.code, want)
		}
		if vanished == 0 {
			t.Log("every path to and from c3 was sized from its measured path MTU before diagnose probed it: no advice to follow")
			return
		}

		// The operator follows the advice for c3: it joins again with the
		// --underlay-mtu diagnose suggests, its cables shrink to what the
		// narrow link carries, and its probes to c1 and c2 pass. c1's
		// and c2's cables still send more than the link takes, but their
		// gateways measure the path MTU to c3 (re-checked every 10 s) and
		// their route agents size the routes to c3 from it: by the time
		// diagnose probes, c1's and c2's probes to c3 either still fail,
		// the advice naming them, or cross at the measured 1328 bytes
		// with the sender's kernel holding that MTU (a warning).
		m := regexp.MustCompile(`--underlay-mtu=(\d+)`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("diagnose suggests no --underlay-mtu")
		}
		rejoin := func(extra ...string) {
			t.Helper()
			if out, err := straitctl(t, append(append([]string{"join", info}, joinArgs("c3")...), extra...)...); err != nil {
				t.Fatalf("join c3 %v: %v\n%s", extra, err, out)
			}
			// The gateways and route agents restart with the new flag:
			// wait until all run it and the cables are up again.
			waitFor(t, 2*time.Minute, fmt.Sprintf("c3's gateway and route agent pods to run with %v", extra), func(ctx context.Context) (bool, error) {
				pods, err := kubeClient(t, "c3").CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{
					LabelSelector: "app.kubernetes.io/component in (gateway,routeagent)"})
				if err != nil || len(pods.Items) != 5 {
					return false, nil
				}
				for _, p := range pods.Items {
					has := slices.ContainsFunc(p.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--underlay-mtu") })
					if !podReady(&p) || p.DeletionTimestamp != nil || has != (len(extra) > 0) {
						return false, nil
					}
				}
				return true, nil
			})
			waitConnected(t, mcsClusters)
		}
		setMTU("1400")
		rejoin("--underlay-mtu", m[1])
		r = runStraitctl(t, append([]string{"diagnose"}, kubeconfigsFlag()...)...)
		setMTU("1500")
		t.Logf("straitctl diagnose after c3 joined again with --underlay-mtu %s: exit %d\n%s%s", m[1], r.code, r.stdout, r.stderr)
		if n := countRows(r.stdout, "ok", "mtu"); n != 4 {
			t.Errorf("%d MTU probes passed, want 4: all but c1's and c2's to c3", n)
		}
		for _, c := range []string{"c1", "c2"} {
			advised := strings.Contains(r.stdout, "join "+c+" again with straitctl join ... --underlay-mtu="+m[1])
			held := heldMTU(strings.Split(r.stdout, "\n"), c+"/"+c+"-n3 -> c3/c3-n3")
			if !advised && held != 1328 && held != health.FloorIPv4 {
				t.Errorf("%s's probe to c3: neither the advice names %s nor does the row show the measured path MTU 1328 (or the floor %d of a search under way)", c, c, health.FloorIPv4)
			}
		}
		rejoin()
	})

	t.Run("benchmark prints throughput and round-trip times", func(t *testing.T) {
		two := []string{"--kubeconfig", adminKubeconfig("c1") + "," + adminKubeconfig("c3"), "--duration", "1s"}
		r := runStraitctl(t, append([]string{"benchmark", "throughput"}, two...)...)
		t.Logf("straitctl benchmark throughput: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 0 || figures(r.stdout, 3) != 2 {
			t.Errorf("want two rows with a Gbit/s figure above zero")
		}
		r = runStraitctl(t, append([]string{"benchmark", "latency"}, two...)...)
		t.Logf("straitctl benchmark latency: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		if r.code != 0 || figures(r.stdout, 3) != 2 || figures(r.stdout, 4) != 2 {
			t.Errorf("want two rows with RTT p50 and p99 above zero")
		}
	})

	// c3 leaves next, so what this breaks in it needs no repair.
	t.Run("diagnose names what an operator broke in c3", brokenC3)
	t.Run("diagnose names Strait's leftovers on a node of a cluster that left", leftoversAfterLeave)
}

// brokenC3 breaks in c3 what diagnose checks and the other subtests leave
// whole, at once, and checks that one run names each: the standby gateway
// node unlabelled (diagnose then probes it as the non-gateway node: its
// nodes sort first), kube-proxy's metrics port dropped on it, the
// clusterset.local block gone from CoreDNS's Corefile, and the Lighthouse
// agent on another version.
func brokenC3(t *testing.T) {
	ctx := context.Background()
	cs := kubeClient(t, "c3")
	standby := "c3-n1"
	if holder(t, "c3") == standby {
		standby = "c3-n2"
	}
	ns := sandbox.NodeNS(standby)
	rule := []string{"INPUT", "-p", "tcp", "--dport", "10249", "-j", "DROP"}
	if out, err := runHost("ip", append([]string{"netns", "exec", ns, "iptables", "-I"}, rule...)...); err != nil {
		t.Fatalf("iptables: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := runHost("ip", append([]string{"netns", "exec", ns, "iptables", "-D"}, rule...)...); err != nil {
			t.Errorf("remove the rule: %v %s", err, out)
		}
	})
	cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	text, removed, err := corefile.RemoveForward(cm.Data["Corefile"])
	if err != nil || !removed {
		t.Fatalf("c3's Corefile has no clusterset.local block join made (%v):\n%s", err, cm.Data["Corefile"])
	}
	cm.Data["Corefile"] = text
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, standby, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(node.Labels, "strait.dev/gateway")
	if _, err := cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments(v1.ComponentNamespace).Get(ctx, "strait-lighthouse", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img := d.Spec.Template.Spec.Containers[0].Image
	d.Spec.Template.Spec.Containers[0].Image = img[:strings.LastIndex(img, ":")] + ":v0.0.1"
	if _, err := cs.AppsV1().Deployments(v1.ComponentNamespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := runStraitctl(t, append([]string{"diagnose"}, kubeconfigsFlag()...)...)
	t.Logf("straitctl diagnose with c3 broken four ways: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "dns-forward c3") {
		t.Errorf("exit %d, want 1 naming dns-forward c3", r.code)
	}
	for _, want := range []struct{ result, check, where, detail string }{
		{"warn", "kube-proxy-mode", "c3/" + standby, "does not answer"},
		{"fail", "dns-forward", "c3", "lacks the clusterset.local forward"},
		{"warn", "gateway-nodes", "c3", "no standby"},
		{"warn", "versions", "all", "v0.0.1: c3/strait-lighthouse"},
	} {
		found := false
		for _, line := range strings.Split(r.stdout, "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && f[0] == want.result && f[1] == want.check && f[2] == want.where && strings.Contains(line, want.detail) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s row for %s at %s saying %q", want.result, want.check, want.where, want.detail)
		}
	}
}

// leftoversAfterLeave has c3 leave, plants on one of its nodes what a
// route agent killed before it cleaned up would leave, and checks that
// diagnose finds that and nothing on the other nodes; then that a clean
// node says so.
func leftoversAfterLeave(t *testing.T) {
	if out, err := straitctl(t, "leave", "--kubeconfig", adminKubeconfig("c3")); err != nil {
		t.Fatalf("leave c3: %v\n%s", err, out)
	}
	ns := sandbox.NodeNS("c3-n3")
	plant := [][]string{
		{"ip", "netns", "exec", ns, "ip", "link", "add", "strait-overlay", "type", "bridge"},
		{"ip", "netns", "exec", ns, "iptables", "-t", "filter", "-N", "STRAIT-FORWARD"},
	}
	unplant := [][]string{
		{"ip", "netns", "exec", ns, "ip", "link", "del", "strait-overlay"},
		{"ip", "netns", "exec", ns, "iptables", "-t", "filter", "-X", "STRAIT-FORWARD"},
	}
	for _, c := range plant {
		if out, err := runHost(c[0], c[1:]...); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	planted := true
	remove := func() {
		if planted {
			for _, c := range unplant {
				if out, err := runHost(c[0], c[1:]...); err != nil {
					t.Errorf("%v: %v %s", c, err, out)
				}
			}
			planted = false
		}
	}
	defer remove()
	diagnose := []string{"diagnose", "--kubeconfig", adminKubeconfig("c3")}
	r := runStraitctl(t, diagnose...)
	t.Logf("straitctl diagnose of c3 after leave, with leftovers on c3-n3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	// Leftovers are a warning: they are not a fault of a clusterset.
	if r.code != 0 {
		t.Errorf("exit %d, want 0", r.code)
	}
	row := ""
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "leftovers") && strings.Contains(line, "/c3-n3 ") {
			row = line
		}
	}
	if !strings.HasPrefix(row, "warn ") || !strings.Contains(row, "strait-overlay") || !strings.Contains(row, "STRAIT-FORWARD") {
		t.Errorf("no warn row for c3-n3 naming the link and the chain: %q", row)
	}
	if n := countRows(r.stdout, "ok", "leftovers"); n != 3 { // the cluster, c3-n1, c3-n2
		t.Errorf("%d leftovers rows ok, want 3 (the cluster and its two other nodes)", n)
	}
	remove()
	r = runStraitctl(t, diagnose...)
	t.Logf("straitctl diagnose of c3, cleaned: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if n := countRows(r.stdout, "ok", "leftovers"); r.code != 0 || n != 4 {
		t.Errorf("exit %d and %d leftovers rows ok, want 0 and 4", r.code, n)
	}
}

// figures counts the table rows whose column col (from 0) is a number
// above zero.
func figures(table string, col int) int {
	n := 0
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) > col {
			if v, err := strconv.ParseFloat(f[col], 64); err == nil && v > 0 {
				n++
			}
		}
	}
	return n
}

// countRows counts the table rows that start with check and have result
// as a whole word (or, for diagnose's table, start with the result and
// have the check).
func countRows(table, check, result string) int {
	n := 0
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, check) && strings.Contains(" "+line+" ", " "+result+" ") {
			n++
		}
	}
	return n
}

// heldMTU is the MTU the sender's kernel held on path, from diagnose's
// warning row for it ("... the sender's kernel holds MTU N ..."), 0 when
// the path has no such row.
func heldMTU(lines []string, path string) int {
	re := regexp.MustCompile(`holds MTU (\d+)`)
	for _, l := range lines {
		if !strings.HasPrefix(l, "warn") || !strings.Contains(l, path) {
			continue
		}
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}
