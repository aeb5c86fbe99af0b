// Command testsplit prints the packages of one test tier, for the Makefile's
// test-unit, test-integration and test-e2e targets:
//
//	go run ./hack/testsplit unit|integration|e2e
//
// The tiers are decided from the import graph, so a new package needs no
// registration and no test has to remember a -short check:
//
//   - e2e: test/e2e and anything under it (the sandbox; needs root).
//   - integration: test/kubetest itself, and every package whose test files
//     reach test/kubetest through their imports (they start a real etcd and
//     kube-apiserver, so they need the Kubernetes binaries).
//   - unit: every other package of the module.
//
// Unit is the complement of the other two, so a package can never fall out of
// all three; the command fails instead of printing an empty tier, so a broken
// "go list" cannot turn into "go test" of nothing.
//
// Only test imports count: test/sandbox imports test/kubetest to find the
// binaries, but its own tests are plain table tests and stay unit.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

const (
	module  = "strait.dev/strait"
	harness = module + "/test/kubetest"
	e2eRoot = module + "/test/e2e"
)

// pkg is the part of "go list -json" that testsplit reads.
type pkg struct {
	ImportPath   string
	Deps         []string
	TestImports  []string
	XTestImports []string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testsplit unit|integration|e2e")
		os.Exit(2)
	}
	tiers, err := split()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsplit:", err)
		os.Exit(1)
	}
	pkgs, ok := tiers[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "testsplit: unknown tier %q: want unit, integration or e2e\n", os.Args[1])
		os.Exit(2)
	}
	fmt.Println(strings.Join(pkgs, " "))
}

// split lists the module's packages and sorts them into the three tiers.
func split() (map[string][]string, error) {
	// -deps lists every package the module's packages import, with its own
	// Deps, so the closure of a test import is one map lookup.
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Deps,TestImports,XTestImports,Module", "./...")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	all := map[string]pkg{}
	var mine []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			pkg
			Module *struct{ Path string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list: %w", err)
		}
		all[p.ImportPath] = p.pkg
		if p.Module != nil && p.Module.Path == module {
			mine = append(mine, p.ImportPath)
		}
	}
	sort.Strings(mine)
	tiers := map[string][]string{}
	for _, path := range mine {
		tier := "unit"
		switch {
		case path == e2eRoot || strings.HasPrefix(path, e2eRoot+"/"):
			tier = "e2e"
		case path == harness || testsReach(all, all[path], harness):
			tier = "integration"
		}
		tiers[tier] = append(tiers[tier], path)
	}
	for _, tier := range []string{"unit", "integration", "e2e"} {
		if len(tiers[tier]) == 0 {
			return nil, fmt.Errorf("no packages in tier %s: the split is broken, not the tests", tier)
		}
	}
	return tiers, nil
}

// testsReach reports whether p's test files import target, directly or
// through the packages they import. An external test's import of p itself
// does not count: p's own imports are not its tests'.
func testsReach(all map[string]pkg, p pkg, target string) bool {
	for _, imp := range append(append([]string{}, p.TestImports...), p.XTestImports...) {
		if imp == p.ImportPath {
			continue
		}
		if imp == target {
			return true
		}
		for _, d := range all[imp].Deps {
			if d == target {
				return true
			}
		}
	}
	return false
}
