// Command straitctl deploys, joins and inspects a Strait cross-cluster network.
package main

import (
	"os"

	"strait.dev/strait/pkg/cmd/straitctl"
)

func main() {
	os.Exit(straitctl.Main(os.Args[1:], os.Stdout, os.Stderr))
}
