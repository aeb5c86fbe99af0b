// Command mcscrds writes the Kubernetes MCS API CRDs (ServiceExport and
// ServiceImport, multicluster.x-k8s.io) that sigs.k8s.io/mcs-api embeds into a
// folder, so that the chart's crds/ (deploy/charts/strait/crds) holds them exactly as the pinned module ships them.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	mcscrd "sigs.k8s.io/mcs-api/config/crd"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mcscrds DIR")
		os.Exit(2)
	}
	files := map[string][]byte{
		"multicluster.x-k8s.io_serviceexports.yaml": mcscrd.ServiceExportCRD,
		"multicluster.x-k8s.io_serviceimports.yaml": mcscrd.ServiceImportCRD,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(os.Args[1], name), data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "mcscrds:", err)
			os.Exit(1)
		}
	}
}
