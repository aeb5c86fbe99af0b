package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/gateway/health"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
)

// writeStatus records this gateway's role, its Endpoint and connections in
// its Gateway object, by server-side apply: the object (name and label),
// then its status: the Ready condition, then conds (the active gateway's
// RemoteClustersReachable).
func (e *Engine) writeStatus(ctx context.Context, role v1.HAStatus, localEndpoint string, conns []v1.Connection, conds ...metav1.Condition) error {
	gw := &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: e.cfg.NodeName, Namespace: e.cfg.Namespace,
		Labels: map[string]string{v1.ClusterIDLabel: e.cfg.ClusterID}}}
	if err := kubeapply.Apply(ctx, e.c, gw, kubeapply.FieldManagerGateway); err != nil {
		return err // "apply Gateway <ns>/<name>: ..."
	}
	gw.Status = v1.GatewayStatus{
		HAStatus: role, LocalEndpoint: localEndpoint, Connections: conns,
		Conditions: []metav1.Condition{{
			Type: "Ready", Status: metav1.ConditionTrue, Reason: "Running",
			Message: fmt.Sprintf("gateway engine running as %s", role),
			// The condition has been true since the engine started.
			LastTransitionTime: e.started,
		}},
	}
	gw.Status.Conditions = append(gw.Status.Conditions, conds...)
	return kubeapply.ApplyStatus(ctx, e.c, gw, kubeapply.FieldManagerGateway)
}

// leaseInfo is what the gateway Lease says: who holds it ("" when free)
// and the epoch of the holder's term (its transition count).
type leaseInfo struct {
	holder string
	epoch  int32
}

// readLease reads the gateway Lease from the apiserver.
func (e *Engine) readLease(ctx context.Context) (leaseInfo, error) {
	l, err := e.kube.CoordinationV1().Leases(e.cfg.Namespace).Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		return leaseInfo{}, fmt.Errorf("read Lease %s/%s: %w", e.cfg.Namespace, LeaseName, err)
	}
	return leaseInfo{holder: ptr.Deref(l.Spec.HolderIdentity, ""), epoch: ptr.Deref(l.Spec.LeaseTransitions, 0)}, nil
}

// Reason of the Ready condition the active gateway gives a Gateway it
// shows passive because another gateway holds the Lease.
const reasonNotLeaseHolder = "NotLeaseHolder"

// demote shows gw, another gateway of the cluster that still says active
// while this one holds the Lease (as lease says), passive: a gateway killed
// while active writes nothing on its way out. Its endpoint and connections
// go (they were its term's; the new active gateway replaced its Endpoint),
// and its Ready condition turns Unknown with a message naming the holder,
// as the node controller does with a Node that stopped reporting. The
// update carries gw's resourceVersion, so it never overwrites a newer write
// (a gateway that became active again after this one lost the Lease): a
// Conflict, or a Gateway gone, is no error, the caller looks again at the
// next change. The Lease stays the only authority; this is its echo.
func (e *Engine) demote(ctx context.Context, gw *v1.Gateway, lease leaseInfo) error {
	gw = gw.DeepCopy()
	gw.Status.HAStatus = v1.HAStatusPassive
	gw.Status.LocalEndpoint = ""
	gw.Status.Connections = nil
	meta.SetStatusCondition(&gw.Status.Conditions, metav1.Condition{
		Type: "Ready", Status: metav1.ConditionUnknown, Reason: reasonNotLeaseHolder,
		Message: fmt.Sprintf("not active: gateway %s holds the gateway Lease %s/%s (epoch %d); this gateway's engine has not reported since it lost it",
			lease.holder, e.cfg.Namespace, LeaseName, lease.epoch),
	})
	err := e.c.Status().Update(ctx, gw, client.FieldOwner(kubeapply.FieldManagerGateway))
	switch {
	case err == nil:
		e.log.Info("showing a former active gateway passive", "gateway", gw.Name, "epoch", lease.epoch)
		return nil
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("update status of Gateway %s/%s: %w", gw.Namespace, gw.Name, err)
}

// withHealth is the connections' status: the static parts Compute made,
// with the health probes' result where there is one, and the path MTU: the
// override of the connection's cluster (overrides, bytes by cluster ID), else
// the probes' figure. A static Error (the remote cannot be a peer) stands
// whatever the probes say.
func withHealth(static []v1.Connection, results map[string]health.Result, overrides map[v1.ClusterID]int) []v1.Connection {
	out := make([]v1.Connection, len(static))
	for i, c := range static {
		res, ok := results[c.Endpoint]
		switch {
		case overrides[c.ClusterID] > 0:
			c.PathMTU, c.PathMTUSource = int32(overrides[c.ClusterID]), v1.PathMTUOverride
		case ok && res.PathMTU > 0:
			c.PathMTU, c.PathMTUSource = int32(res.PathMTU), v1.PathMTUProbed
		}
		if ok && c.Status != v1.ConnectionError {
			c.Status, c.StatusMessage = v1.ConnectionStatus(res.Status), res.Message
			if res.Last > 0 {
				c.LatencyRTT = &v1.LatencyRTT{
					Last: metav1.Duration{Duration: res.Last}, Min: metav1.Duration{Duration: res.Min},
					Average: metav1.Duration{Duration: res.Average}, Max: metav1.Duration{Duration: res.Max},
				}
			}
		}
		out[i] = c
	}
	return out
}

// sameStates compares connections ignoring round-trip times (a path MTU
// change is a change: the route agents follow it).
func sameStates(a, b []v1.Connection) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Endpoint != b[i].Endpoint || a[i].Status != b[i].Status || a[i].StatusMessage != b[i].StatusMessage || a[i].UsingIP != b[i].UsingIP ||
			a[i].PathMTU != b[i].PathMTU || a[i].PathMTUSource != b[i].PathMTUSource {
			return false
		}
	}
	return true
}

// ParsePathMTU parses the gateway's --path-mtu flag: comma-separated
// CLUSTER=BYTES pairs, the path MTU (IP header included) to use for each
// named remote cluster instead of the measured one, e.g.
// "cluster-b=1400,cluster-c=1380". Empty is no override. Errors: a pair
// without "=", an empty cluster ID, a cluster named twice, or a size that is
// not a whole number from 576 (IPv4's minimum) to 65535.
func ParsePathMTU(s string) (map[v1.ClusterID]int, error) {
	out := map[v1.ClusterID]int{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, pair := range strings.Split(s, ",") {
		id, size, ok := strings.Cut(strings.TrimSpace(pair), "=")
		id = strings.TrimSpace(id)
		if !ok || id == "" {
			return nil, fmt.Errorf("path MTU %q: want CLUSTER=BYTES, e.g. cluster-b=1400", pair)
		}
		if _, dup := out[v1.ClusterID(id)]; dup {
			return nil, fmt.Errorf("path MTU: cluster %s is named twice", id)
		}
		n, err := strconv.Atoi(strings.TrimSpace(size))
		if err != nil || n < health.FloorIPv4 || n > 65535 {
			return nil, fmt.Errorf("path MTU of cluster %s: %q is not a size in bytes from %d to 65535", id, size, health.FloorIPv4)
		}
		out[v1.ClusterID(id)] = n
	}
	return out, nil
}
