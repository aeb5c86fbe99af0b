// Package member joins a cluster to a Strait broker and removes it again:
// the library under "straitctl join" and "straitctl leave".
//
// Join writes every object through pkg/kubeapply (server-side apply, field
// manager kubeapply.FieldManagerCLI): Strait's CRDs (the crds/ of its Helm
// chart, deploy/charts/strait), the strait-system namespace, what
// deploy/manifests renders from the chart through Helm's Go SDK (RBAC, the
// gateway and route agent DaemonSets, the Lighthouse and strait-dns
// Deployments, strait-dns's Service, the ClusterProperty with the cluster
// ID) and the member's broker credential Secret. The one object it edits without owning it is the
// cluster's CoreDNS Corefile (ConfigMap kube-system/coredns), where it adds
// a marked block that forwards clusterset.local to strait-dns (pkg/corefile);
// Leave removes that block and nothing else of it. Leave renders the same
// chart again, with the values read back from the cluster, and deletes
// those objects in reverse order: it keeps no list of names of its own. Of
// what it did not render, it deletes only what Lighthouse made, the objects
// labelled v1.LighthouseManagedLabel.
//
// EnrolOnly ("straitctl join --enrol-only") is what helm install of the
// chart needs first, for a cluster Helm installs: the enrolment, the
// namespace and the broker credential Secret, the gateway labels, and the
// chart's values join would render with. Leave removes such a cluster too.
package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	"strait.dev/strait/deploy/crds"
	"strait.dev/strait/deploy/manifests"
	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
	"strait.dev/strait/pkg/cidr"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/scheme"
)

// GatewayLabel marks the nodes the gateway engine runs on.
const GatewayLabel = v1.GatewayNodeLabel

const (
	// leavePollInterval is how often Leave looks whether what it deleted is
	// gone: often enough to add little to a leave that takes seconds.
	leavePollInterval = 500 * time.Millisecond
	// leaveWaitTimeout bounds each of Leave's waits: for the gateway, route
	// agent and Lighthouse pods to stop (a grace period of 10 s, and the
	// removal of their node state), for the namespace to be emptied, for the
	// CRDs to go with their objects. It only turns a stuck cluster into an
	// error.
	leaveWaitTimeout = 2 * time.Minute
	// DefaultBrokerTimeout bounds all of Leave's talk with the broker, and a
	// failed join's undoing of its enrolment: a handful of requests that take
	// well under a second each on a broker that answers. A frozen or
	// unreachable broker costs a leave this much and no more.
	DefaultBrokerTimeout = 30 * time.Second
	// keptCredentialAnnotation marks the broker credential Secret that Leave
	// keeps after it could not remove the cluster's records at the broker;
	// its value is the cluster ID, which the next leave needs to retry.
	keptCredentialAnnotation = "strait.dev/leave-pending-cluster-id"
	// enrolledClusterAnnotation marks the broker credential Secret that
	// EnrolOnly writes; its value is the cluster ID, which Leave needs to
	// remove the enrolment of a cluster the chart was never installed in
	// (or was uninstalled from: no ClusterProperty tells the ID then).
	enrolledClusterAnnotation = "strait.dev/enrolled-cluster-id"
)

// The range of JoinOptions.UnderlayMTU, in bytes: IPv4's minimum datagram
// every host must accept (RFC 791), which straitctl diagnose's MTU search
// also ends at, and the largest IP packet.
const (
	MinUnderlayMTU = 576
	MaxUnderlayMTU = 65535
)

// JoinOptions say how to join.
type JoinOptions struct {
	// ClusterID is the cluster's ID in the clusterset, an RFC 1123 label.
	ClusterID string
	// CableDriver is the driver of the gateways' cables.
	CableDriver v1.CableDriver
	// GatewayNodes are the nodes to label as gateways; empty keeps the
	// nodes already labelled.
	GatewayNodes []string
	// PodCIDRs and ServiceCIDRs override discovery.
	PodCIDRs, ServiceCIDRs []netip.Prefix
	// Globalnet asks the broker for a global CIDR (docs/globalnet.md): of
	// GlobalCIDRSize addresses (0: broker.DefaultGlobalCIDRSize), or
	// GlobalCIDR when it is valid. A cluster that holds one keeps it; one
	// that joins again without Globalnet gives it back.
	Globalnet      bool
	GlobalCIDRSize int
	GlobalCIDR     netip.Prefix
	// UnderlayMTU is the MTU of the node network the cables run over, in
	// bytes, MinUnderlayMTU to MaxUnderlayMTU; 0 leaves the components'
	// default (1500). The gateways size the cables from it, the route
	// agents the overlay and the MSS clamp.
	UnderlayMTU int
	// ImageRepository and ImageTag name the components' images:
	// <ImageRepository>/strait-gateway:<ImageTag> and so on. Both are
	// required.
	ImageRepository, ImageTag string
	// Log receives progress lines for the user, printf-style; nil drops them.
	Log func(format string, args ...any)
}

// Join joins the cluster behind cfg to the broker in info.
//
// In order, it: refuses a cluster that already has another cluster ID;
// discovers the pod and service CIDRs unless given; refuses a cluster that
// holds the credential of another broker (another API server URL or
// namespace: leave first); asks the cluster (SelfSubjectAccessReview) whether
// cfg may create and patch everything join writes, and stops with the list of
// what it may not before touching the broker; enrols the cluster at the
// broker within DefaultBrokerTimeout (keeping the member's token from an
// earlier join while it is valid); applies Strait's CRDs, then the
// namespace, the chart's objects (manifests.RenderMember with the options,
// the ClusterProperty cluster.clusterset.k8s.io among them) and the broker
// credential Secret, all with server-side apply as
// kubeapply.FieldManagerCLI; makes the cluster's CoreDNS forward
// clusterset.local to strait-dns's Service (a marked block in the Corefile
// of kube-system/coredns, written with an optimistic Update, not applied:
// the ConfigMap is not Strait's; a cluster whose DNS is not such a CoreDNS,
// or whose Corefile already serves clusterset.local, is left alone and the
// log says what to add by hand); and labels exactly the gateway nodes with
// GatewayLabel. When a step after the enrolment fails and the broker did not
// enrol the cluster before, Join removes the enrolment again
// (broker.Unenroll with the join file's credential); the error says so if
// that fails too.
//
// It is idempotent: joining again with the same options changes no object,
// and with other options updates what they change (fields join no longer
// sets are removed, fields others set are kept).
//
// With o.Globalnet the broker allots the cluster's global CIDR at
// enrolment, and the gateway is rendered with it (GatewayValues.GlobalCIDR).
//
// Errors: an invalid cluster ID, cable driver or image; another broker's
// credential in the cluster; missing rights (one line listing them); a
// *broker.ConflictError (wrapped: use errors.As) when the broker refuses the
// cluster ID or CIDRs; broker.ErrPoolExhausted (wrapped) when the Globalnet
// pool has no free block of the size; otherwise the apiserver's errors, wrapped with what
// was being done (apierrors.IsForbidden and friends see through them).
func Join(ctx context.Context, cfg *rest.Config, info *broker.Info, o JoinOptions) (retErr error) {
	logf := orDiscard(o.Log)
	p, err := planJoin(ctx, cfg, info, o, modeJoin)
	if err != nil {
		return err
	}
	cs, c, o, values, objs, all := p.cs, p.c, p.o, p.values, p.objs, p.crds

	enrolment, undo, err := p.enrol(ctx, info)
	defer undo(&retErr)
	if err != nil {
		return err
	}
	token := enrolment.Token
	if o.Globalnet {
		values.GlobalCIDR = enrolment.GlobalCIDR.String()
		if objs, err = joinObjects(values, info, ""); err != nil {
			return err
		}
	}

	if err := kubeapply.ApplyCRDs(ctx, c, all, kubeapply.FieldManagerCLI); err != nil {
		return err
	}
	// The credential Secret, rendered above without a token, now gets it.
	for i, obj := range objs {
		if s, ok := obj.(*corev1.Secret); ok && s.Name == broker.SecretName {
			objs[i] = broker.CredentialSecret(v1.ComponentNamespace, info, token)
		}
	}
	if err := kubeapply.All(ctx, c, objs, kubeapply.FieldManagerCLI); err != nil {
		return err
	}
	servers, err := dnsServers(ctx, cs, v1.ComponentNamespace)
	if err != nil {
		return err
	}
	if err := addClusterDNSForward(ctx, cs, servers, logf); err != nil {
		return err
	}
	if err := labelGateways(ctx, cs, p.gateways); err != nil {
		return err
	}
	logf("gateway nodes: %s", strings.Join(p.gateways, ", "))
	return nil
}

// EnrolOnly enrols the cluster behind cfg at the broker in info and writes
// what Strait's Helm chart needs before helm install, and nothing of the
// chart: "straitctl join --enrol-only" (docs/helm.md, "helm install").
//
// It makes Join's checks and reads (planJoin: the cluster ID, the CIDRs
// unless given, the gateway nodes, another broker's credential), asks
// whether cfg may write what it writes (the namespace, the Secret, the node
// labels; not the CRDs or the CoreDNS Corefile), enrols the cluster as Join
// does (the member's token from an earlier join kept while valid; with
// o.Globalnet the global CIDR allotted, a block the cluster holds kept),
// then applies the namespace v1.ComponentNamespace and the broker
// credential Secret broker.SecretName with server-side apply as
// kubeapply.FieldManagerCLI, and labels exactly the gateway nodes with
// GatewayLabel (the chart's gateway.nodeSelector). It writes no CRD, no
// object of the chart and no CoreDNS forward.
//
// The Secret carries the cluster ID in the annotation
// enrolledClusterAnnotation, so that Leave can remove the enrolment of a
// cluster where the chart never got installed.
//
// It returns the values Join would render the chart with (the global CIDR
// the broker allotted among them): GatewayValues.Values of them, as a
// values file for helm install --namespace v1.ComponentNamespace, renders
// the objects Join applies. They hold no secret: the token is only in the
// Secret.
//
// A failure after the enrolment undoes it as Join's does; running it again
// with the same options changes nothing. Errors are Join's, less those of
// what it does not write.
func EnrolOnly(ctx context.Context, cfg *rest.Config, info *broker.Info, o JoinOptions) (_ manifests.GatewayValues, retErr error) {
	logf := orDiscard(o.Log)
	p, err := planJoin(ctx, cfg, info, o, modeEnrolOnly)
	if err != nil {
		return manifests.GatewayValues{}, err
	}
	enrolment, undo, err := p.enrol(ctx, info)
	defer undo(&retErr)
	if err != nil {
		return manifests.GatewayValues{}, err
	}
	values := p.values
	if p.o.Globalnet {
		values.GlobalCIDR = enrolment.GlobalCIDR.String()
	}
	secret := broker.CredentialSecret(values.Namespace, info, enrolment.Token)
	secret.Annotations = map[string]string{enrolledClusterAnnotation: p.o.ClusterID}
	objs := []client.Object{componentNamespace(values.Namespace), secret}
	if err := kubeapply.All(ctx, p.c, objs, kubeapply.FieldManagerCLI); err != nil {
		return manifests.GatewayValues{}, err
	}
	logf("wrote the broker credential, Secret %s/%s", values.Namespace, broker.SecretName)
	if err := labelGateways(ctx, p.cs, p.gateways); err != nil {
		return manifests.GatewayValues{}, err
	}
	logf("gateway nodes: %s", strings.Join(p.gateways, ", "))
	return values, nil
}

// enrol enrols p's cluster at the broker in info within
// DefaultBrokerTimeout, keeping the member's token from an earlier join
// while it is valid. Its caller defers undo(&err) whatever enrol returns:
// when the broker did not hold the cluster before, undo removes the
// enrolment again if *err is set (a failed join must not leave records
// behind), and adds to *err when that fails too; an enrolment an earlier
// join made is never undone, that cluster is a working member.
func (p *joinPlan) enrol(ctx context.Context, info *broker.Info) (_ *broker.Enrolment, undo func(*error), _ error) {
	logf := orDiscard(p.o.Log)
	undo = func(*error) {}
	// A frozen broker must not hang join.
	bctx, cancel := context.WithTimeout(ctx, DefaultBrokerTimeout)
	defer cancel()
	enrolledBefore, err := broker.Enrolled(bctx, info, p.o.ClusterID)
	if err != nil {
		return nil, undo, fmt.Errorf("ask the broker %s: %w", info.APIServer, err)
	}
	if !enrolledBefore {
		undo = func(retErr *error) {
			if *retErr == nil {
				return
			}
			if err := undoEnrolment(ctx, info, p.o.ClusterID); err != nil {
				*retErr = fmt.Errorf("%w; undoing the enrolment at the broker failed too (%v): run straitctl cleanup-broker --namespace %s --clusterid %s with the broker cluster's kubeconfig", *retErr, err, info.Namespace, p.o.ClusterID)
				return
			}
			logf("undid the enrolment of %s at the broker %s", p.o.ClusterID, info.APIServer)
		}
	}
	enrolment, err := broker.EnrollMember(bctx, info, broker.Member{
		ClusterID: p.o.ClusterID, ClusterUID: string(p.kubeSystem.UID),
		PodCIDRs: p.o.PodCIDRs, ServiceCIDRs: p.o.ServiceCIDRs, CurrentToken: p.current,
		Globalnet: p.o.Globalnet, GlobalCIDRSize: p.o.GlobalCIDRSize, GlobalCIDR: p.o.GlobalCIDR,
	})
	if err != nil {
		return nil, undo, fmt.Errorf("enrol at the broker %s: %w", info.APIServer, err)
	}
	logf("enrolled at the broker %s", info.APIServer)
	if p.o.Globalnet {
		logf("global CIDR %s", enrolment.GlobalCIDR)
	}
	return enrolment, undo, nil
}

// joinMode is what planJoin plans for.
type joinMode int

const (
	// modeJoin is Join's plan: everything join writes.
	modeJoin joinMode = iota
	// modeDryRun is DryRun's: nothing is written and the broker is not
	// asked, so a Globalnet join renders with a global CIDR it can name.
	modeDryRun
	// modeEnrolOnly is EnrolOnly's: the namespace, the broker credential
	// and the node labels, no CRD, no chart object, no CoreDNS forward.
	modeEnrolOnly
)

// joinPlan is what Join, DryRun and EnrolOnly work out before they write anything.
type joinPlan struct {
	cs         kubernetes.Interface
	c          client.Client
	o          JoinOptions // with the discovered CIDRs
	kubeSystem *corev1.Namespace
	gateways   []string // sorted
	current    string   // the member's broker token from an earlier join, or ""
	values     manifests.GatewayValues
	objs       []client.Object // joinObjects, without the token
	crds       []*apiextv1.CustomResourceDefinition
}

// planJoin checks o, reads what Join needs from the member cluster
// (kube-system, the ClusterProperty, the CIDRs unless given, the gateway
// nodes, the broker credential Secret), renders the objects and asks
// whether cfg may write them. It writes nothing (a SelfSubjectAccessReview
// is a question, not an object) and does not talk to the broker. In
// modeDryRun, the global CIDR of a Globalnet join is o.GlobalCIDR or the one
// the cluster's gateway runs with; otherwise a placeholder the broker's
// allotment replaces. In modeEnrolOnly, objs are only the namespace and the
// broker credential Secret, there are no CRDs, and the rights asked for are
// those EnrolOnly needs.
func planJoin(ctx context.Context, cfg *rest.Config, info *broker.Info, o JoinOptions, mode joinMode) (*joinPlan, error) {
	logf := orDiscard(o.Log)
	if err := broker.ValidateClusterID(o.ClusterID); err != nil {
		return nil, err
	}
	if _, err := cabledriver.Get(o.CableDriver); err != nil {
		return nil, err
	}
	if o.ImageRepository == "" || o.ImageTag == "" {
		return nil, errors.New("the image repository and tag are required")
	}
	if o.UnderlayMTU != 0 && (o.UnderlayMTU < MinUnderlayMTU || o.UnderlayMTU > MaxUnderlayMTU) {
		return nil, fmt.Errorf("underlay MTU %d: want %d to %d bytes", o.UnderlayMTU, MinUnderlayMTU, MaxUnderlayMTU)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster client: %w", err)
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	kubeSystem, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reach the cluster: %w", err)
	}
	if err := checkClusterID(ctx, c, o.ClusterID); err != nil {
		return nil, err
	}
	if len(o.PodCIDRs) == 0 {
		if o.PodCIDRs, err = DiscoverPodCIDRs(ctx, cs); err != nil {
			return nil, err
		}
	}
	if len(o.ServiceCIDRs) == 0 {
		if o.ServiceCIDRs, err = DiscoverServiceCIDRs(ctx, cs); err != nil {
			return nil, err
		}
	}
	logf("cluster %s: pod CIDRs %s, service CIDRs %s", o.ClusterID, cidr.Join(o.PodCIDRs), cidr.Join(o.ServiceCIDRs))
	if o.Globalnet {
		if err := globalnetFamilies(o.PodCIDRs, o.ServiceCIDRs); err != nil {
			return nil, err
		}
	}
	gateways, err := gatewayNodes(ctx, cs, o.GatewayNodes)
	if err != nil {
		return nil, err
	}

	current, err := currentBrokerToken(ctx, cs, info)
	if err != nil {
		return nil, err
	}
	values := manifests.GatewayValues{
		Namespace: v1.ComponentNamespace, ClusterID: o.ClusterID,
		PodCIDRs: cidr.Join(o.PodCIDRs), ServiceCIDRs: cidr.Join(o.ServiceCIDRs), CableDriver: string(o.CableDriver),
		ImageRepository: o.ImageRepository, ImageTag: o.ImageTag, BrokerSecretName: broker.SecretName,
	}
	if o.UnderlayMTU != 0 {
		values.UnderlayMTU = strconv.Itoa(o.UnderlayMTU)
	}
	switch {
	case o.Globalnet && mode == modeDryRun:
		if values.GlobalCIDR, err = dryRunGlobalCIDR(ctx, c, o); err != nil {
			return nil, err
		}
	case o.Globalnet:
		// The broker allots the real one at enrolment; what join writes,
		// and so the rights it needs, depend only on there being one.
		values.GlobalCIDR = broker.DefaultGlobalnetCIDR.String()
	}
	var objs []client.Object
	var all []*apiextv1.CustomResourceDefinition
	if mode == modeEnrolOnly {
		objs = []client.Object{componentNamespace(values.Namespace), broker.CredentialSecret(values.Namespace, info, "")}
	} else {
		if objs, err = joinObjects(values, info, ""); err != nil {
			return nil, err
		}
		if all, err = crds.All(); err != nil {
			return nil, err
		}
	}
	if err := checkJoinRights(ctx, cs, c, objs, all, mode != modeEnrolOnly); err != nil {
		return nil, err
	}
	return &joinPlan{cs: cs, c: c, o: o, kubeSystem: kubeSystem, gateways: gateways, current: current, values: values, objs: objs, crds: all}, nil
}

// dryRunGlobalCIDR is the global CIDR a dry run of a Globalnet join renders
// with, without asking the broker: o.GlobalCIDR, else the one the cluster's
// gateway DaemonSet runs with (the broker keeps a member's block when it
// joins again).
func dryRunGlobalCIDR(ctx context.Context, c client.Client, o JoinOptions) (string, error) {
	if o.GlobalCIDR.IsValid() {
		return o.GlobalCIDR.String(), nil
	}
	ds := &appsv1.DaemonSet{}
	err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, ds)
	if err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("read DaemonSet %s/strait-gateway: %w", v1.ComponentNamespace, err)
	}
	if err == nil {
		if v, err := manifests.ReadValues(ds); err == nil && v.GlobalCIDR != "" {
			return v.GlobalCIDR, nil
		}
	}
	return "", errors.New("--dry-run --globalnet: the broker allots the global CIDR when the cluster enrols, and this cluster holds none yet: name one with --globalnet-cidr")
}

// DryRun returns the objects Join would apply with o, in its order: the
// CRDs, the component namespace, what the chart renders
// (manifests.RenderMember), and the broker credential Secret without its
// token (the broker gives the token at enrolment; an earlier one is never
// printed). It makes the same reads and checks as Join in the member
// cluster (planJoin) and writes nothing there; it does not talk to the
// broker at all, so a Globalnet join needs o.GlobalCIDR or a global CIDR
// the cluster already runs with. Not applied: the CoreDNS forward and the
// gateway node labels, which Join edits in place. Errors are Join's before
// its enrolment.
func DryRun(ctx context.Context, cfg *rest.Config, info *broker.Info, o JoinOptions) ([]client.Object, error) {
	p, err := planJoin(ctx, cfg, info, o, modeDryRun)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(p.crds)+len(p.objs))
	for _, crd := range p.crds {
		crd.SetGroupVersionKind(crdGVK)
		out = append(out, crd)
	}
	for _, obj := range p.objs {
		if s, ok := obj.(*corev1.Secret); ok && s.Name == broker.SecretName {
			delete(s.Data, broker.SecretKeyToken)
		}
		gvk, err := kindOf(p.c, obj)
		if err != nil {
			return nil, err
		}
		obj.GetObjectKind().SetGroupVersionKind(gvk)
		out = append(out, obj)
	}
	return out, nil
}

// currentBrokerToken returns the member's token from an earlier join with
// the broker in info, or "" when the cluster holds no broker credential (or
// one too damaged to read: join writes it again). It refuses a cluster that
// holds the credential of another broker: joining it here would leave its
// records at the other broker, where its peers still find them.
func currentBrokerToken(ctx context.Context, cs kubernetes.Interface, info *broker.Info) (string, error) {
	creds, err := broker.ReadCredentials(ctx, cs, v1.ComponentNamespace, broker.SecretName)
	var status apierrors.APIStatus
	switch {
	case err == nil:
	case apierrors.IsNotFound(err), !errors.As(err, &status):
		return "", nil
	default:
		return "", fmt.Errorf("read the broker credential: %w", err)
	}
	if creds.Info.APIServer != info.APIServer || creds.Info.Namespace != info.Namespace {
		return "", fmt.Errorf("this cluster is joined to the broker %s (namespace %s), not to the broker %s (namespace %s) of this join file: run straitctl leave first",
			creds.Info.APIServer, creds.Info.Namespace, info.APIServer, info.Namespace)
	}
	return creds.Token, nil
}

// undoEnrolment removes what a failed join enrolled at the broker, with the
// join file's enrolment credential, within DefaultBrokerTimeout even when
// ctx is already cancelled (a join interrupted by the user is undone too).
func undoEnrolment(ctx context.Context, info *broker.Info, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultBrokerTimeout)
	defer cancel()
	cfg := info.RESTConfig(info.Token)
	cfg.Timeout = DefaultBrokerTimeout
	return broker.Unenroll(ctx, cfg, info.Namespace, id)
}

// access is one right join needs in the member cluster, as "kubectl auth
// can-i" asks it.
type access struct{ verb, group, resource, namespace, name string }

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.name != "" {
		r += "/" + a.name
	}
	if a.namespace != "" {
		return a.verb + " " + r + " in " + a.namespace
	}
	return a.verb + " " + r
}

// checkJoinRights asks the member cluster (SelfSubjectAccessReview, as
// "kubectl auth can-i" does) whether cfg's user may do everything join
// does there: apply (create and patch) the CRDs of all (when there are
// any) and every object of objs, read the broker credential, edit the
// cluster's CoreDNS Corefile (when coreDNS), and label nodes. It runs
// before join touches the broker, so that a kubeconfig lacking rights
// leaves no enrolment behind. The error lists every missing right in one
// line.
func checkJoinRights(ctx context.Context, cs kubernetes.Interface, c client.Client, objs []client.Object, all []*apiextv1.CustomResourceDefinition, coreDNS bool) error {
	plural := map[schema.GroupKind]string{}
	for _, crd := range all {
		plural[schema.GroupKind{Group: crd.Spec.Group, Kind: crd.Spec.Names.Kind}] = crd.Spec.Names.Plural
	}
	var wants []access
	if len(all) > 0 {
		wants = append(wants,
			access{verb: "create", group: apiextv1.GroupName, resource: "customresourcedefinitions"},
			access{verb: "patch", group: apiextv1.GroupName, resource: "customresourcedefinitions"})
	}
	wants = append(wants, access{verb: "get", resource: "secrets", namespace: v1.ComponentNamespace, name: broker.SecretName})
	if coreDNS {
		wants = append(wants,
			access{verb: "get", resource: "configmaps", namespace: metav1.NamespaceSystem, name: "coredns"},
			access{verb: "update", resource: "configmaps", namespace: metav1.NamespaceSystem, name: "coredns"})
	}
	wants = append(wants, access{verb: "list", resource: "nodes"}, access{verb: "patch", resource: "nodes"})
	for _, obj := range objs {
		gvk, err := kindOf(c, obj)
		if err != nil {
			return err
		}
		resource, ok := plural[gvk.GroupKind()]
		if !ok {
			m, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return fmt.Errorf("resource of %s: %w", gvk.Kind, err)
			}
			resource = m.Resource.Resource
		}
		for _, verb := range []string{"create", "patch"} {
			wants = append(wants, access{verb: verb, group: gvk.Group, resource: resource, namespace: obj.GetNamespace()})
		}
	}
	var missing []string
	seen := map[access]bool{}
	for _, a := range wants {
		if seen[a] {
			continue
		}
		seen[a] = true
		review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace, Name: a.name,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check the rights join needs (%s): %w", a, err)
		}
		if !review.Status.Allowed {
			missing = append(missing, a.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing rights in the cluster, nothing was changed (join needs cluster-admin-like rights): cannot %s", strings.Join(missing, ", "))
	}
	return nil
}

// newClient returns a client of cfg's cluster for Strait's scheme. Its
// RESTMapper is controller-runtime's dynamic one, which looks a kind up when
// first asked: the CRD kinds Join applies need not exist when it is made.
func newClient(cfg *rest.Config) (client.Client, error) {
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("cluster client: %w", err)
	}
	return c, nil
}

// joinObjects are the objects join applies after the CRDs, in order: the
// component namespace, what the chart renders with values
// (manifests.RenderMember: RBAC, the components, the ClusterProperty with
// the cluster ID), and the broker credential Secret. The namespace and the
// Secret are join's own, not the chart's: helm install needs them before it
// starts (docs/helm.md). Leave renders them again to know what to delete;
// for that, only their kinds, namespaces and names matter, so info and
// token may be empty.
func joinObjects(values manifests.GatewayValues, info *broker.Info, token string) ([]client.Object, error) {
	rendered, err := manifests.RenderMember(values)
	if err != nil {
		return nil, err
	}
	objs := make([]client.Object, 0, len(rendered)+2)
	objs = append(objs, componentNamespace(values.Namespace))
	for _, u := range rendered {
		objs = append(objs, u)
	}
	return append(objs, broker.CredentialSecret(values.Namespace, info, token)), nil
}

// componentNamespace is the namespace Strait's components run in, as join
// makes it.
func componentNamespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "strait"}}}
}

// checkClusterID refuses to give a cluster that already has an ID another
// one. The error says how to change it.
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

// DiscoverPodCIDRs finds the cluster's pod CIDRs, masked and without
// duplicates: from the --cluster-cidr flag of a kube-controller-manager or
// kube-proxy pod (kubeadm-style clusters), else the nodes' spec.podCIDRs,
// sorted. It fails when neither gives any, saying to use --pod-cidr.
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

// DiscoverServiceCIDRs reads the cluster's service CIDRs, masked, from the
// ServiceCIDR API (networking.k8s.io/v1). It fails when the API is missing
// or empty, saying to use --service-cidr.
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

// gatewayNodes checks that the named nodes exist, or finds the already
// labelled ones when none are named, and returns them sorted.
func gatewayNodes(ctx context.Context, cs kubernetes.Interface, names []string) ([]string, error) {
	if len(names) == 0 {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: GatewayLabel + "=true"})
		if err != nil {
			return nil, fmt.Errorf("list gateway nodes: %w", err)
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
	names = slices.Clone(names)
	sort.Strings(names)
	return names, nil
}

// labelGateways labels exactly the given nodes as gateways.
//
// Nodes are not Strait's objects, and the label may have been set by hand or
// by an older straitctl: a JSON merge patch of that one label adds or removes
// it whoever set it, and, unlike an apply, cannot create a Node that was
// deleted in the meantime.
func labelGateways(ctx context.Context, cs kubernetes.Interface, names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		has := n.Labels[GatewayLabel] == "true"
		switch {
		case want[n.Name] && !has:
			err = patchGatewayLabel(ctx, cs, n.Name, true)
		case !want[n.Name] && has:
			err = patchGatewayLabel(ctx, cs, n.Name, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// patchGatewayLabel sets GatewayLabel=true on a node, or removes it.
func patchGatewayLabel(ctx context.Context, cs kubernetes.Interface, node string, set bool) error {
	var value any // JSON null removes the label
	if set {
		value = "true"
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{GatewayLabel: value}}})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: kubeapply.FieldManagerCLI}); err != nil {
		return fmt.Errorf("label node %s: %w", node, err)
	}
	return nil
}

// LeaveOptions say how to leave.
type LeaveOptions struct {
	// Purge also removes the CRDs that hold users' objects or may be shared
	// with other software: the multicluster.x-k8s.io CRDs (ServiceExport,
	// ServiceImport) and about.k8s.io's ClusterProperty, with every object
	// of their kinds (every ServiceExport app teams made). Never when the
	// cluster hosts a broker.
	Purge bool
	// BrokerTimeout bounds Leave's talk with the broker; 0 means
	// DefaultBrokerTimeout.
	BrokerTimeout time.Duration
	// Log receives progress lines for the user, printf-style; nil drops them.
	Log func(format string, args ...any)
}

// BrokerRecordsError says that Leave removed the cluster from its own
// cluster but could not remove its records and credential at the broker
// (the broker was frozen, unreachable, or refused the member's
// credential). Its message is one line naming the cluster, the broker and
// the command that removes them from the broker side.
type BrokerRecordsError struct {
	ClusterID string
	// APIServer and Namespace name the broker.
	APIServer, Namespace string
	// Kept says that the member's broker credential is kept, alone, in
	// Secret strait-system/strait-broker, so that running leave again
	// retries. A credential the broker refused is not kept: it can remove
	// nothing.
	Kept bool
	// Err is why the removal failed.
	Err error
}

func (e *BrokerRecordsError) Error() string {
	again := ""
	if e.Kept {
		again = fmt.Sprintf("run straitctl leave again once the broker answers (the credential is kept in Secret %s/%s for that), or ", v1.ComponentNamespace, broker.SecretName)
	}
	why := oneLine(e.Err)
	return fmt.Sprintf("the cluster left, but the records of cluster %s at the broker %s (namespace %s) could not be removed (%s): %son the broker cluster run straitctl cleanup-broker --kubeconfig <broker cluster's kubeconfig> --namespace %s --clusterid %s",
		e.ClusterID, e.APIServer, e.Namespace, why, again, e.Namespace, e.ClusterID)
}

func (e *BrokerRecordsError) Unwrap() error { return e.Err }

// oneLine is err's message on one line: the broker's errors may be joined
// on several (errors.Join).
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// Leave removes the cluster behind cfg from its broker and removes what join
// made in it, in this order:
//
//  1. The marked clusterset.local block from the Corefile of the cluster's
//     CoreDNS (kube-system/coredns), first, while strait-dns still answers
//     and before its Service goes; a cluster without that ConfigMap or
//     block has nothing to remove.
//  2. The strait-dns and Lighthouse Deployments and the gateway and route
//     agent DaemonSets, with foreground propagation, and Leave waits until
//     their pods are gone: the gateways and route agents remove their node
//     state as they stop (a route agent does so only when its DaemonSet is
//     going), and a Lighthouse agent still running would make again what
//     step 3 deletes, as a gateway still running would publish again the
//     records step 4 deletes at the broker.
//  3. What Lighthouse made in the application namespaces: every
//     ServiceImport, Service and EndpointSlice labelled
//     v1.LighthouseManagedLabel=true, in every namespace. ServiceExports are
//     the users' and stay.
//  4. The cluster's records and credential at the broker, with the member's
//     own credential (the broker Secret), within o.BrokerTimeout. A broker
//     that does not answer in time, cannot be reached or refuses the
//     credential does not stop Leave: it goes on, and returns a
//     *BrokerRecordsError at the end.
//  5. GatewayLabel on every node.
//  6. The other objects join applied (strait-dns's Service among them), in
//     reverse order, then the namespace (Leave waits until it is gone) and
//     the ClusterProperty. When step 4 failed with a credential the broker
//     did not refuse, the credential Secret alone is kept (made again in a
//     new strait-system namespace, annotated with the cluster ID), so that
//     running Leave again retries step 4 and then removes it; join with the
//     same broker reuses it, join with another is refused until then.
//  7. Strait's CRDs of group strait.dev, unless the cluster hosts a broker
//     (a namespace deploy-broker labelled broker.HostLabel), and except a
//     CRD that still has objects. The multicluster.x-k8s.io and about.k8s.io
//     CRDs stay unless o.Purge: they hold users' objects (ServiceExports)
//     and may be someone else's; Leave logs what it kept and why.
//
// What is deleted is what the manifests render with the values read back
// from the DaemonSets in the cluster (manifests.ReadValues), and what carries
// Lighthouse's label, so Leave deletes nothing join or Lighthouse did not
// make, and never a user's object. An object already gone counts as deleted,
// so Leave can be run again after a failure.
//
// Errors: the cluster has no ClusterProperty cluster.clusterset.k8s.io and
// no kept broker credential (it has not joined); a *BrokerRecordsError
// (errors.As) when only the broker's records are left; a wait that timed
// out; otherwise the apiserver's errors, wrapped with what was being done.
func Leave(ctx context.Context, cfg *rest.Config, o LeaveOptions) error {
	logf := orDiscard(o.Log)
	if o.BrokerTimeout <= 0 {
		o.BrokerTimeout = DefaultBrokerTimeout
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("cluster client: %w", err)
	}
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	prop := &aboutv1beta1.ClusterProperty{}
	if err := c.Get(ctx, client.ObjectKey{Name: v1.ClusterIDPropertyName}, prop); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return leaveKeptCredential(ctx, c, cs, o, logf)
		}
		return fmt.Errorf("read ClusterProperty %s: %w", v1.ClusterIDPropertyName, err)
	}
	id := prop.Spec.Value
	values, err := joinedValues(ctx, c, id)
	if err != nil {
		return err
	}
	objs, err := joinObjects(values, &broker.Info{}, "")
	if err != nil {
		return err
	}
	var workloads, rest []client.Object
	var namespace client.Object
	for _, obj := range objs {
		gvk, err := kindOf(c, obj)
		if err != nil {
			return err
		}
		switch gvk.Kind {
		case "DaemonSet", "Deployment":
			workloads = append(workloads, obj)
		case "Namespace":
			namespace = obj
		case "ClusterProperty":
			// The one read above goes last.
		default:
			rest = append(rest, obj)
		}
	}

	// 1. The cluster DNS's forward to strait-dns.
	if err := removeClusterDNSForward(ctx, cs, logf); err != nil {
		return err
	}

	// 2. strait-dns, Lighthouse, gateways and route agents, and wait for
	// their pods.
	for _, w := range slices.Backward(workloads) {
		if err := kubeapply.Delete(ctx, c, w, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
			return err
		}
	}
	for _, w := range workloads {
		if err := waitPodsGone(ctx, c, w); err != nil {
			return err
		}
	}
	logf("strait-dns, Lighthouse, gateways and route agents stopped")

	// 3. What Lighthouse made in the application namespaces.
	if err := removeLighthouseObjects(ctx, c, logf); err != nil {
		return err
	}

	// 4. The broker's records, with the member's own credential; bounded,
	// and a failure is reported at the end.
	var creds *broker.Credentials
	var brokerErr *BrokerRecordsError
	switch creds, err = broker.ReadCredentials(ctx, cs, values.Namespace, broker.SecretName); {
	case err == nil:
		brokerErr = leaveBroker(ctx, creds, id, o.BrokerTimeout)
		if brokerErr == nil {
			logf("removed %s from the broker %s", id, creds.Info.APIServer)
		} else {
			logf("could not remove %s from the broker %s: %s", id, creds.Info.APIServer, oneLine(brokerErr.Err))
		}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("read the broker credential: %w", err)
	}

	// 5. The gateway labels.
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: GatewayLabel})
	if err != nil {
		return fmt.Errorf("list gateway nodes: %w", err)
	}
	for _, n := range nodes.Items {
		if err := patchGatewayLabel(ctx, cs, n.Name, false); err != nil {
			return err
		}
	}

	// 6. The rest, in reverse; the namespace and the cluster ID last; the
	// broker credential again, alone, if it is needed for a retry.
	if err := kubeapply.DeleteAll(ctx, c, rest); err != nil {
		return err
	}
	if namespace != nil {
		if err := kubeapply.Delete(ctx, c, namespace); err != nil {
			return err
		}
		if err := waitGone(ctx, c, namespace); err != nil {
			return err
		}
	}
	if brokerErr != nil && brokerErr.Kept {
		if err := keepCredential(ctx, c, values.Namespace, creds, id); err != nil {
			return fmt.Errorf("%w; keeping the credential for a retry failed too: %v", brokerErr, err)
		}
	}
	if err := kubeapply.Delete(ctx, c, prop); err != nil {
		return err
	}

	// 7. The CRDs.
	if err := removeCRDs(ctx, c, cs, o.Purge, logf); err != nil {
		return err
	}
	if brokerErr != nil {
		return brokerErr
	}
	logf("cluster %s left", id)
	return nil
}

// leaveBroker removes cluster id's records and credential at the broker
// with the member's own credential, within timeout. It returns nil, or what
// is left to do: Kept is set unless the broker refused the credential.
func leaveBroker(ctx context.Context, creds *broker.Credentials, id string, timeout time.Duration) *BrokerRecordsError {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := creds.Info.RESTConfig(creds.Token)
	// Each request gives up by itself too: a frozen apiserver may accept
	// the connection and never answer.
	cfg.Timeout = timeout
	err := broker.Leave(ctx, cfg, creds.Info.Namespace, id)
	if err == nil {
		return nil
	}
	refused := apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
	return &BrokerRecordsError{ClusterID: id, APIServer: creds.Info.APIServer, Namespace: creds.Info.Namespace, Kept: !refused, Err: err}
}

// keepCredential makes the broker credential Secret again, alone, in its
// namespace (made again too), annotated with the cluster ID: what the next
// Leave needs to retry the removal at the broker.
func keepCredential(ctx context.Context, c client.Client, namespace string, creds *broker.Credentials, id string) error {
	ns := componentNamespace(namespace)
	secret := broker.CredentialSecret(namespace, &creds.Info, creds.Token)
	secret.Annotations = map[string]string{keptCredentialAnnotation: id}
	return kubeapply.All(ctx, c, []client.Object{ns, secret}, kubeapply.FieldManagerCLI)
}

// leaveKeptCredential is Leave on a cluster without a ClusterProperty: one
// an earlier Leave left with only its broker credential kept, or one
// EnrolOnly enrolled without the chart installed (or with it uninstalled
// since). It retries (or makes) the removal at the broker and, unless the
// broker does not answer, removes the gateway labels of an EnrolOnly
// cluster, then the credential and its namespace. A cluster without such a
// credential has not joined.
func leaveKeptCredential(ctx context.Context, c client.Client, cs kubernetes.Interface, o LeaveOptions, logf func(string, ...any)) error {
	notJoined := errors.New("this cluster has not joined a broker (no ClusterProperty cluster.clusterset.k8s.io)")
	secret, err := cs.CoreV1().Secrets(v1.ComponentNamespace).Get(ctx, broker.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return notJoined
	}
	if err != nil {
		return fmt.Errorf("read the broker credential: %w", err)
	}
	id := secret.Annotations[keptCredentialAnnotation]
	enrolOnly := id == "" && secret.Annotations[enrolledClusterAnnotation] != ""
	if enrolOnly {
		id = secret.Annotations[enrolledClusterAnnotation]
		logf("cluster %s is enrolled at the broker without Strait's chart installed", id)
	}
	if id == "" {
		return notJoined
	}
	creds, err := broker.ReadCredentials(ctx, cs, v1.ComponentNamespace, broker.SecretName)
	if err != nil {
		return err
	}
	brokerErr := leaveBroker(ctx, creds, id, o.BrokerTimeout)
	if brokerErr != nil && brokerErr.Kept {
		return brokerErr
	}
	if enrolOnly {
		if err := labelGateways(ctx, cs, nil); err != nil {
			return err
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v1.ComponentNamespace}}
	if err := kubeapply.Delete(ctx, c, ns); err != nil {
		return err
	}
	if err := waitGone(ctx, c, ns); err != nil {
		return err
	}
	if brokerErr != nil {
		return brokerErr
	}
	logf("removed %s from the broker %s", id, creds.Info.APIServer)
	logf("cluster %s left", id)
	return nil
}

// kindOf returns obj's kind: its own, or its type's in c's scheme.
func kindOf(c client.Client, obj client.Object) (schema.GroupVersionKind, error) {
	if gvk := obj.GetObjectKind().GroupVersionKind(); !gvk.Empty() {
		return gvk, nil
	}
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return gvk, fmt.Errorf("kind of %T: %w", obj, err)
	}
	return gvk, nil
}

// joinedValues reads back the values join rendered the manifests with, from
// the first rendered DaemonSet still in the cluster. Without one (a leave run
// again after a failure), it falls back to the cluster ID, the component
// namespace and placeholders: the objects' kinds, namespaces and names, which
// are all Leave needs, do not depend on the other values.
func joinedValues(ctx context.Context, c client.Client, id string) (manifests.GatewayValues, error) {
	fallback := manifests.GatewayValues{
		Namespace: v1.ComponentNamespace, ClusterID: id,
		// The chart requires CIDRs and a known driver; the image must
		// render as <repository>/<name>:<tag> to be valid YAML.
		PodCIDRs: unknownValue, ServiceCIDRs: unknownValue, CableDriver: string(v1.CableDriverWireGuard),
		ImageRepository: unknownValue, ImageTag: unknownValue,
	}
	rendered, err := manifests.RenderMember(fallback)
	if err != nil {
		return fallback, err
	}
	for _, u := range rendered {
		if u.GetKind() != "DaemonSet" {
			continue
		}
		ds := &appsv1.DaemonSet{}
		err := c.Get(ctx, client.ObjectKey{Namespace: u.GetNamespace(), Name: u.GetName()}, ds)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fallback, fmt.Errorf("read DaemonSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		v, err := manifests.ReadValues(ds)
		if err != nil {
			// Edited by hand: the names are still the rendered ones.
			continue
		}
		// A flag edited away by hand: its placeholder.
		for _, f := range []struct {
			dst         *string
			placeholder string
		}{
			{&v.Namespace, fallback.Namespace}, {&v.ClusterID, id}, {&v.PodCIDRs, fallback.PodCIDRs},
			{&v.ServiceCIDRs, fallback.ServiceCIDRs}, {&v.CableDriver, fallback.CableDriver},
		} {
			if *f.dst == "" {
				*f.dst = f.placeholder
			}
		}
		return v, nil
	}
	return fallback, nil
}

// waitPodsGone waits until no pod of the workload w (a DaemonSet or
// Deployment, as rendered) is left.
func waitPodsGone(ctx context.Context, c client.Client, w client.Object) error {
	u, ok := w.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("workload %s is not rendered", w.GetName())
	}
	sel, _, err := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	if err != nil {
		return fmt.Errorf("%s %s/%s: spec.selector.matchLabels: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	if len(sel) == 0 {
		return fmt.Errorf("%s %s/%s has no spec.selector.matchLabels", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	err = wait.PollUntilContextTimeout(ctx, leavePollInterval, leaveWaitTimeout, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(u.GetNamespace()), client.MatchingLabels(sel)); err != nil {
			return false, nil // transient: ask again
		}
		return len(pods.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the pods of %s %s/%s to stop: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// lighthouseKinds are the kinds of what Lighthouse makes in application
// namespaces, in the order Leave deletes them: ServiceImports first, so that
// the clusterset's DNS stops answering for a service before its endpoints go.
var lighthouseKinds = []schema.GroupVersionKind{
	mcsv1beta1.SchemeGroupVersion.WithKind("ServiceImport"),
	corev1.SchemeGroupVersion.WithKind("Service"),
	discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
}

// removeLighthouseObjects deletes, in every namespace, every Service and
// EndpointSlice labelled v1.LighthouseManagedLabel=true and every
// ServiceImport written by field manager kubeapply.FieldManagerLighthouse,
// and nothing else: a user's Service or EndpointSlice lacks the label, and
// ServiceExports are not among the kinds. Each is deleted with its UID as a precondition, so an
// object made again under the same name since the list stays. A kind the
// cluster does not serve (the MCS CRDs removed by an earlier leave) has
// none.
func removeLighthouseObjects(ctx context.Context, c client.Client, logf func(string, ...any)) error {
	for _, gvk := range lighthouseKinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		// A ServiceImport carries only the labels its exports list, so
		// Lighthouse's are told by their field manager instead.
		var opts []client.ListOption
		if gvk.Kind != "ServiceImport" {
			opts = append(opts, client.MatchingLabels{v1.LighthouseManagedLabel: "true"})
		}
		err := c.List(ctx, list, opts...)
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("list Lighthouse's %ss: %w", gvk.Kind, err)
		}
		n := 0
		for i := range list.Items {
			obj := &list.Items[i]
			if gvk.Kind == "ServiceImport" && !kubeapply.WrittenBy(obj, kubeapply.FieldManagerLighthouse) {
				continue
			}
			obj.SetGroupVersionKind(gvk)
			uid := obj.GetUID()
			switch err := c.Delete(ctx, obj, client.Preconditions{UID: &uid}); {
			case err == nil:
				n++
			case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
				return fmt.Errorf("delete %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
			}
		}
		if n > 0 {
			logf("removed %d %s objects Lighthouse made", n, gvk.Kind)
		}
	}
	return nil
}

// waitGone waits until obj no longer exists.
func waitGone(ctx context.Context, c client.Client, obj client.Object) error {
	u := &unstructured.Unstructured{}
	gvk, err := kindOf(c, obj)
	if err != nil {
		return err
	}
	u.SetGroupVersionKind(gvk)
	err = wait.PollUntilContextTimeout(ctx, leavePollInterval, leaveWaitTimeout, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), u)
		return apierrors.IsNotFound(err) || meta.IsNoMatchError(err), nil
	})
	if err != nil {
		return fmt.Errorf("wait for %s %s to go: %w%s", gvk.Kind, obj.GetName(), err, conditionsOf(u))
	}
	return nil
}

// conditionsOf is what obj's status conditions say, as "; Type=Status
// (Reason: message)" items, for an error about an object that did not go:
// a CustomResourceDefinition's Terminating condition says why the apiserver
// could not delete its objects, a Namespace's which content or finalizers
// remain. "" without any.
func conditionsOf(obj *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	var b strings.Builder
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "; %v=%v", m["type"], m["status"])
		if m["reason"] != nil || m["message"] != nil {
			fmt.Fprintf(&b, " (%v: %v)", m["reason"], m["message"])
		}
	}
	return b.String()
}

// removeCRDs deletes Strait's CRDs, except where they must stay: all of
// them when the cluster hosts a broker (removing them would remove every
// member's records there); unless purge, the CRDs of other groups than
// strait.dev (the MCS API's and about.k8s.io's: they hold users' objects,
// and may have been installed by someone else before join) and a CRD that
// still has objects of its kind. It logs each CRD it kept and why.
func removeCRDs(ctx context.Context, c client.Client, cs kubernetes.Interface, purge bool, logf func(string, ...any)) error {
	brokers, err := broker.HostsBroker(ctx, cs)
	if err != nil {
		return err
	}
	if len(brokers) > 0 {
		logf("kept the CRDs: this cluster hosts the broker in namespace %s", strings.Join(brokers, ", "))
		return nil
	}
	all, err := crds.All()
	if err != nil {
		return err
	}
	var remove []client.Object
	var shared []string
	for _, crd := range all {
		if !purge && crd.Spec.Group != v1.GroupName {
			shared = append(shared, crd.Name)
			continue
		}
		if !purge {
			inUse, err := crdInUse(ctx, c, crd)
			if err != nil {
				return fmt.Errorf("list the objects of CRD %s: %w", crd.Name, err)
			}
			if inUse {
				logf("kept CRD %s: objects of its kind remain", crd.Name)
				continue
			}
		}
		crd.SetGroupVersionKind(crdGVK)
		remove = append(remove, crd)
	}
	if len(shared) > 0 {
		logf("kept CRDs %s: they hold users' objects (ServiceExports) and may be shared; straitctl leave --purge removes them with every object of their kinds", strings.Join(shared, ", "))
	}
	if err := kubeapply.DeleteAll(ctx, c, remove); err != nil {
		return err
	}
	for _, crd := range remove {
		if err := waitGone(ctx, c, crd); err != nil {
			return err
		}
	}
	return nil
}

// unknownValue fills the values Leave cannot read back and does not need.
const unknownValue = "unknown"

var crdGVK = apiextv1.SchemeGroupVersion.WithKind("CustomResourceDefinition")

// crdInUse reports whether any object of crd's kind exists, in any
// namespace. A kind the apiserver does not serve has none.
func crdInUse(ctx context.Context, c client.Client, crd *apiextv1.CustomResourceDefinition) (bool, error) {
	// The apiserver defaults listKind to <kind>List.
	listKind := crd.Spec.Names.ListKind
	if listKind == "" {
		listKind = crd.Spec.Names.Kind + "List"
	}
	for _, v := range crd.Spec.Versions {
		if !v.Storage {
			continue
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: listKind})
		err := c.List(ctx, list, client.Limit(1))
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return len(list.Items) > 0, nil
	}
	return false, nil
}

// orDiscard returns logf, or a logger that drops everything.
func orDiscard(logf func(string, ...any)) func(string, ...any) {
	if logf == nil {
		return func(string, ...any) {}
	}
	return logf
}

// globalnetFamilies refuses IPv6 pod or service CIDRs for a Globalnet
// member: Globalnet maps IPv4 addresses only (docs/globalnet.md), so its
// IPv6 pods and Services would join unreachable from every other cluster,
// without a word.
func globalnetFamilies(pods, services []netip.Prefix) error {
	var v6 []netip.Prefix
	for _, p := range append(append([]netip.Prefix(nil), pods...), services...) {
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			v6 = append(v6, p)
		}
	}
	if len(v6) > 0 {
		return fmt.Errorf("--globalnet: Globalnet is IPv4-only and this cluster has IPv6 pod or service CIDRs %s: join without --globalnet (its CIDRs must then not overlap other members'), or give --pod-cidr and --service-cidr of IPv4 alone", cidr.Join(v6))
	}
	return nil
}
