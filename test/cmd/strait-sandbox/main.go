// Command strait-sandbox runs several real Kubernetes clusters on this machine,
// in network namespaces, for Strait's end-to-end tests and demo.
package main

import (
	"fmt"
	"os"

	"strait.dev/strait/test/sandbox/cli"
)

func main() {
	if err := cli.NewCommand().Execute(); err != nil {
		if code, ok := cli.ExitCode(err); ok {
			os.Exit(code)
		}
		fmt.Fprintln(os.Stderr, "strait-sandbox:", err)
		os.Exit(1)
	}
}
