// Package cleanupbroker is "straitctl cleanup-broker".
package cleanupbroker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
)

// timeout bounds the whole cleanup: a few list and delete requests, well
// under a second each on an apiserver that answers.
const timeout = time.Minute

// NewCommand returns the cleanup-broker command.
func NewCommand() *cobra.Command {
	var (
		kube      cmdutil.Kube
		namespace string
		clusterID string
	)
	cmd := &cobra.Command{
		Use:   "cleanup-broker",
		Short: "Remove a member's records and enrolment from the broker",
		Long: `cleanup-broker runs against the broker's cluster, with its kubeconfig, and
removes one member from the broker namespace: every record labelled with its
cluster ID (Cluster, Endpoints, ServiceImports, EndpointSlices), the Roles and
RoleBindings of its enrolment, and its service account, which revokes the
member's broker credential. Use it when "straitctl leave" could not reach the
broker, or for a member cluster that is gone. Running it again is harmless.`,
		Example: `  straitctl cleanup-broker --kubeconfig broker.kubeconfig --clusterid c2
  straitctl cleanup-broker --kubeconfig c1.kubeconfig --namespace strait-broker-prod --clusterid c3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := broker.ValidateClusterID(clusterID); err != nil {
				return err
			}
			cfg, err := kube.Config()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := broker.Unenroll(ctx, cfg, namespace, clusterID); err != nil {
				return cmdutil.Explain(fmt.Errorf("remove %s from the broker namespace %s: %w", clusterID, namespace, err))
			}
			left, err := broker.Remaining(ctx, cfg, namespace, clusterID)
			if err != nil {
				return cmdutil.Explain(err)
			}
			if len(left) > 0 {
				return fmt.Errorf("the broker namespace %s still holds %s of %s (a member still running writes them again: run straitctl leave on it first)", namespace, strings.Join(left, ", "), clusterID)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from the broker namespace %s\n", clusterID, namespace)
			return nil
		},
	}
	kube.AddFlags(cmd)
	cmd.Flags().StringVar(&namespace, "namespace", v1.BrokerNamespace, "broker namespace")
	cmd.Flags().StringVar(&clusterID, "clusterid", "", "the cluster ID of the member to remove (required)")
	_ = cmd.MarkFlagRequired("clusterid")
	return cmd
}
