package main

import (
	"context"
	"fmt"

	"strait.dev/strait/test/corednstest"
)

// side is one DNS server under test: a binary, its Corefile and the zone
// whose names it answers.
type side struct {
	// Name identifies the side in the output: "strait", "stock" or
	// "stock-mcs".
	Name string `json:"name"`
	// Zone is the zone its names are in.
	Zone string `json:"zone"`
	// Binary is the server's executable.
	Binary string `json:"binary"`
	// Plugin names the plugin measured, for the summary.
	Plugin string `json:"plugin"`

	corefile func(port, readyPort int, kubeconfig string) string
}

// start starts the side's server against kubeconfig, pinned to cpus.
func (s side) start(ctx context.Context, kubeconfig, dir, cpus string) (*corednstest.Server, error) {
	return corednstest.Start(ctx, corednstest.Options{
		Name: s.Name, Binary: s.Binary, Dir: dir, CPUs: cpus,
		Corefile: func(port, readyPort int) string { return s.corefile(port, readyPort, kubeconfig) },
	})
}

// The sides. None has the cache plugin: the plugins themselves are
// measured, not CoreDNS's cache, which would answer every side's repeated
// names alike. The ready plugin is how the harness knows a server has
// synced its caches; it listens on a port of its own and costs nothing per
// query.
func straitSide(bin string) side {
	return side{Name: "strait", Zone: "clusterset.local", Binary: bin, Plugin: "strait-dns lighthouse", corefile: func(port, readyPort int, kubeconfig string) string {
		return fmt.Sprintf(`clusterset.local:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    lighthouse {
        kubeconfig %s
        namespace strait-system
        cluster-id %s
    }
}
`, port, readyPort, kubeconfig, localCluster)
	}}
}

func stockSide(bin string) side {
	return side{Name: "stock", Zone: "cluster.local", Binary: bin, Plugin: "CoreDNS kubernetes", corefile: func(port, readyPort int, kubeconfig string) string {
		return fmt.Sprintf(`cluster.local:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    kubernetes cluster.local {
        kubeconfig %s
    }
}
`, port, readyPort, kubeconfig)
	}}
}

// stockMCSSide is stock CoreDNS answering clusterset.local with the
// kubernetes plugin's multicluster option (it reads the ServiceImports
// through multicluster.x-k8s.io/v1alpha1, which our CRDs also serve).
func stockMCSSide(bin string) side {
	return side{Name: "stock-mcs", Zone: "clusterset.local", Binary: bin, Plugin: "CoreDNS kubernetes multicluster", corefile: func(port, readyPort int, kubeconfig string) string {
		return fmt.Sprintf(`clusterset.local:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    kubernetes clusterset.local {
        kubeconfig %s
        multicluster clusterset.local
    }
}
`, port, readyPort, kubeconfig)
	}}
}
