// Package probe runs short-lived test pods in member clusters and probes
// the fabric from inside them: straitctl's verify, diagnose and benchmark
// are built on it. A Session owns one temporary namespace of the same name
// in every cluster (namespace sameness, as the MCS API wants), creates the
// Strait test workload's pods (image strait-testpod) on chosen nodes, runs
// the workload's probe subcommands in them through the apiserver's exec
// (what "kubectl exec" does), and deletes the namespaces when closed.
package probe

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
)

// GatewayLabel marks the nodes a cluster's gateway engine may run on (the
// label "straitctl join --gateway-nodes" sets, member.GatewayLabel).
const GatewayLabel = v1.GatewayNodeLabel

// Cluster is one member cluster as the commands reach it.
type Cluster struct {
	// ID is the cluster's ID in the clusterset, read from its ClusterProperty
	// cluster.clusterset.k8s.io; empty for a cluster that has not joined
	// (ConnectAny).
	ID string
	// Source says where the configuration came from ("c1.kubeconfig",
	// "admin.kubeconfig context c2"), for messages.
	Source string
	Config *rest.Config
	Kube   kubernetes.Interface
	Client client.Client
}

// Connect makes clients for each configuration and reads each cluster's ID.
// Errors name the source: a cluster that cannot be reached, one that has
// not joined (no ClusterProperty), or two sources that are the same cluster.
func Connect(ctx context.Context, sources []string, configs []*rest.Config) ([]*Cluster, error) {
	return connect(ctx, sources, configs, true)
}

// ConnectAny is Connect that also takes clusters that have not joined:
// their ID is empty.
func ConnectAny(ctx context.Context, sources []string, configs []*rest.Config) ([]*Cluster, error) {
	return connect(ctx, sources, configs, false)
}

func connect(ctx context.Context, sources []string, configs []*rest.Config, joined bool) ([]*Cluster, error) {
	var out []*Cluster
	for i, cfg := range configs {
		c := &Cluster{Source: sources[i], Config: cfg}
		var err error
		if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Source, err)
		}
		if c.Client, err = client.New(cfg, client.Options{Scheme: scheme.New()}); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Source, err)
		}
		var prop aboutv1beta1.ClusterProperty
		if err := c.Client.Get(ctx, client.ObjectKey{Name: v1.ClusterIDPropertyName}, &prop); err != nil {
			if (apierrors.IsNotFound(err) || meta.IsNoMatchError(err)) && !joined {
				out = append(out, c)
				continue
			}
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return nil, fmt.Errorf("%s: the cluster has not joined (no ClusterProperty %s): run straitctl join first", c.Source, v1.ClusterIDPropertyName)
			}
			return nil, fmt.Errorf("%s: read the cluster ID: %w", c.Source, err)
		}
		c.ID = prop.Spec.Value
		if i := slices.IndexFunc(out, func(o *Cluster) bool { return o.ID == c.ID && c.ID != "" }); i >= 0 {
			return nil, fmt.Errorf("%s and %s are the same cluster %s", out[i].Source, c.Source, c.ID)
		}
		out = append(out, c)
	}
	return out, nil
}

// Placement names where a test pod runs relative to its cluster's gateways.
type Placement string

const (
	// OnGateway is the node of the cluster's active gateway.
	OnGateway Placement = "gateway"
	// OffGateway is a node that is not a gateway node: traffic crosses the
	// route agents' overlay to the gateway first.
	OffGateway Placement = "non-gateway"
)

// Nodes are the nodes of a cluster the commands place pods on.
type Nodes struct {
	// ActiveGateway is the node of the active gateway ("" when none is).
	ActiveGateway string
	// Gateways are the nodes labelled as gateways, sorted.
	Gateways []string
	// NonGateway is a Ready, schedulable node without the gateway label
	// ("" when the cluster has none).
	NonGateway string
}

// Node returns the node of a placement, "" when the cluster has none.
func (n Nodes) Node(p Placement) string {
	if p == OnGateway {
		return n.ActiveGateway
	}
	return n.NonGateway
}

// FindNodes reads the cluster's gateway nodes, the active one (from the
// Gateway records' HA status), and one non-gateway node.
func FindNodes(ctx context.Context, c *Cluster) (Nodes, error) {
	var out Nodes
	var gws v1.GatewayList
	if err := c.Client.List(ctx, &gws, client.InNamespace(v1.ComponentNamespace)); err != nil {
		return out, fmt.Errorf("%s: list gateways: %w", c.ID, err)
	}
	for _, g := range gws.Items {
		if g.Status.HAStatus == v1.HAStatusActive {
			out.ActiveGateway = g.Name
		}
	}
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return out, fmt.Errorf("%s: list nodes: %w", c.ID, err)
	}
	for _, n := range nodes.Items {
		if n.Labels[GatewayLabel] == "true" {
			out.Gateways = append(out.Gateways, n.Name)
			continue
		}
		if out.NonGateway == "" && !n.Spec.Unschedulable && NodeReady(&n) && !noSchedule(&n) {
			out.NonGateway = n.Name
		}
	}
	slices.Sort(out.Gateways)
	return out, nil
}

// NodeReady reports the node's Ready condition.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// noSchedule reports a NoSchedule taint (control-plane nodes have one): a
// test pod there proves nothing about ordinary workloads.
func noSchedule(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

// Name is the cluster's ID, or its source when it has not joined.
func (c *Cluster) Name() string {
	if c.ID != "" {
		return c.ID
	}
	return c.Source
}
