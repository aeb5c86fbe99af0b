package gateway

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"strait.dev/strait/pkg/cabledriver"
)

// keySecretField is the Secret's data key holding the private key.
const keySecretField = "privateKey"

// ensureKey returns the node's private key for a keyed cable driver (the
// WireGuard key lives in Secret strait-wireguard-<node>) and its public
// half, making and storing the key the first time. The private key never
// leaves the cluster and is never logged or put in an error; only its
// public half is published.
func ensureKey(ctx context.Context, cs kubernetes.Interface, namespace, node string, ks *cabledriver.KeyScheme) (private, public string, err error) {
	name := ks.SecretPrefix + node
	api := cs.CoreV1().Secrets(namespace)
	s, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		key, kerr := ks.Generate()
		if kerr != nil {
			return "", "", kerr
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Data:       map[string][]byte{keySecretField: []byte(key)},
		}
		if s, err = api.Create(ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			s, err = api.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return "", "", fmt.Errorf("key of %s in Secret %s: %w", node, name, err)
	}
	private = string(s.Data[keySecretField])
	if public, err = ks.Public(private); err != nil {
		return "", "", fmt.Errorf("key of %s in Secret %s is corrupt: %w", node, name, err)
	}
	return private, public, nil
}
