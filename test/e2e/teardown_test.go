package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"

	"strait.dev/strait/test/sandbox"
)

// snapshot is what the sandbox may touch in the root namespace: links,
// packet-filter rules and mounts. None of it may differ after "down".
type snapshot struct {
	links, rules, mounts []string
}

func takeSnapshot() snapshot {
	return snapshot{
		links:  fields(exec.Command("ip", "-o", "link", "show"), 1),
		rules:  ruleLines(),
		mounts: fields(exec.Command("cat", "/proc/self/mountinfo"), 4),
	}
}

// fields returns column col of each output line, sorted.
func fields(cmd *exec.Cmd, col int) []string {
	out, _ := cmd.Output()
	var vals []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > col {
			vals = append(vals, strings.TrimSuffix(f[col], ":"))
		}
	}
	sort.Strings(vals)
	return vals
}

// ruleLines is iptables-save without counters and comments.
func ruleLines() []string {
	out, _ := exec.Command("iptables-save").Output()
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasPrefix(line, ":") { // chain policy line with counters
			line = strings.Fields(line)[0]
		}
		rules = append(rules, line)
	}
	return rules
}

func diff(a, b []string) (added, removed []string) {
	count := map[string]int{}
	for _, v := range a {
		count[v]--
	}
	for _, v := range b {
		count[v]++
	}
	for v, n := range count {
		if n > 0 {
			added = append(added, v)
		} else if n < 0 {
			removed = append(removed, v)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

// sandboxDownLeavesNothing takes the sandbox down and compares the machine
// with how it was before "up". It is the last of TestMain's finalChecks.
func sandboxDownLeavesNothing() error {
	if out, err := sandboxCmd("down").CombinedOutput(); err != nil {
		return fmt.Errorf("down: %w\n%s", err, out)
	}
	var errs []error
	if ns, err := sandbox.ListNamespaces(); err != nil || len(ns) > 0 {
		errs = append(errs, fmt.Errorf("network namespaces left: %v (%v)", ns, err))
	}
	if pids := sandbox.MarkedProcesses(layout.Dir); len(pids) > 0 {
		errs = append(errs, fmt.Errorf("sandbox processes left: %v", pids))
	}
	if _, err := os.Stat(layout.Dir); !os.IsNotExist(err) {
		errs = append(errs, fmt.Errorf("state directory %s left (%v)", layout.Dir, err))
	}
	after := takeSnapshot()
	for _, c := range []struct {
		what          string
		before, after []string
	}{{"links", before.links, after.links}, {"iptables rules", before.rules, after.rules}, {"mounts", before.mounts, after.mounts}} {
		added, removed := diff(c.before, c.after)
		added, removed = notOthers(added), notOthers(removed)
		if len(added)+len(removed) > 0 {
			errs = append(errs, fmt.Errorf("root namespace %s changed: added %v, removed %v", c.what, added, removed))
		}
	}
	return errors.Join(errs...)
}

// notOthers drops the network namespaces other programs on the machine
// made or removed meanwhile (as root, "go test ./..." runs the kernel unit
// tests, which make their own, in parallel with these): the sandbox names
// each of its namespaces with sandbox.Prefix, so one without it is not the
// sandbox's.
func notOthers(mounts []string) []string {
	var mine []string
	for _, m := range mounts {
		if name, ok := strings.CutPrefix(m, "/run/netns/"); ok && !strings.HasPrefix(name, sandbox.Prefix) {
			continue
		}
		mine = append(mine, m)
	}
	return mine
}
