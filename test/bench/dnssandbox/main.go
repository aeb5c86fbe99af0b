// Command dnssandbox is "make bench-dns-sandbox", the sandbox half of the
// DNS benchmarks: what a pod sees of clusterset.local while clusters change.
//
// It brings up a sandbox of two clusters of three nodes, joins both with
// WireGuard (gateways n1 and n2, as the e2e tests do) and measures, from a
// pod in c2 whose queries take the pod's own path (c2's CoreDNS, which
// straitctl join made forward clusterset.local to strait-dns):
//
//   - export → answer: 100 Services of c1 exported one after another; for
//     each, the time from the ServiceExport's creation to the first NOERROR
//     A answer for <svc>.<ns>.svc.clusterset.local. The baseline, in the
//     same run through the same CoreDNS: 100 Services created in c2 and
//     their <svc>.<ns>.svc.cluster.local answers from stock CoreDNS's
//     kubernetes plugin.
//   - withdrawal: c1's gateways lose their gateway label (as in the e2e
//     tests) while the pod watches a headless Service exported from c1 and
//     c2; the time until c2's active Gateway no longer reports c1 Connected
//     and until c1's endpoint leaves the answer. Median of 5.
//
// The queries come from this same binary run as "poll" inside the pod's
// network namespace (strait-sandbox exec), so the times are taken on the
// machine's clock on both sides, without a kubectl exec per query.
// The figures go to _output/bench/dns-sandbox.json and a summary to stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench-dns-sandbox:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "poll" {
		return poll(args[1:], os.Stdin, os.Stdout)
	}
	if len(args) > 0 {
		return errUsage
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (the sandbox)")
	}
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return bench(ctx)
}
