package broker

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SecretName is the Secret in strait-system that holds the member's
// broker credential, written by straitctl join.
const SecretName = "strait-broker"

// Keys of the broker Secret.
const (
	brokerKeyServer    = "apiServer"
	brokerKeyCA        = "ca.crt"
	brokerKeyNamespace = "namespace"
	brokerKeyToken     = "token"
)

// SecretKeyToken is the key of the member's own token in the broker Secret,
// the one key that is a secret (straitctl join --dry-run leaves it out).
const SecretKeyToken = brokerKeyToken

// Credentials is a member's way into the broker.
type Credentials struct {
	Info  Info   // without the enrolment token
	Token string // the member's own token
}

// CredentialSecret renders a member's broker credential as a Secret.
func CredentialSecret(namespace string, info *Info, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: namespace},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			brokerKeyServer:    []byte(info.APIServer),
			brokerKeyCA:        info.CABundle,
			brokerKeyNamespace: []byte(info.Namespace),
			brokerKeyToken:     []byte(token),
		},
	}
}

// ReadCredentials reads the member's broker credential.
func ReadCredentials(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*Credentials, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("broker credential %s/%s: %w", namespace, name, err)
	}
	for _, k := range []string{brokerKeyServer, brokerKeyCA, brokerKeyNamespace, brokerKeyToken} {
		if len(s.Data[k]) == 0 {
			return nil, fmt.Errorf("broker credential %s/%s lacks %q (run straitctl join again)", namespace, name, k)
		}
	}
	return &Credentials{
		Info:  Info{APIServer: string(s.Data[brokerKeyServer]), CABundle: s.Data[brokerKeyCA], Namespace: string(s.Data[brokerKeyNamespace])},
		Token: string(s.Data[brokerKeyToken]),
	}, nil
}
