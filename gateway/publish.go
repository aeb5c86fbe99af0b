package gateway

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/syncer"
)

// publish applies the local Cluster and Endpoint in the local namespace,
// where the syncer exports them, and removes the Endpoints that earlier
// active gateways of this cluster left (each with a UID precondition, so a
// recreated one stays).
func (e *Engine) publish(ctx context.Context, local *v1.Endpoint, node *corev1.Node) error {
	var podCIDRs, svcCIDRs []v1.CIDR
	for _, p := range e.cfg.PodCIDRs {
		podCIDRs = append(podCIDRs, v1.CIDR(p.Masked().String()))
	}
	for _, p := range e.cfg.ServiceCIDRs {
		svcCIDRs = append(svcCIDRs, v1.CIDR(p.Masked().String()))
	}
	cluster := &v1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: e.cfg.ClusterID, Namespace: e.cfg.Namespace, Labels: map[string]string{v1.ClusterIDLabel: e.cfg.ClusterID}},
		Spec:       v1.ClusterSpec{ClusterID: v1.ClusterID(e.cfg.ClusterID), PodCIDRs: podCIDRs, ServiceCIDRs: svcCIDRs},
	}
	if e.cfg.GlobalCIDR.IsValid() {
		cluster.Spec.GlobalCIDRs = []v1.CIDR{v1.CIDR(e.cfg.GlobalCIDR.Masked().String())}
	}
	cluster.Spec.Topology.Region = node.Labels[corev1.LabelTopologyRegion]
	for _, obj := range []client.Object{cluster, local} {
		if err := kubeapply.Apply(ctx, e.c, obj, kubeapply.FieldManagerGateway); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	var eps v1.EndpointList
	if err := e.c.List(ctx, &eps, client.InNamespace(e.cfg.Namespace), client.MatchingLabels{v1.ClusterIDLabel: e.cfg.ClusterID}); err != nil {
		return fmt.Errorf("list this cluster's Endpoints: %w", err)
	}
	for _, ep := range eps.Items {
		if ep.Name == local.Name {
			continue
		}
		e.log.Info("removing the Endpoint of a former active gateway", "endpoint", ep.Name)
		if err := e.c.Delete(ctx, &ep, client.Preconditions{UID: &ep.UID}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("remove Endpoint %s: %w", ep.Name, err)
		}
	}
	return nil
}

// newSyncer makes the syncer that exports this cluster's Cluster and
// Endpoint to the broker and imports the other clusters'.
// It reaches the broker with creds.
func (e *Engine) newSyncer(creds *broker.Credentials) (*syncer.Syncer, error) {
	local, err := dynamic.NewForConfig(e.rest)
	if err != nil {
		return nil, err
	}
	remote, err := dynamic.NewForConfig(creds.Info.RESTConfig(creds.Token))
	if err != nil {
		return nil, err
	}
	return syncer.New(syncer.Config{
		ClusterID: e.cfg.ClusterID, Local: local, LocalNamespace: e.cfg.Namespace,
		Broker: remote, BrokerNamespace: creds.Info.Namespace,
		Resources: []schema.GroupVersionResource{
			v1.SchemeGroupVersion.WithResource("clusters"),
			v1.SchemeGroupVersion.WithResource("endpoints"),
		},
		Log:    e.cfg.Log,
		OnHeld: e.heldRecords,
	}), nil
}

// heldRecords reports the records the syncer keeps through a broker outage:
// a metric (the syncer logs each one).
func (e *Engine) heldRecords(n int, _ string) {
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.SetHeldRecords(n)
	}
}
