// Package member joins a cluster to a Strait broker and removes it again:
// the library under "straitctl join" and "straitctl leave".
package member

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/crds"
	"strait.dev/strait/deploy/manifests"
	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/scheme"
)

// GatewayLabel marks the nodes the gateway engine runs on.
const GatewayLabel = "strait.dev/gateway"

// fieldManager owns what straitctl applies.
const fieldManager = "straitctl"

// JoinOptions say how to join.
type JoinOptions struct {
	ClusterID   string
	CableDriver v1.CableDriver
	// GatewayNodes are the nodes to label as gateways; empty keeps the
	// nodes already labelled.
	GatewayNodes []string
	// PodCIDRs and ServiceCIDRs override discovery.
	PodCIDRs, ServiceCIDRs []netip.Prefix
	ImageRepository        string
	ImageTag               string
	Log                    func(format string, args ...any)
}

// Join joins the cluster behind cfg to the broker in info. It is idempotent:
// joining again with the same options changes nothing, and with other
// options updates what they change.
func Join(ctx context.Context, cfg *rest.Config, info *broker.Info, o JoinOptions) error {
	logf := orDiscard(o.Log)
	if err := broker.ValidateClusterID(o.ClusterID); err != nil {
		return err
	}
	if o.CableDriver != v1.CableDriverWireGuard && o.CableDriver != v1.CableDriverVXLAN {
		return fmt.Errorf("cable driver %q: use wireguard or vxlan", o.CableDriver)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	kubeSystem, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reach the cluster: %w", err)
	}
	if err := checkClusterID(ctx, c, o.ClusterID); err != nil {
		return err
	}
	if len(o.PodCIDRs) == 0 {
		if o.PodCIDRs, err = DiscoverPodCIDRs(ctx, cs); err != nil {
			return err
		}
	}
	if len(o.ServiceCIDRs) == 0 {
		if o.ServiceCIDRs, err = DiscoverServiceCIDRs(ctx, cs); err != nil {
			return err
		}
	}
	logf("cluster %s: pod CIDRs %s, service CIDRs %s", o.ClusterID, cidr.Join(o.PodCIDRs), cidr.Join(o.ServiceCIDRs))
	gateways, err := gatewayNodes(ctx, cs, o.GatewayNodes)
	if err != nil {
		return err
	}

	var current string
	if creds, err := broker.ReadCredentials(ctx, cs, v1.ComponentNamespace, broker.SecretName); err == nil && creds.Info.APIServer == info.APIServer {
		current = creds.Token
	}
	token, err := broker.Enroll(ctx, info, broker.Member{
		ClusterID: o.ClusterID, ClusterUID: string(kubeSystem.UID),
		PodCIDRs: o.PodCIDRs, ServiceCIDRs: o.ServiceCIDRs, CurrentToken: current,
	})
	if err != nil {
		return err
	}
	logf("enrolled at the broker %s", info.APIServer)

	if err := crds.Install(ctx, cfg); err != nil {
		return err
	}
	prop := &aboutv1beta1.ClusterProperty{
		TypeMeta:   metav1.TypeMeta{APIVersion: aboutv1beta1.SchemeGroupVersion.String(), Kind: "ClusterProperty"},
		ObjectMeta: metav1.ObjectMeta{Name: v1.ClusterIDPropertyName},
		Spec:       aboutv1beta1.ClusterPropertySpec{Value: o.ClusterID},
	}
	propObj, err := toUnstructured(prop)
	if err != nil {
		return err
	}

	values := manifests.GatewayValues{
		Namespace: v1.ComponentNamespace, ClusterID: o.ClusterID,
		PodCIDRs: cidr.Join(o.PodCIDRs), ServiceCIDRs: cidr.Join(o.ServiceCIDRs), CableDriver: string(o.CableDriver),
		ImageRepository: o.ImageRepository, ImageTag: o.ImageTag,
	}
	objs, err := manifests.Render("gateway.yaml", values)
	if err != nil {
		return err
	}
	agent, err := manifests.Render("routeagent.yaml", values)
	if err != nil {
		return err
	}
	objs = append(objs, agent...)
	secret := broker.CredentialSecret(v1.ComponentNamespace, info, token)
	secret.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
	secretObj, err := toUnstructured(secret)
	if err != nil {
		return err
	}
	// The namespace comes first in objs; the credential and the cluster ID after.
	if err := applyAll(ctx, cfg, append(objs, secretObj, propObj)); err != nil {
		return err
	}
	if err := labelGateways(ctx, cs, gateways); err != nil {
		return err
	}
	logf("gateway nodes: %s", strings.Join(gateways, ", "))
	return nil
}

// checkClusterID refuses to give a cluster that already has an ID another one.
func checkClusterID(ctx context.Context, c client.Client, id string) error {
	prop := &aboutv1beta1.ClusterProperty{}
	err := c.Get(ctx, client.ObjectKey{Name: v1.ClusterIDPropertyName}, prop)
	switch {
	case err == nil && prop.Spec.Value != id:
		return fmt.Errorf("this cluster already has the cluster ID %q (ClusterProperty %s); run straitctl leave first to change it", prop.Spec.Value, v1.ClusterIDPropertyName)
	case err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err):
		return fmt.Errorf("read ClusterProperty %s: %w", v1.ClusterIDPropertyName, err)
	}
	return nil
}

var clusterCIDRFlag = regexp.MustCompile(`--cluster-cidr=(\S+)`)

// DiscoverPodCIDRs finds the cluster's pod CIDRs: from the --cluster-cidr
// flag of a kube-controller-manager or kube-proxy pod (kubeadm-style
// clusters), else the nodes' spec.podCIDRs.
func DiscoverPodCIDRs(ctx context.Context, cs kubernetes.Interface) ([]netip.Prefix, error) {
	pods, err := cs.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, p := range pods.Items {
			for _, ctr := range p.Spec.Containers {
				m := clusterCIDRFlag.FindStringSubmatch(strings.Join(append(ctr.Command, ctr.Args...), " "))
				if m == nil {
					continue
				}
				if out, err := cidr.ParseList(m[1]); err == nil && len(out) > 0 {
					return out, nil
				}
			}
		}
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("discover pod CIDRs: %w", err)
	}
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, n := range nodes.Items {
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, s := range cidrs {
			if p, err := netip.ParsePrefix(s); err == nil && !seen[p.Masked()] {
				seen[p.Masked()] = true
				out = append(out, p.Masked())
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("could not discover the pod CIDRs (no --cluster-cidr flag in kube-system, no node spec.podCIDR): give them with --pod-cidr")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// DiscoverServiceCIDRs reads the cluster's service CIDRs from the ServiceCIDR
// API (networking.k8s.io/v1).
func DiscoverServiceCIDRs(ctx context.Context, cs kubernetes.Interface) ([]netip.Prefix, error) {
	list, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("discover service CIDRs through the ServiceCIDR API: %w (give them with --service-cidr)", err)
	}
	var out []netip.Prefix
	for _, sc := range list.Items {
		for _, s := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the cluster has no ServiceCIDR objects: give the service CIDRs with --service-cidr")
	}
	return out, nil
}

// gatewayNodes checks the named nodes, or finds the already labelled ones.
func gatewayNodes(ctx context.Context, cs kubernetes.Interface, names []string) ([]string, error) {
	if len(names) == 0 {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: GatewayLabel + "=true"})
		if err != nil {
			return nil, err
		}
		for _, n := range nodes.Items {
			names = append(names, n.Name)
		}
		if len(names) == 0 {
			return nil, errors.New("no gateway nodes: name them with --gateway-nodes (two give the cluster a standby)")
		}
	}
	for _, n := range names {
		if _, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("gateway node %s: %w", n, err)
		}
	}
	sort.Strings(names)
	return names, nil
}

// labelGateways labels exactly the given nodes as gateways.
func labelGateways(ctx context.Context, cs kubernetes.Interface, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		has := n.Labels[GatewayLabel] == "true"
		var patch string
		switch {
		case want[n.Name] && !has:
			patch = fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, GatewayLabel)
		case !want[n.Name] && has:
			patch = fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, GatewayLabel)
		default:
			continue
		}
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("label node %s: %w", n.Name, err)
		}
	}
	return nil
}

// applyAll server-side applies objects in order.
func applyAll(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		data, err := u.MarshalJSON()
		if err != nil {
			return err
		}
		if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: ptrTrue()}); err != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, u.GetName(), err)
		}
	}
	return nil
}

func ptrTrue() *bool { t := true; return &t }

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

// LeaveOptions say how to leave.
type LeaveOptions struct {
	Log func(format string, args ...any)
}

// Leave removes the cluster from its broker and removes everything join
// made in it. The gateway pods go first, so that they remove their node
// state; the broker records go with the member's own credential.
func Leave(ctx context.Context, cfg *rest.Config, o LeaveOptions) error {
	logf := orDiscard(o.Log)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	prop := &aboutv1beta1.ClusterProperty{}
	if err := c.Get(ctx, client.ObjectKey{Name: v1.ClusterIDPropertyName}, prop); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return errors.New("this cluster has not joined a broker (no ClusterProperty cluster.clusterset.k8s.io)")
		}
		return err
	}
	id := prop.Spec.Value
	ns := v1.ComponentNamespace

	// Gateways and route agents first: they clean their node state as they
	// stop (a route agent does so only when its DaemonSet is going).
	policy := metav1.DeletePropagationForeground
	for _, ds := range []struct{ name, component string }{{"strait-gateway", "gateway"}, {"strait-routeagent", "routeagent"}} {
		err = cs.AppsV1().DaemonSets(ns).Delete(ctx, ds.name, metav1.DeleteOptions{PropagationPolicy: &policy})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove the %s DaemonSet: %w", ds.component, err)
		}
	}
	for _, component := range []string{"gateway", "routeagent"} {
		if err := waitGone(ctx, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=" + component})
			return err == nil && len(pods.Items) == 0, nil
		}); err != nil {
			return fmt.Errorf("wait for the %s pods to stop: %w", component, err)
		}
	}
	logf("gateways and route agents stopped")

	if creds, err := broker.ReadCredentials(ctx, cs, ns, broker.SecretName); err == nil {
		if err := broker.Leave(ctx, creds.Info.RESTConfig(creds.Token), creds.Info.Namespace, id); err != nil {
			return fmt.Errorf("remove %s from the broker: %w", id, err)
		}
		logf("removed %s from the broker", id)
	} else if !apierrors.IsNotFound(err) {
		return err
	}

	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: GatewayLabel})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, GatewayLabel)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
	}
	for _, del := range []func() error{
		func() error {
			return cs.RbacV1().ClusterRoleBindings().Delete(ctx, "strait-gateway", metav1.DeleteOptions{})
		},
		func() error { return cs.RbacV1().ClusterRoles().Delete(ctx, "strait-gateway", metav1.DeleteOptions{}) },
		func() error {
			return cs.RbacV1().ClusterRoleBindings().Delete(ctx, "strait-routeagent", metav1.DeleteOptions{})
		},
		func() error {
			return cs.RbacV1().ClusterRoles().Delete(ctx, "strait-routeagent", metav1.DeleteOptions{})
		},
		func() error { return cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) },
		func() error { return c.Delete(ctx, prop) },
	} {
		if err := del(); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if err := waitGone(ctx, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		return fmt.Errorf("wait for namespace %s to go: %w", ns, err)
	}
	// The CRDs stay where the cluster also hosts a broker: removing them would
	// remove the broker's records.
	if _, err := cs.CoreV1().Namespaces().Get(ctx, v1.BrokerNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if err := crds.Uninstall(ctx, cfg); err != nil {
			return err
		}
	} else {
		logf("kept the CRDs: this cluster hosts the broker")
	}
	logf("cluster %s left", id)
	return nil
}

func waitGone(ctx context.Context, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, cond)
}

// orDiscard returns logf, or a logger that drops everything.
func orDiscard(logf func(string, ...any)) func(string, ...any) {
	if logf == nil {
		return func(string, ...any) {}
	}
	return logf
}
