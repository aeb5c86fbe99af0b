package kubetest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BinDirEnv names the environment variable that points at the folder holding
// etcd, kube-apiserver and the other Kubernetes binaries. The Makefile sets it;
// without it the folder is found from the repository root.
const BinDirEnv = "STRAIT_KUBE_BIN"

// BinDir returns the folder holding the Kubernetes binaries built from source
// by "make kube-binaries" (_output/kube/<version>/).
func BinDir() (string, error) {
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		version, err := KubeVersion(root)
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "_output", "kube", version)
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("kubernetes binaries not found in %s (%v): run 'make kube-binaries' or set %s", dir, err, BinDirEnv)
		}
	}
	return dir, nil
}

// RepoRoot finds the root of the Strait repository by walking up from the
// working directory to the go.mod of module strait.dev/strait.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module strait.dev/strait\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the strait repository (no go.mod of module strait.dev/strait above the working directory)")
		}
		dir = parent
	}
}

// KubeVersion reads the k8s.io/kubernetes version that test/kube/go.mod
// requires: the version of the binaries the tests run.
func KubeVersion(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "test", "kube", "go.mod"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Either "require k8s.io/kubernetes vX" or, inside a require block,
		// "k8s.io/kubernetes vX".
		fields := strings.Fields(strings.TrimPrefix(sc.Text(), "require "))
		if len(fields) >= 2 && fields[0] == "k8s.io/kubernetes" {
			return fields[1], nil
		}
	}
	return "", errors.New("test/kube/go.mod does not require k8s.io/kubernetes")
}
