// Package cmdutil holds what straitctl's commands share: the kubeconfig
// flags (kubectl's loading rules), the -o flag and its printers, progress
// lines, and the translation of client errors into one clear line.
package cmdutil

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Kube is the --kubeconfig/--context pair of a command. The kubeconfig is
// found as kubectl finds it (clientcmd's default loading rules): the
// --kubeconfig file, else the files listed in $KUBECONFIG (merged), else
// ~/.kube/config.
type Kube struct {
	// Kubeconfig is --kubeconfig: one file; empty for the loading rules.
	Kubeconfig string
	// Context is --context of a command that works on one cluster.
	Context string
	// Contexts is --context of a command that works on several clusters
	// at once (AddMultiFlags): "a,b" or the flag repeated.
	Contexts []string
}

// AddFlags adds --kubeconfig and a single --context.
func (k *Kube) AddFlags(cmd *cobra.Command) {
	k.addKubeconfig(cmd)
	cmd.Flags().StringVar(&k.Context, "context", "", "kubeconfig context (default: the current one)")
}

// AddMultiFlags adds --kubeconfig and a --context that takes several
// contexts (comma-separated or repeated): the command runs on each.
func (k *Kube) AddMultiFlags(cmd *cobra.Command) {
	k.addKubeconfig(cmd)
	cmd.Flags().StringSliceVar(&k.Contexts, "context", nil, "kubeconfig contexts, comma-separated or repeated (default: the current one)")
}

func (k *Kube) addKubeconfig(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the files in $KUBECONFIG, else ~/.kube/config)")
}

// Target is one cluster a command talks to.
type Target struct {
	// Context is the kubeconfig context's name ("" when the kubeconfig
	// names none).
	Context string
	// Namespace is the context's namespace, "default" when it names none:
	// the namespace of commands given no -n.
	Namespace string
	Config    *rest.Config
}

// Config loads the client configuration of the one cluster the flags name.
// Errors: a --kubeconfig file that cannot be read, no kubeconfig at all, an
// unknown context, or several contexts given to a one-cluster command.
func (k *Kube) Config() (*rest.Config, error) {
	t, err := k.Target()
	if err != nil {
		return nil, err
	}
	return t.Config, nil
}

// Target is Config with the context's name and namespace.
func (k *Kube) Target() (Target, error) {
	ctx := k.Context
	switch len(k.Contexts) {
	case 0:
	case 1:
		ctx = k.Contexts[0]
	default:
		return Target{}, fmt.Errorf("--context: this command works on one cluster, got %d contexts", len(k.Contexts))
	}
	return k.load(ctx)
}

// Targets loads the client configuration of each cluster the flags name,
// in the order given (the current context when none is).
func (k *Kube) Targets() ([]Target, error) {
	names := k.Contexts
	if len(names) == 0 {
		names = []string{k.Context}
	}
	var out []Target
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if seen[n] {
			continue
		}
		seen[n] = true
		t, err := k.load(n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func (k *Kube) load(context string) (Target, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.Kubeconfig != "" {
		// An explicit file that is missing is an error, not a fall back
		// to $KUBECONFIG.
		if _, err := os.Stat(k.Kubeconfig); err != nil {
			return Target{}, fmt.Errorf("kubeconfig: %w", err)
		}
		rules.ExplicitPath = k.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return Target{}, errors.New("no cluster given: use --kubeconfig <file>, set $KUBECONFIG or write ~/.kube/config")
		}
		return Target{}, fmt.Errorf("kubeconfig %s: %w", k.source(), err)
	}
	if context == "" {
		if raw, err := cc.RawConfig(); err == nil {
			context = raw.CurrentContext
		}
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = metav1.NamespaceDefault
	}
	cfg.QPS, cfg.Burst = 50, 100
	return Target{Context: context, Namespace: ns, Config: cfg}, nil
}

// source names where the kubeconfig came from, for errors.
func (k *Kube) source() string {
	if k.Kubeconfig != "" {
		return k.Kubeconfig
	}
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		return "$KUBECONFIG (" + env + ")"
	}
	return clientcmd.RecommendedHomeFile
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
