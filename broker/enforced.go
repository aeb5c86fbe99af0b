package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
)

// policyProbeCluster is the cluster ID the enforcement probe writes as: a
// member credential's user name ends in it, and no member can have it
// (a cluster ID is an RFC 1123 label; this one is reserved by its prefix).
const policyProbeCluster = "strait-policy-probe"

// enforcedTimeout bounds how long Deploy waits for the apiserver to enforce
// the member policies it just applied.
const enforcedTimeout = 60 * time.Second

// errCannotProbe says the deploying credential may not impersonate a member,
// so the enforcement of the policies cannot be observed.
var errCannotProbe = errors.New("cannot impersonate a member credential to probe the policies")

// waitPoliciesEnforced returns once the apiserver behind cfg (admin is a
// client of it with cfg's rights) enforces the
// member isolation and Globalnet policies of broker namespace ns, which
// Deploy has just applied. An apiserver loads a ValidatingAdmissionPolicy
// and its binding through informers, some time after they are written; until
// then every write a member makes is admitted, so a broker is only isolated
// once both deny (seen: a member's write to another member's records
// admitted right after Deploy under load).
//
// It probes with server-side dry-run writes (nothing is stored) made as a
// member credential would make them: impersonating the user
// system:serviceaccount:<ns>:strait-member-strait-policy-probe, with the group
// system:masters so that RBAC admits the request and only the policies judge
// it. A probe is an Endpoint labelled with another cluster's ID, which the
// isolation policy denies, and an update adding a key to the Globalnet
// ConfigMap, which the Globalnet policy denies. Both are polled every 100 ms.
//
// Errors: errCannotProbe (wrapped) when the credential may not impersonate;
// a timeout after timeout naming the policy that still admitted its probe and
// what the apiserver answered; the apiserver's error for admin's Get of the
// Globalnet ConfigMap.
func waitPoliciesEnforced(ctx context.Context, cfg *rest.Config, admin client.Client, ns string, timeout time.Duration) error {
	probeCfg := rest.CopyConfig(cfg)
	probeCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + MemberPrefix + policyProbeCluster,
		Groups:   []string{"system:masters", "system:authenticated"},
	}
	probe, err := client.New(probeCfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return fmt.Errorf("probe client: %w", err)
	}
	other := "other-than-" + policyProbeCluster
	endpoint := &v1.Endpoint{
		ObjectMeta: metav1.ObjectMeta{Name: other + ".probe", Namespace: ns, Labels: map[string]string{v1.ClusterIDLabel: other}},
		Spec: v1.EndpointSpec{ClusterID: v1.ClusterID(other), Hostname: "probe", PrivateIPs: v1.DualStackIPs{"192.0.2.1"},
			Subnets: []v1.CIDR{"192.0.2.0/24"}, CableDriver: v1.CableDriverVXLAN, VXLAN: &v1.VXLANConfig{VNI: 100, Port: 4800}},
	}
	// The ConfigMap is read once: the probe's update carries no
	// resourceVersion (a ConfigMap takes unconditional updates), so a
	// change to it meanwhile does not make the probe conflict.
	var cm corev1.ConfigMap
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: GlobalnetConfigMap}, &cm); err != nil {
		return fmt.Errorf("the Globalnet ConfigMap %s/%s: %w", ns, GlobalnetConfigMap, err)
	}
	cm.ResourceVersion = ""
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[policyProbeCluster] = "probe"
	probes := []struct {
		policy string
		write  func(ctx context.Context) error
	}{
		{PolicyName(ns), func(ctx context.Context) error { return probe.Create(ctx, endpoint.DeepCopy(), client.DryRunAll) }},
		{GlobalnetPolicyName(ns), func(ctx context.Context) error { return probe.Update(ctx, cm.DeepCopy(), client.DryRunAll) }},
	}
	for _, p := range probes {
		var last error
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			err := p.write(ctx)
			if ctx.Err() != nil {
				return false, nil // cut off by the timeout: keep the last whole answer
			}
			last = err
			switch {
			case last == nil:
				return false, nil // admitted: the policy is not in force yet
			case apierrors.IsForbidden(last) && strings.Contains(last.Error(), "impersonate"):
				return false, fmt.Errorf("%w: %v", errCannotProbe, last)
			case apierrors.IsForbidden(last) && strings.Contains(last.Error(), "cluster "+policyProbeCluster+" may "):
				return true, nil // the policy's own denial
			default:
				return false, nil // another answer (a busy apiserver): ask again
			}
		})
		if errors.Is(err, errCannotProbe) {
			return err
		}
		if err != nil {
			answer := "admitted"
			if last != nil {
				answer = "answered: " + last.Error()
			}
			return fmt.Errorf("policy %s not enforced after %s: a member's write it must deny was %s", p.policy, timeout, answer)
		}
	}
	return nil
}
