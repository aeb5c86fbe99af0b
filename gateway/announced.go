package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/gateway/announce"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// A takeover announcement (gateway/announce) lets this gateway switch its
// cable to another cluster's new active gateway before that gateway's
// Endpoint arrives through the broker (docs/failover-without-broker.md).
// The announcement is checked against what the broker last said: the
// sender must be a candidate listed in its cluster's current Endpoint, and
// its epoch must be newer than that Endpoint's.

// errNotNewer: the announcement's epoch is not newer than the Endpoint's.
var errNotNewer = errors.New("announced epoch is not newer than the cluster's Endpoint")

// candidateKeys is announce.Open's sender lookup over eps (the Endpoints of
// the other clusters, as the syncer imports them): the cable key of node
// as a candidate in cluster's current Endpoint (activeEndpoints), for a
// keyed driver. A node that is not listed, or lists no parseable key, is
// unknown.
func candidateKeys(eps []v1.Endpoint, self string) func(cluster, node string) (announce.Key, bool) {
	remotes, _ := activeEndpoints(eps, self)
	return func(cluster, node string) (announce.Key, bool) {
		for _, ep := range remotes {
			if string(ep.Spec.ClusterID) != cluster {
				continue
			}
			for _, c := range ep.Spec.Candidates {
				if c.Hostname != node || c.WireGuard == nil {
					continue
				}
				k, err := wgtypes.ParseKey(c.WireGuard.PublicKey)
				return announce.Key(k), err == nil
			}
		}
		return announce.Key{}, false
	}
}

// announcedEndpoint is the Endpoint that announcement m says stands for
// its cluster now: the cluster's current Endpoint in eps with the
// candidate's own fields (addresses, NAT, cable settings, health-check
// addresses) in place of the old gateway's, named as the candidate's own
// Endpoint will be, and annotated with m's epoch, so that activeEndpoints
// prefers it to the old one and the real one, once the broker brings it,
// replaces it. It fails when the cluster has no Endpoint in eps, when
// m.Node is not among its candidates, and with errNotNewer when m.Epoch is
// not above the Endpoint's epoch (a replay, or the broker was faster).
func announcedEndpoint(eps []v1.Endpoint, self string, m announce.Message) (v1.Endpoint, error) {
	remotes, _ := activeEndpoints(eps, self)
	for _, ep := range remotes {
		if string(ep.Spec.ClusterID) != m.ClusterID {
			continue
		}
		if int(m.Epoch) <= epoch(ep) {
			return v1.Endpoint{}, fmt.Errorf("%w: %s announced epoch %d, Endpoint %s has %d", errNotNewer, m.Node, m.Epoch, ep.Name, epoch(ep))
		}
		for _, c := range ep.Spec.Candidates {
			if c.Hostname != m.Node {
				continue
			}
			out := v1.Endpoint{
				ObjectMeta: metav1.ObjectMeta{Name: EndpointName(m.ClusterID, m.Node), Namespace: ep.Namespace,
					Labels:      map[string]string{v1.ClusterIDLabel: m.ClusterID},
					Annotations: map[string]string{v1.GatewayEpochAnnotation: strconv.Itoa(int(m.Epoch))}},
				Spec: *ep.Spec.DeepCopy(),
			}
			s := &out.Spec
			s.Hostname, s.PrivateIPs, s.PublicIPs, s.NATTraversal = c.Hostname, c.PrivateIPs, c.PublicIPs, c.NATTraversal
			s.WireGuard, s.VXLAN, s.HealthCheckIPs = c.WireGuard, c.VXLAN, c.HealthCheckIPs
			// The old gateway may take the role back one day: it is a
			// candidate now, the new one is not.
			var cands []v1.GatewayCandidate
			for _, o := range ep.Spec.Candidates {
				if o.Hostname != m.Node {
					cands = append(cands, o)
				}
			}
			s.Candidates = append(cands, v1.GatewayCandidate{Hostname: ep.Spec.Hostname, PrivateIPs: ep.Spec.PrivateIPs,
				PublicIPs: ep.Spec.PublicIPs, NATTraversal: ep.Spec.NATTraversal, WireGuard: ep.Spec.WireGuard,
				VXLAN: ep.Spec.VXLAN, HealthCheckIPs: ep.Spec.HealthCheckIPs})
			slices.SortFunc(s.Candidates, func(a, b v1.GatewayCandidate) int { return strings.Compare(a.Hostname, b.Hostname) })
			return out, nil
		}
		return v1.Endpoint{}, fmt.Errorf("%s is not a candidate of cluster %s's Endpoint %s", m.Node, m.ClusterID, ep.Name)
	}
	return v1.Endpoint{}, fmt.Errorf("no Endpoint of cluster %q", m.ClusterID)
}
