// Package cli is the strait-sandbox command tree.
package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"strait.dev/strait/pkg/version"
	"strait.dev/strait/test/sandbox"
	"strait.dev/strait/test/sandbox/node"
)

// exitError carries a command's exit code through cobra (for exec).
type exitError struct{ code int }

func (e exitError) Error() string { return "exit status" }

// ExitCode reports the exit code a command asked for, if any.
func ExitCode(err error) (int, bool) {
	var e exitError
	if errors.As(err, &e) {
		return e.code, true
	}
	return 0, false
}

// NewCommand returns the root command.
func NewCommand() *cobra.Command {
	var stateDir string
	root := &cobra.Command{
		Use:   "strait-sandbox",
		Short: "Several real Kubernetes clusters on one machine, in network namespaces",
		Long: `strait-sandbox runs Kubernetes clusters whose control planes, nodes, pods and
networks live in network namespaces on this machine (root needed), with etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy built
from source, and a node agent that runs Strait's own images as processes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&stateDir, "state-dir", ".sandbox", "where the sandbox keeps kubeconfigs, state and logs")
	layout := func() sandbox.Layout {
		abs, err := filepath.Abs(stateDir)
		if err != nil {
			abs = stateDir
		}
		return sandbox.Layout{Dir: abs}
	}

	var opts sandbox.Options
	var nat, proxyMode string
	up := &cobra.Command{
		Use:   "up",
		Short: "Bring a sandbox up (an earlier one is taken down first)",
		Example: `  strait-sandbox up --clusters 2 --nodes 3
  strait-sandbox up --clusters 2 --nat c2
  strait-sandbox up --clusters 2 --overlapping
  strait-sandbox up --clusters 3 --proxy-mode iptables,c2=nftables,c3=nftables
  strait-sandbox up --clusters 2 --nodes 2 --ip-family dual --nat c2
  strait-sandbox up --clusters 2 --runtime oci`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nat != "" {
				opts.NAT = strings.Split(nat, ",")
			}
			if proxyMode != "" {
				if err := opts.ParseProxyModes(proxyMode); err != nil {
					return err
				}
			}
			if _, err := sandbox.Up(cmd.Context(), layout(), opts, cmd.OutOrStdout()); err != nil {
				return err
			}
			return sandbox.Status(cmd.Context(), layout(), cmd.OutOrStdout())
		},
	}
	up.Flags().IntVar(&opts.Clusters, "clusters", 2, "number of clusters (c1, c2, ...)")
	up.Flags().IntVar(&opts.Nodes, "nodes", 3, "nodes per cluster")
	up.Flags().IntVar(&opts.GatewayNodes, "gateway-nodes", 2, "gateway-capable nodes per cluster (the first ones), attached to the internet")
	up.Flags().StringVar(&nat, "nat", "", "comma-separated clusters that sit behind a NAT router")
	up.Flags().StringVar(&proxyMode, "proxy-mode", "", `kube-proxy's mode, iptables or nftables (default iptables), for all clusters and then per cluster, comma-separated: "nftables" or "iptables,c2=nftables"`)
	up.Flags().StringVar(&opts.IPFamily, "ip-family", sandbox.IPv4, "the family of node, pod, service and internet networks: ipv4, ipv6, or dual (both, IPv4 first)")
	up.Flags().BoolVar(&opts.Overlapping, "overlapping", false, "give every cluster the same pod and service CIDRs")
	up.Flags().StringVar(&opts.Runtime, "runtime", node.RuntimeHost, `how nodes run Strait's images: "host" runs their binaries from the sandbox's bin directory; "oci" runs the images (make images IMAGES_ARCH=amd64 first) under crun`)
	up.Flags().StringVar(&opts.Images, "images", "", "folder of the images' OCI archives for --runtime oci (default: images/ beside the sandbox's bin directory, _output/images)")

	down := &cobra.Command{
		Use:   "down",
		Short: "Take the sandbox down and remove everything it made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sandbox.Down(layout(), cmd.OutOrStdout())
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the sandbox's clusters and nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return sandbox.Status(cmd.Context(), layout(), cmd.OutOrStdout())
		},
	}
	execCmd := &cobra.Command{
		Use:     "exec <cluster>/<namespace>/<pod> -- <command> [args...]",
		Short:   "Run a command inside a pod's namespaces (the sandbox's kubectl exec)",
		Example: `  strait-sandbox exec c1/default/web-0 -- ip addr`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := sandbox.ParsePodRef(args[0])
			if err != nil {
				return err
			}
			c, err := layout().ExecCommand(cmd.Context(), ref, args[1:]...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return runExit(c)
		},
	}
	admin := &cobra.Command{
		Use:   "admin -- <command> [args...]",
		Short: "Run a command on the admin host, which reaches every apiserver at its public address",
		Long: `The admin host is the operator's workstation: it sits on the sandbox's internet,
where every cluster's apiserver and gateway-capable nodes have public addresses.
Kubeconfigs for it are in <state-dir>/admin/<cluster>.kubeconfig.`,
		Example: `  strait-sandbox admin -- straitctl show clusters --kubeconfig .sandbox/admin/c1.kubeconfig`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := sandbox.AdminCommand(args...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return runExit(c)
		},
	}
	var container string
	logs := &cobra.Command{
		Use:   "logs <cluster>/<namespace>/<pod>",
		Short: "Print a container's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := sandbox.ParsePodRef(args[0])
			if err != nil {
				return err
			}
			return layout().Logs(cmd.Context(), ref, container, cmd.OutOrStdout())
		},
	}
	logs.Flags().StringVarP(&container, "container", "c", "", "container name (default: the first)")

	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { cmd.Println(version.String("strait-sandbox")) },
	}
	root.AddCommand(up, down, status, execCmd, admin, logs, versionCmd)
	root.AddCommand(internalCommands(layout)...)
	return root
}

// runExit runs c and turns its exit status into this command's.
func runExit(c *exec.Cmd) error {
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return exitError{ee.ExitCode()}
		}
		return err
	}
	return nil
}

// internalCommands are the sandbox's own processes: the supervisor, the node
// agent, and the pause and container helpers.
func internalCommands(layout func() sandbox.Layout) []*cobra.Command {
	supervise := &cobra.Command{
		Use: "supervise", Hidden: true, Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return sandbox.Supervise(layout()) },
	}
	var configPath string
	agent := &cobra.Command{
		Use: "node-agent", Hidden: true, Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := readNodeConfig(configPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return node.Run(ctx, cfg)
		},
	}
	agent.Flags().StringVar(&configPath, "config", "", "agent configuration file")
	var hostname string
	pause := &cobra.Command{
		Use: "pause", Hidden: true, Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return node.Pause(hostname) },
	}
	pause.Flags().StringVar(&hostname, "hostname", "", "the pod's host name")
	var specPath string
	containerExec := &cobra.Command{
		Use: "container-exec", Hidden: true, Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return node.ContainerExec(specPath) },
	}
	containerExec.Flags().StringVar(&specPath, "spec", "", "container spec file")
	return []*cobra.Command{supervise, agent, pause, containerExec}
}
