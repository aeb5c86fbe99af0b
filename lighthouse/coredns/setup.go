package coredns

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
)

var log = clog.NewWithPlugin(pluginName)

// DefaultZone is the zone answered when the Corefile names none
// (KEP-1645: clusterset.local).
const DefaultZone = "clusterset.local."

// maxTTL bounds the ttl option: an hour, as the kubernetes plugin's.
const maxTTL = 3600

func init() { plugin.Register(pluginName, setup) }

// config is what the Corefile says.
type config struct {
	zones      []string
	kubeconfig string
	context    string
	namespace  string
	clusterID  string
	ttl        uint32
	fall       fall.F
}

// parseConfig reads the plugin's Corefile block (README.md, "Syntax"). Errors
// name the option and what is wrong with its arguments; a second
// lighthouse block in one server block is an error.
func parseConfig(c *caddy.Controller) (config, error) {
	cfg := config{namespace: v1.ComponentNamespace, ttl: DefaultTTL}
	i := 0
	for c.Next() {
		if i > 0 {
			return cfg, plugin.ErrOnce
		}
		i++
		args := c.RemainingArgs()
		if len(args) == 0 {
			cfg.zones = []string{DefaultZone}
		} else {
			cfg.zones = plugin.OriginsFromArgsOrServerBlock(args, c.ServerBlockKeys)
		}
		for c.NextBlock() {
			switch c.Val() {
			case "kubeconfig":
				a := c.RemainingArgs()
				if len(a) < 1 || len(a) > 2 {
					return cfg, c.Errf("kubeconfig takes a path and an optional context, got %d arguments", len(a))
				}
				cfg.kubeconfig = a[0]
				if len(a) == 2 {
					cfg.context = a[1]
				}
			case "namespace":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return cfg, c.Errf("namespace takes one namespace, got %d arguments", len(a))
				}
				cfg.namespace = a[0]
			case "cluster-id":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return cfg, c.Errf("cluster-id takes one cluster ID, got %d arguments", len(a))
				}
				cfg.clusterID = a[0]
			case "ttl":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return cfg, c.Errf("ttl takes one number of seconds, got %d arguments", len(a))
				}
				t, err := strconv.ParseUint(a[0], 10, 32)
				if err != nil || t > maxTTL {
					return cfg, c.Errf("ttl %q: want seconds from 0 to %d", a[0], maxTTL)
				}
				cfg.ttl = uint32(t)
			case "fallthrough":
				cfg.fall.SetZonesFromArgs(c.RemainingArgs())
			default:
				return cfg, c.Errf("unknown option %q", c.Val())
			}
		}
	}
	return cfg, nil
}

// logs sends client-go's and controller-runtime's logs (a failed list or
// watch, say) to CoreDNS's log, prefixed with the plugin's name, once.
var logs sync.Once

func setup(c *caddy.Controller) error {
	logs.Do(func() {
		l := funcr.New(func(prefix, args string) { log.Info(strings.TrimSpace(prefix + " " + args)) }, funcr.Options{})
		klog.SetLogger(l)
		ctrllog.SetLogger(l)
	})
	cfg, err := parseConfig(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	store := NewStore(cfg.clusterID, cfg.namespace)
	l := &Lighthouse{Zones: cfg.zones, TTL: cfg.ttl, Fall: cfg.fall, Store: store}
	ctx, cancel := context.WithCancel(context.Background())
	c.OnStartup(func() error {
		// Without cluster-id the ClusterProperty is read now, so such a
		// server needs the apiserver to start (dns.yaml always sets it).
		rc, err := restConfig(cfg.kubeconfig, cfg.context)
		if err != nil {
			return plugin.Error(pluginName, err)
		}
		if cfg.clusterID == "" {
			id, err := clusterID(ctx, rc)
			if err != nil {
				return plugin.Error(pluginName, err)
			}
			store.local = id
		}
		if err := Watch(ctx, rc, cfg.namespace, store); err != nil {
			return plugin.Error(pluginName, err)
		}
		return nil
	})
	c.OnShutdown(func() error {
		cancel()
		return nil
	})
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		l.Next = next
		return l
	})
	return nil
}

// restConfig is the client configuration from kubeconfig (and context), or
// the in-cluster one when kubeconfig is empty.
func restConfig(kubeconfig, context string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: context},
		).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("client configuration: %w", err)
	}
	rc.UserAgent = "strait-dns"
	return rc, nil
}

// clusterID reads this cluster's ID from the ClusterProperty
// cluster.clusterset.k8s.io (KEP-2149). Errors: the apiserver's (not found
// when the cluster has not joined).
func clusterID(ctx context.Context, rc *rest.Config) (string, error) {
	c, err := client.New(rc, client.Options{Scheme: scheme.New()})
	if err != nil {
		return "", err
	}
	var p aboutv1beta1.ClusterProperty
	if err := c.Get(ctx, client.ObjectKey{Name: v1.ClusterIDPropertyName}, &p); err != nil {
		return "", fmt.Errorf("read the cluster ID (ClusterProperty %s): %w", v1.ClusterIDPropertyName, err)
	}
	return p.Spec.Value, nil
}
