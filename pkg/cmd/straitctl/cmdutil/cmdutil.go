// Package cmdutil holds what straitctl's commands share: the kubeconfig
// flags and the translation of client errors into one clear line.
package cmdutil

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Kube is the --kubeconfig/--context pair of a command.
type Kube struct {
	Kubeconfig string
	Context    string
}

// AddFlags adds --kubeconfig and --context.
func (k *Kube) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file of the cluster (default $KUBECONFIG)")
	cmd.Flags().StringVar(&k.Context, "context", "", "kubeconfig context (default: the current one)")
}

// Config loads the client configuration.
func (k *Kube) Config() (*rest.Config, error) {
	if k.Kubeconfig == "" {
		return nil, errors.New("no cluster given: use --kubeconfig <file> or set $KUBECONFIG")
	}
	if _, err := os.Stat(k.Kubeconfig); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: k.Context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", k.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Explain turns common client failures into a line a person can act on.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var urlErr *url.Error
	var opErr *net.OpError
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("missing rights: %w", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the credential was refused (expired or revoked?): %w", err)
	case errors.As(err, &opErr), errors.As(err, &urlErr) && urlErr.Timeout():
		return fmt.Errorf("cannot reach the API server: %w", err)
	}
	return err
}
