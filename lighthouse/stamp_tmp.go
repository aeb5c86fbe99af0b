package lighthouse

// Temporary until pkg/syncer's BrokerCreatedAt lands (branch wt-sync).

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const brokerCreatedAtAnnotation = "strait.dev/broker-created-at"

func brokerCreatedAt(o metav1.Object) (time.Time, bool) {
	s, ok := o.GetAnnotations()[brokerCreatedAtAnnotation]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}
