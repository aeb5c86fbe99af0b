package cmdutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Clusters is the --kubeconfig/--context pair of a command that works on
// several clusters at once (verify, diagnose, benchmark). Both flags take a
// comma-separated list and may be repeated:
//
//   - several kubeconfigs, no context: each file's current context;
//   - one kubeconfig (or $KUBECONFIG, or ~/.kube/config), several contexts:
//     each context of it;
//   - as many kubeconfigs as contexts: pairwise.
type Clusters struct {
	Kubeconfigs []string
	Contexts    []string
}

// AddFlags adds --kubeconfig and --context.
func (k *Clusters) AddFlags(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&k.Kubeconfigs, "kubeconfig", nil,
		"kubeconfig files of the clusters, comma-separated or repeated (default $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringSliceVar(&k.Contexts, "context", nil,
		"kubeconfig contexts of the clusters, comma-separated or repeated (default: each file's current one)")
}

// Configs loads one client configuration per cluster, with a description
// of where each came from ("c1.kubeconfig", "~/.kube/config context c2").
func (k *Clusters) Configs() (sources []string, configs []*rest.Config, err error) {
	files, ctxs := k.Kubeconfigs, k.Contexts
	if len(files) == 0 {
		files = []string{""}
	}
	switch {
	case len(ctxs) == 0:
		ctxs = make([]string, len(files))
	case len(files) == 1 && len(ctxs) > 1:
		for len(files) < len(ctxs) {
			files = append(files, files[0])
		}
	case len(files) != len(ctxs):
		return nil, nil, fmt.Errorf("%d kubeconfigs and %d contexts: give one kubeconfig with several contexts, several kubeconfigs, or as many of each", len(files), len(ctxs))
	}
	for i, f := range files {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		source := "$KUBECONFIG"
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				return nil, nil, fmt.Errorf("kubeconfig: %w", err)
			}
			rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: f}
			source = filepath.Base(f)
		} else if os.Getenv("KUBECONFIG") == "" {
			source = "~/.kube/config"
		}
		if ctxs[i] != "" {
			source += " context " + ctxs[i]
		}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: ctxs[i]}).ClientConfig()
		if err != nil {
			if clientcmd.IsEmptyConfig(err) {
				err = errors.New("no cluster given: use --kubeconfig <file> or set $KUBECONFIG")
			}
			return nil, nil, fmt.Errorf("%s: %w", source, err)
		}
		cfg.QPS, cfg.Burst = 50, 100
		sources, configs = append(sources, source), append(configs, cfg)
	}
	return sources, configs, nil
}
