package gateway

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// wireGuardKeySecret names the Secret holding a gateway node's WireGuard
// private key. The key never leaves the cluster and is never logged; only
// its public half is published.
func wireGuardKeySecret(node string) string { return "strait-wireguard-" + node }

// ensureWireGuardKey returns the node's WireGuard private key, making and
// storing it the first time.
func ensureWireGuardKey(ctx context.Context, cs kubernetes.Interface, namespace, node string) (wgtypes.Key, error) {
	api := cs.CoreV1().Secrets(namespace)
	s, err := api.Get(ctx, wireGuardKeySecret(node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		key, kerr := wgtypes.GeneratePrivateKey()
		if kerr != nil {
			return wgtypes.Key{}, kerr
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: wireGuardKeySecret(node), Namespace: namespace},
			Data:       map[string][]byte{"privateKey": []byte(key.String())},
		}
		if s, err = api.Create(ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			s, err = api.Get(ctx, wireGuardKeySecret(node), metav1.GetOptions{})
		}
	}
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("WireGuard key of %s: %w", node, err)
	}
	key, err := wgtypes.ParseKey(string(s.Data["privateKey"]))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("WireGuard key of %s in Secret %s is corrupt", node, wireGuardKeySecret(node))
	}
	return key, nil
}
