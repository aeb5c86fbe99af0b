// Command straitctl deploys, joins and inspects a Strait cross-cluster network.
package main

import (
	"fmt"
	"os"

	"strait.dev/strait/pkg/cmd/straitctl"
)

func main() {
	if err := straitctl.NewCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "straitctl:", err)
		os.Exit(1)
	}
}
