package lighthouse

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

func gatewayWith(ha v1.HAStatus, conns ...v1.Connection) *v1.Gateway {
	return &v1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw"}, Status: v1.GatewayStatus{HAStatus: ha, Connections: conns}}
}

func conn(cluster string, status v1.ConnectionStatus, rtt time.Duration) v1.Connection {
	return v1.Connection{ClusterID: v1.ClusterID(cluster), Status: status,
		LatencyRTT: &v1.LatencyRTT{Average: metav1.Duration{Duration: rtt}, Last: metav1.Duration{Duration: rtt}}}
}

// TestHealthChanged: only a Gateway update that changes what the import
// controller reads from it reconciles the imports.
func TestHealthChanged(t *testing.T) {
	base := gatewayWith(v1.HAStatusActive, conn("c2", v1.Connected, time.Millisecond), conn("c3", v1.Connected, 3*time.Millisecond))
	for _, tc := range []struct {
		name  string
		after *v1.Gateway
		want  bool
	}{
		{"fresh RTTs, same order", gatewayWith(v1.HAStatusActive, conn("c2", v1.Connected, 2*time.Millisecond), conn("c3", v1.Connected, 5*time.Millisecond)), false},
		{"connections listed in another order", gatewayWith(v1.HAStatusActive, conn("c3", v1.Connected, 3*time.Millisecond), conn("c2", v1.Connected, time.Millisecond)), false},
		{"the nearest cluster changes", gatewayWith(v1.HAStatusActive, conn("c2", v1.Connected, 4*time.Millisecond), conn("c3", v1.Connected, 3*time.Millisecond)), true},
		{"a connection fails", gatewayWith(v1.HAStatusActive, conn("c2", v1.ConnectionError, time.Millisecond), conn("c3", v1.Connected, 3*time.Millisecond)), true},
		{"a connection goes", gatewayWith(v1.HAStatusActive, conn("c2", v1.Connected, time.Millisecond)), true},
		{"the gateway turns passive", gatewayWith(v1.HAStatusPassive, conn("c2", v1.Connected, time.Millisecond), conn("c3", v1.Connected, 3*time.Millisecond)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := healthChanged.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: tc.after}); got != tc.want {
				t.Errorf("healthChanged = %v, want %v (%q → %q)", got, tc.want, healthKey(base), healthKey(tc.after))
			}
		})
	}
}
