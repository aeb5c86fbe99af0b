// Package deploybroker is "straitctl deploy-broker".
package deploybroker

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
)

// NewCommand returns the deploy-broker command.
func NewCommand() *cobra.Command {
	var (
		kube            cmdutil.Kube
		opts            broker.DeployOptions
		globalnet, file string
	)
	cmd := &cobra.Command{
		Use:   "deploy-broker",
		Short: "Install the broker into a cluster and write the join file",
		Long: `deploy-broker installs the Strait broker into any cluster (a dedicated one or a
member): the CRDs, the broker namespace, RBAC, and a ValidatingAdmissionPolicy
that lets each member write only its own records. It writes the join file
(mode 0600) that "straitctl join" needs.

The join file holds the enrolment credential: it can join clusters, read every
member's records and remove members. Hand it only to those allowed to join
clusters. Each member gets a narrower credential of its own at join.

The broker also holds the Globalnet pool (--globalnet-cidr, 242.0.0.0/8 unless
given; an IPv4 /8 to /24) that "straitctl join --globalnet" allots clusters'
global CIDRs from. Deploying again keeps the pool unless --globalnet-cidr names
another, which is refused while members hold blocks of the old one.`,
		Example: `  straitctl deploy-broker --kubeconfig broker.kubeconfig
  straitctl deploy-broker --kubeconfig c1.kubeconfig --namespace strait-broker-prod
  straitctl deploy-broker --kubeconfig broker.kubeconfig --globalnet-cidr 169.254.0.0/16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kube.Config()
			if err != nil {
				return err
			}
			if globalnet != "" {
				p, err := netip.ParsePrefix(globalnet)
				if err != nil {
					return fmt.Errorf("--globalnet-cidr %q: %w", globalnet, err)
				}
				if err := broker.ValidateGlobalnetPool(p); err != nil {
					return fmt.Errorf("--globalnet-cidr: %w", err)
				}
				opts.GlobalnetCIDR = p
			}
			info, err := broker.Deploy(cmd.Context(), cfg, opts)
			if err != nil {
				return cmdutil.Explain(err)
			}
			if err := broker.WriteInfo(file, info); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "broker ready in namespace %s at %s\njoin file: %s (keep it secret)\n", info.Namespace, info.APIServer, file)
			return nil
		},
	}
	kube.AddFlags(cmd)
	cmd.Flags().StringVar(&opts.Namespace, "namespace", v1.BrokerNamespace, "broker namespace")
	cmd.Flags().StringVar(&opts.APIServer, "broker-url", "", "the broker API URL as member clusters reach it (default: the kubeconfig's server)")
	cmd.Flags().StringVar(&globalnet, "globalnet-cidr", "", "the Globalnet pool members' global CIDRs are allotted from, an IPv4 /8 to /24 (default: the broker's, 242.0.0.0/8 for a new one)")
	cmd.Flags().StringVar(&file, "output", "broker-info.strait", "where to write the join file")
	return cmd
}
