package lighthouse

import (
	"cmp"
	"slices"
	"time"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// ClusterHealth is what the local active gateway reports about its
// connection to one remote cluster (its Gateway status).
type ClusterHealth struct {
	// Error is true when the connection's status is error: the cluster
	// cannot be reached.
	Error bool
	// RTT is the health check's mean round trip; 0 when unknown.
	RTT time.Duration
}

// Health is the local active gateway's view of the remote clusters.
type Health struct {
	// Clusters holds, per remote cluster ID the gateway has connections
	// to, whether they are all in error and the mean RTT.
	Clusters map[string]ClusterHealth
	// Active is true when the cluster has an active gateway; without one
	// nothing is known about any remote cluster.
	Active bool
}

// GatewayHealth reads the active gateway's connections from gws (the
// Gateways of the component namespace): per remote cluster, whether its
// connection is in error and its mean RTT. A cluster with several
// connections counts as in error only when none is connected.
func GatewayHealth(gws []v1.Gateway) Health {
	h := Health{Clusters: map[string]ClusterHealth{}}
	for _, gw := range gws {
		if gw.Status.HAStatus != v1.HAStatusActive {
			continue
		}
		h.Active = true
		connected := map[string]bool{}
		for _, c := range gw.Status.Connections {
			id := string(c.ClusterID)
			ch := h.Clusters[id]
			switch c.Status {
			case v1.Connected:
				connected[id] = true
				ch.Error = false
				if c.LatencyRTT != nil {
					ch.RTT = c.LatencyRTT.Average.Duration
				}
			case v1.ConnectionError:
				ch.Error = !connected[id]
			}
			h.Clusters[id] = ch
		}
	}
	return h
}

// Reachable reports whether the endpoints of cluster can serve clients in
// cluster local: the local cluster always; a remote one unless its
// connection is in error or, while the cluster has an active gateway, that
// gateway has no connection to it at all (its gateways are gone). Without
// an active gateway nothing is known and every cluster counts as reachable.
func (h Health) Reachable(cluster, local string) bool {
	if cluster == local {
		return true
	}
	ch, ok := h.Clusters[cluster]
	if !ok {
		return !h.Active
	}
	return !ch.Error
}

// nearer orders clusters a and b, of mean RTTs ra and rb, nearest first:
// by RTT, an unknown one (0) last, then by ID. Bound picks the nearest
// cluster by it, and the import controller's Gateway filter watches the
// same order.
func nearer(a, b string, ra, rb time.Duration) int {
	switch {
	case ra == 0 && rb != 0:
		return 1
	case rb == 0 && ra != 0:
		return -1
	}
	return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(a, b))
}

// Source is what one exporting cluster offers an importing cluster: the
// named ports its slices carry and whether any of its endpoints is ready.
type Source struct {
	Cluster string
	Ports   map[string]bool
	Ready   bool
}

// Bound picks the exporting clusters whose endpoints back the clusterset
// IP in the cluster local, per port name of the import (ports), under
// policy:
//
//   - a cluster whose connection is in error (health) is never picked;
//     clusters the gateway does not report on (the local one, or before
//     it has measured) count as healthy;
//   - LocalFirst (the default): for each port, the local cluster when it
//     offers that port with ready endpoints, otherwise the nearest healthy
//     cluster offering it with ready endpoints (least RTT, unknown last,
//     then by ID), otherwise every healthy cluster offering it;
//   - Balanced: for each port, every healthy cluster offering it.
//
// The result is the union over ports, sorted. kube-proxy balances each
// port over the bound clusters' slices that carry it, so a cluster picked
// for one port also takes that port's share of any other port it carries.
func Bound(local string, policy TrafficPolicy, ports []string, sources []Source, health map[string]ClusterHealth) []string {
	picked := map[string]bool{}
	healthy := func(c string) bool { return c == local || !health[c].Error }
	for _, port := range ports {
		var offer []Source
		for _, s := range sources {
			if s.Ports[port] && healthy(s.Cluster) {
				offer = append(offer, s)
			}
		}
		if policy != TrafficPolicyBalanced {
			var ready []Source
			for _, s := range offer {
				if s.Ready {
					ready = append(ready, s)
				}
			}
			if i := slices.IndexFunc(ready, func(s Source) bool { return s.Cluster == local }); i >= 0 {
				picked[local] = true
				continue
			}
			if len(ready) > 0 {
				nearest := slices.MinFunc(ready, func(a, b Source) int {
					return nearer(a.Cluster, b.Cluster, health[a.Cluster].RTT, health[b.Cluster].RTT)
				})
				picked[nearest.Cluster] = true
				continue
			}
		}
		for _, s := range offer {
			picked[s.Cluster] = true
		}
	}
	out := make([]string, 0, len(picked))
	for c := range picked {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}
