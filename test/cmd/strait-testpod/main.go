// Command strait-testpod is the workload of the sandbox's test pods: echo
// and HTTP servers, probes that verify what comes back, a continuous UDP
// probe that measures outages, a path MTU probe, DNS lookups, a flood of
// malformed DNS packets, a look at a node for what Strait left on it, and
// a container that does nothing until told to stop. Results are one JSON
// object per line on stdout; the exit code is 0 for ok, 1 for a failed
// probe, 2 for a malformed command line. See package
// strait.dev/strait/test/testpod.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"strait.dev/strait/pkg/nodenet"
	"strait.dev/strait/pkg/version"
	"strait.dev/strait/test/testpod"
)

const binary = "strait-testpod"

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usage = `usage: strait-testpod <command> [flags]

commands:
  serve    [--http PORTS] [--tcp-echo PORTS] [--udp-echo PORTS] [--sink PORTS]
           [--shutdown-grace 5s]
           serve until SIGTERM; without listener flags: --http 8080
           --tcp-echo 9000 --udp-echo 9001
  connect  --tcp HOST:PORT | --udp HOST:PORT | --http URL
           [--bytes 64] [--timeout 5s] [--count 3]
  ping     --udp HOST:PORT [--interval 10ms] [--duration 0] [--timeout 1s]
           [--report-every 0]
           a datagram every interval until --duration or SIGTERM, then one
           report of loss, RTT and gaps in the replies
  throughput --tcp HOST:PORT [--duration 5s] [--timeout 10s]
           send to a sink (serve --sink) for the duration over one TCP
           connection; report what arrived in Gbit/s
  udp-send --udp HOST:PORT --hex PAYLOAD [--expect HEX] [--count 3] [--timeout 1s]
           send a datagram until a reply starting with --expect comes
  pmtu     --udp IP:PORT --max BYTES [--min 576] [--count 3] [--timeout 500ms]
           the largest IP packet, Don't Fragment set, that a UDP echo
           returns: --max first, then a search down to --min
  dns      NAME [--type A|AAAA|SRV] [--server IP[:PORT]] [--timeout 5s]
  dns-flood --server IP[:PORT] [--count 10000] [--rate 0] [--timeout 2s]
           [--seed 1]
           malformed and hostile DNS packets over UDP and TCP, then one
           valid question to see that the server still answers
  node-state [--wireguard-dir /var/run/wireguard]
           list what of Strait's the node holds (links, rules, routes of its
           tables, chains, the WireGuard control socket); run in the node's
           network namespace (hostNetwork); exit 0 when it holds nothing
  sleep    block until SIGTERM or SIGINT
  version  print the version

Run "strait-testpod <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var err error
	switch cmd, args := args[0], args[1:]; cmd {
	case "serve":
		err = serve(ctx, args, stdout, stderr)
	case "connect":
		err = connect(ctx, args, stdout, stderr)
	case "ping":
		err = ping(ctx, args, stdout, stderr)
	case "dns":
		err = dns(ctx, args, stdout, stderr)
	case "throughput":
		err = throughput(ctx, args, stdout, stderr)
	case "udp-send":
		err = udpSend(ctx, args, stdout, stderr)
	case "dns-flood":
		err = dnsFlood(ctx, args, stdout, stderr)
	case "pmtu":
		err = pmtu(ctx, args, stdout, stderr)
	case "node-state":
		err = nodeState(args, stdout, stderr)
	case "sleep":
		if err = parse(newFlagSet("sleep", "", stderr), args, 0); err == nil {
			<-ctx.Done()
		}
	case "version":
		if err = parse(newFlagSet("version", "", stderr), args, 0); err == nil {
			fmt.Fprintln(stdout, version.String(binary))
		}
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", binary, cmd, usage)
		return exitUsage
	}
	return exitCode(err, stderr)
}

// flagError is a command-line error the flag set has already printed,
// with the command's usage.
type flagError struct{ err error }

func (e flagError) Error() string { return e.err.Error() }

func exitCode(err error, stderr io.Writer) int {
	var fe flagError
	var ue *testpod.UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &fe):
		return exitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n", binary, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "%s: %v\n", binary, err)
		return exitFailed
	}
}

func newFlagSet(cmd, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s %s %s\n", binary, cmd, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags wherever they are among the arguments ("dns NAME
// --type SRV" as well as "dns --type SRV NAME") and returns the rest,
// which must be exactly positional arguments.
func parse(fs *flag.FlagSet, args []string, positional int) error {
	_, err := parseArgs(fs, args, positional)
	return err
}

func parseArgs(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest, args = append(rest, args[0]), args[1:]
	}
	if len(rest) != positional {
		err := fmt.Errorf("want %d arguments besides flags, got %d: %q", positional, len(rest), rest)
		fmt.Fprintln(fs.Output(), err)
		fs.Usage()
		return nil, flagError{err}
	}
	return rest, nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[--http PORTS] [--tcp-echo PORTS] [--udp-echo PORTS]", stderr)
	var httpPorts, tcpPorts, udpPorts testpod.Ports
	fs.Var(&httpPorts, "http", fmt.Sprintf("HTTP `ports`, comma separated (%d when no listener flag is given)", testpod.DefaultHTTPPort))
	fs.Var(&tcpPorts, "tcp-echo", fmt.Sprintf("TCP echo `ports`, comma separated (%d when no listener flag is given)", testpod.DefaultTCPEchoPort))
	fs.Var(&udpPorts, "udp-echo", fmt.Sprintf("UDP echo `ports`, comma separated (%d when no listener flag is given)", testpod.DefaultUDPEchoPort))
	var sinkPorts testpod.Ports
	fs.Var(&sinkPorts, "sink", "TCP throughput sink `ports`, comma separated (none by default)")
	grace := fs.Duration("shutdown-grace", testpod.DefaultShutdownGrace, "how long requests and echo connections get to finish after SIGTERM")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if len(httpPorts)+len(tcpPorts)+len(udpPorts)+len(sinkPorts) == 0 {
		httpPorts = testpod.Ports{testpod.DefaultHTTPPort}
		tcpPorts = testpod.Ports{testpod.DefaultTCPEchoPort}
		udpPorts = testpod.Ports{testpod.DefaultUDPEchoPort}
	}
	return testpod.Serve(ctx, testpod.ServeConfig{
		HTTP:          httpPorts.Addrs(),
		TCPEcho:       tcpPorts.Addrs(),
		UDPEcho:       udpPorts.Addrs(),
		Sink:          sinkPorts.Addrs(),
		Identity:      testpod.IdentityFromEnv(),
		ShutdownGrace: *grace,
		Logger:        slog.New(slog.NewJSONHandler(stdout, nil)),
	})
}

func connect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("connect", "--tcp HOST:PORT | --udp HOST:PORT | --http URL [flags]", stderr)
	targets := map[string]*string{
		testpod.ProtoTCP:  fs.String("tcp", "", "`HOST:PORT` of a TCP echo to send --bytes to and check"),
		testpod.ProtoUDP:  fs.String("udp", "", "`HOST:PORT` of a UDP echo to send one datagram of --bytes to and check"),
		testpod.ProtoHTTP: fs.String("http", "", "`URL` to GET; a /bytes URL has its body checked against X-Sha256"),
	}
	cfg := testpod.ConnectConfig{}
	fs.Int64Var(&cfg.Bytes, "bytes", testpod.DefaultBytes, "TCP or UDP payload size")
	fs.DurationVar(&cfg.Timeout, "timeout", testpod.DefaultTimeout, "bound on the whole probe")
	fs.IntVar(&cfg.Count, "count", testpod.DefaultUDPAttempts, "UDP datagrams to try before giving up")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if target, ok := targets[f.Name]; ok {
			if cfg.Proto != "" {
				cfg.Proto = "several"
			} else {
				cfg.Proto, cfg.Target = f.Name, *target
			}
		}
	})
	switch cfg.Proto {
	case "":
		return &testpod.UsageError{Err: errors.New("connect: want one of --tcp, --udp or --http")}
	case "several":
		return &testpod.UsageError{Err: errors.New("connect: want only one of --tcp, --udp or --http")}
	}
	return testpod.RunConnect(ctx, cfg, stdout)
}

func ping(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ping", "--udp HOST:PORT [--interval 10ms] [--duration 0] [--timeout 1s] [--report-every 0]", stderr)
	cfg := testpod.PingConfig{}
	fs.StringVar(&cfg.Target, "udp", "", "`HOST:PORT` of a UDP echo to send datagrams to")
	fs.DurationVar(&cfg.Interval, "interval", testpod.DefaultPingInterval, "time between datagrams")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long to send; 0 sends until SIGTERM or SIGINT")
	fs.DurationVar(&cfg.Timeout, "timeout", testpod.DefaultPingTimeout, "how late a reply may come and still count as received")
	fs.DurationVar(&cfg.ReportEvery, "report-every", 0, "print an intermediate report this often; 0 prints only the final one")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return testpod.RunPing(ctx, cfg, stdout)
}

func dns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dns", "NAME [--type A|AAAA|SRV] [--server IP[:PORT]] [--timeout 5s]", stderr)
	cfg := testpod.DNSConfig{}
	fs.StringVar(&cfg.Type, "type", "", "record `type`: A, AAAA or SRV (default A and AAAA)")
	fs.StringVar(&cfg.Server, "server", "", "DNS server `IP[:PORT]` to ask instead of /etc/resolv.conf's (port 53 by default)")
	fs.DurationVar(&cfg.Timeout, "timeout", testpod.DefaultTimeout, "bound on the lookup")
	rest, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	cfg.Name = rest[0]
	return testpod.RunDNS(ctx, cfg, stdout)
}

func dnsFlood(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dns-flood", "--server IP[:PORT] [--count 10000] [--rate 0] [--timeout 2s] [--seed 1]", stderr)
	cfg := testpod.DNSFloodConfig{}
	fs.StringVar(&cfg.Server, "server", "", "DNS server `IP[:PORT]` to flood (port 53 by default); the only address contacted")
	fs.IntVar(&cfg.Count, "count", testpod.DefaultFloodCount, "packets to send, UDP and TCP together")
	fs.IntVar(&cfg.Rate, "rate", 0, "packets per second; 0 sends as fast as possible")
	fs.DurationVar(&cfg.Timeout, "timeout", testpod.DefaultFloodTimeout, "bound on each TCP connection and each attempt of the final question")
	fs.Uint64Var(&cfg.Seed, "seed", testpod.DefaultFloodSeed, "seed of the packets: the same seed sends the same bytes")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return testpod.RunDNSFlood(ctx, cfg, stdout)
}

func throughput(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("throughput", "--tcp HOST:PORT [--duration 5s] [--timeout 10s]", stderr)
	cfg := testpod.ThroughputConfig{}
	fs.StringVar(&cfg.Target, "tcp", "", "`HOST:PORT` of a sink (serve --sink)")
	fs.DurationVar(&cfg.Duration, "duration", testpod.DefaultThroughputDuration, "how long to send")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "bound on connecting and on the sink's answer")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return testpod.RunThroughput(ctx, cfg, stdout)
}

func pmtu(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pmtu", "--udp IP:PORT --max BYTES [--min 576] [--count 3] [--timeout 500ms]", stderr)
	cfg := testpod.PMTUConfig{}
	fs.StringVar(&cfg.Target, "udp", "", "`IP:PORT` of a UDP echo (serve --udp-echo)")
	fs.IntVar(&cfg.Max, "max", 0, "the IP packet size, in `bytes`, the path should carry (tried first)")
	fs.IntVar(&cfg.Min, "min", testpod.DefaultPMTUMin, "the smallest IP packet size to try, in `bytes`")
	fs.IntVar(&cfg.Count, "count", testpod.DefaultPMTUCount, "datagrams of one size to send before it counts as not crossing")
	fs.DurationVar(&cfg.Timeout, "timeout", testpod.DefaultPMTUTimeout, "how long to wait for each echo")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return testpod.RunPMTU(ctx, cfg, stdout)
}

func udpSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("udp-send", "--udp HOST:PORT --hex PAYLOAD [--expect HEX] [--count 3] [--timeout 1s]", stderr)
	cfg := testpod.UDPSendConfig{}
	var payload, expect string
	fs.StringVar(&cfg.Target, "udp", "", "`HOST:PORT` to send to")
	fs.StringVar(&payload, "hex", "", "the datagram, `hex`")
	fs.StringVar(&expect, "expect", "", "the `hex` prefix a reply must have (default: any reply)")
	fs.IntVar(&cfg.Count, "count", 3, "datagrams to send before giving up")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Second, "how long to wait for a reply to each")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var err error
	if cfg.Payload, err = testpod.ParseHex(payload); err != nil {
		return err
	}
	if cfg.Expect, err = testpod.ParseHex(expect); err != nil {
		return err
	}
	return testpod.RunUDPSend(ctx, cfg, stdout)
}

func nodeState(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("node-state", "[--wireguard-dir /var/run/wireguard]", stderr)
	cfg := testpod.NodeStateConfig{}
	fs.StringVar(&cfg.WireGuardDir, "wireguard-dir", nodenet.WireGuardSocketDir, "`directory` of the userspace WireGuard control sockets (the node's, mounted into the pod)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return testpod.RunNodeState(cfg, stdout)
}
