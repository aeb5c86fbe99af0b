package gateway

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/broker"
)

// BrokerSecretName is the Secret in strait-system that holds the member's
// broker credential, written by straitctl join.
const BrokerSecretName = "strait-broker"

// Keys of the broker Secret.
const (
	brokerKeyServer    = "apiServer"
	brokerKeyCA        = "ca.crt"
	brokerKeyNamespace = "namespace"
	brokerKeyToken     = "token"
)

// BrokerCredentials is a member's way into the broker.
type BrokerCredentials struct {
	Info  broker.Info // without the enrolment token
	Token string      // the member's own token
}

// BrokerSecret renders a member's broker credential as a Secret.
func BrokerSecret(namespace string, info *broker.Info, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: BrokerSecretName, Namespace: namespace},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			brokerKeyServer:    []byte(info.APIServer),
			brokerKeyCA:        info.CABundle,
			brokerKeyNamespace: []byte(info.Namespace),
			brokerKeyToken:     []byte(token),
		},
	}
}

// ReadBrokerSecret reads the member's broker credential.
func ReadBrokerSecret(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*BrokerCredentials, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("broker credential %s/%s: %w", namespace, name, err)
	}
	for _, k := range []string{brokerKeyServer, brokerKeyCA, brokerKeyNamespace, brokerKeyToken} {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Errorf("broker credential %s/%s lacks %q (run straitctl join again)", namespace, name, k)
		}
	}
	return &BrokerCredentials{
		Info:  broker.Info{APIServer: string(s.Data[brokerKeyServer]), CABundle: s.Data[brokerKeyCA], Namespace: string(s.Data[brokerKeyNamespace])},
		Token: string(s.Data[brokerKeyToken]),
	}, nil
}

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
