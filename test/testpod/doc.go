// Package testpod is the logic of strait-testpod, the general-purpose
// workload that runs in the sandbox's test pods (image strait/testpod). A
// pod runs the binary with the pod's args; Go end-to-end tests then read
// what it printed and its exit code.
//
// The binary has ten subcommands, each a function here:
//
//   - serve ([Listen], [Server.Serve]): TCP echo, UDP echo and HTTP
//     listeners on every address of the network namespace, until SIGTERM.
//     The HTTP side answers GET / with the pod's identity ([Info]),
//     /healthz for probes, /bytes?n=N&seed=S with a checksummed
//     deterministic stream ([NewStream]) and /status/CODE with that code.
//   - connect ([RunConnect]): one TCP, UDP or HTTP round trip whose
//     payload is verified end to end, reported as a [Report].
//   - ping ([RunPing]): a datagram every interval to a UDP echo, over one
//     socket, until a duration or SIGTERM, then a [PingReport] of loss,
//     round-trip times and the gaps in the replies: the data-plane outage
//     of a gateway failover, say.
//   - dns ([RunDNS]): one lookup with Go's resolver, optionally against a
//     given server, reported as a [DNSReport].
//   - dns-flood ([RunDNSFlood]): malformed and hostile DNS packets
//     ([FloodCategories]) over UDP and TCP to one server, then one valid
//     question over each to see that it still answers, reported as a
//     [DNSFloodReport].
//   - throughput ([RunThroughput]): one TCP connection's worth of bytes to
//     a sink (serve --sink) for a duration, reported in Gbit/s by what the
//     sink counted ([ThroughputReport]).
//   - udp-send ([RunUDPSend]): a given datagram until a reply with a given
//     prefix comes: a probe of a server with its own protocol (a gateway's
//     NAT discovery), reported as a [UDPSendReport].
//   - node-state ([RunNodeState]): what of Strait's a node holds (links,
//     rules, routes of its tables, chains, the WireGuard control socket),
//     from a pod in the node's network namespace, reported as a
//     [NodeStateReport]: ok when nothing.
//   - sleep and version, which need no library code.
//
// Everything the workload prints on stdout is one JSON object per line:
// slog records while serving, exactly one report for connect, dns,
// dns-flood and node-state, and for ping one final report after any
// intermediate ones it was asked for. A report always says "ok"; the exit code agrees with it
// (0 ok, 1 failed), and a malformed request (a target without a port, an
// unknown record type) exits 2 instead, so that a test expecting a
// connection to fail cannot pass because of a typo. Errors of that kind are
// [*UsageError].
package testpod
