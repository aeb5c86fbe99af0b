package gateway

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/gateway/health"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
)

// writeStatus records this gateway's role, its Endpoint and connections in
// its Gateway object, by server-side apply: the object (name and label),
// then its status.
func (e *Engine) writeStatus(ctx context.Context, role v1.HAStatus, localEndpoint string, conns ...v1.Connection) error {
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
	return kubeapply.ApplyStatus(ctx, e.c, gw, kubeapply.FieldManagerGateway)
}

// withHealth is the connections' status: the static parts Compute made,
// with the health probes' result where there is one. A static Error (the
// remote cannot be a peer) stands whatever the probes say.
func withHealth(static []v1.Connection, results map[string]health.Result) []v1.Connection {
	out := make([]v1.Connection, len(static))
	for i, c := range static {
		if res, ok := results[c.Endpoint]; ok && c.Status != v1.ConnectionError {
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

// sameStates compares connections ignoring round-trip times.
func sameStates(a, b []v1.Connection) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Endpoint != b[i].Endpoint || a[i].Status != b[i].Status || a[i].StatusMessage != b[i].StatusMessage || a[i].UsingIP != b[i].UsingIP {
			return false
		}
	}
	return true
}
