package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"strait.dev/strait/gateway/announce"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// An active term's side of takeover announcements
// (docs/failover-without-broker.md, decisions 2 and 3). A gateway that takes
// the Lease tells every other cluster's active gateway so on their NAT
// discovery ports, which every gateway opens to the others, and repeats it
// until each acknowledges. A gateway that receives one from a candidate of a
// cluster's current Endpoint, newer than that Endpoint, moves its cable to
// the candidate at once (the announced Endpoint stands for the cluster in
// the desired state) and acknowledges. The Lease stays the authority: when
// the broker brings an Endpoint of that cluster as new as the announced one,
// the broker's stands again, and the highest epoch decides as without
// announcements.
const (
	// announceInterval is how often a new active gateway repeats its
	// announcement to a remote gateway that has not acknowledged it: a
	// lost datagram costs at most this much of the failover's gap.
	announceInterval = 100 * time.Millisecond
	// announceFor bounds how long it announces: the Lease's duration. A
	// remote gateway that has not answered by then learns of the takeover
	// through the broker, as without announcements.
	announceFor = leaseDuration
	// inboxSize is how many received datagrams wait for the term's loop;
	// more are dropped (their senders repeat every announceInterval).
	inboxSize = 64
)

// datagram is a datagram received on the NAT discovery port that is not a
// NAT discovery message, and its source.
type datagram struct {
	b    []byte
	from netip.AddrPort
}

// takeover is what an active term knows of takeover announcements: its own
// (epoch, which remote clusters acknowledged it, until when to repeat it)
// and the other clusters' (the Endpoints they stand for).
type takeover struct {
	cluster, node string
	epoch         uint32
	// keyed: the cable driver has keys (WireGuard); private is this
	// gateway's cable key then. Without keys (VXLAN) messages are sealed
	// without keys and their senders known by source address.
	keyed   bool
	private announce.Key
	inbox   chan datagram
	// announced are the Endpoints that accepted announcements stand for,
	// by cluster ID, until the Endpoints at hand catch up (endpoints).
	announced map[string]v1.Endpoint
	acked     map[string]bool
	until     time.Time
	log       *slog.Logger
	// refused is the last refusal logged: a sender repeats every
	// announceInterval, its refusal is logged once.
	refused string
}

// newTakeover is the takeover state of a term of epoch that starts now,
// with the cable settings s of driver desc. A keyed driver's private key
// must parse (a WireGuard key, base64).
func newTakeover(cluster, node string, epoch int32, desc cabledriver.Descriptor, s cabledriver.Settings, log *slog.Logger) (*takeover, error) {
	tk := &takeover{cluster: cluster, node: node, epoch: uint32(max(epoch, 0)), inbox: make(chan datagram, inboxSize),
		announced: map[string]v1.Endpoint{}, acked: map[string]bool{}, until: time.Now().Add(announceFor), log: log}
	if err := tk.setKey(desc, s); err != nil {
		return nil, err
	}
	return tk, nil
}

// setKey takes the cable's (perhaps rotated) key.
func (tk *takeover) setKey(desc cabledriver.Descriptor, s cabledriver.Settings) error {
	tk.keyed = desc.Key != nil
	if !tk.keyed {
		return nil
	}
	k, err := wgtypes.ParseKey(s.PrivateKey)
	if err != nil {
		return fmt.Errorf("cable key for takeover announcements: %w", err)
	}
	tk.private = announce.Key(k)
	return nil
}

// deliver queues a datagram from the NAT discovery socket's reading
// goroutine (natdiscovery.Discoverer.SetOther); it never blocks.
func (tk *takeover) deliver(b []byte, from netip.AddrPort) {
	select {
	case tk.inbox <- datagram{b: slices.Clone(b), from: from}:
	default:
	}
}

// endpoints are cached (the Endpoints of the namespace) with the announced
// Endpoints added. An announced Endpoint is dropped once cached has one of
// its cluster with an epoch at least as high (the broker brought the new
// gateway's own, or a newer one), or none of its cluster at all (the
// cluster left).
func (tk *takeover) endpoints(cached []v1.Endpoint) []v1.Endpoint {
	if len(tk.announced) == 0 {
		return cached
	}
	out := slices.Clone(cached)
	for c, a := range tk.announced {
		known, caughtUp := false, false
		for _, ep := range cached {
			if ep.Labels[v1.ClusterIDLabel] == c {
				known = true
				caughtUp = caughtUp || epoch(ep) >= epoch(a)
			}
		}
		if !known || caughtUp {
			delete(tk.announced, c)
			continue
		}
		out = append(out, a)
	}
	return out
}

// announce sends this term's announcement to the active gateway of every
// remote cluster in eps that has not acknowledged it, on each of its NAT
// discovery addresses, with send. It reports whether to go on: false once
// every remote acknowledged or announceFor passed.
func (tk *takeover) announce(eps []v1.Endpoint, send func(b []byte, to netip.AddrPort) error) bool {
	now := time.Now()
	if now.After(tk.until) {
		return false
	}
	remotes, _ := activeEndpoints(eps, tk.cluster)
	pending := false
	for _, r := range remotes {
		if tk.acked[string(r.Spec.ClusterID)] {
			continue
		}
		m := announce.Message{Kind: announce.Takeover, ClusterID: tk.cluster, Node: tk.node, Epoch: tk.epoch, Sent: now}
		b, err := tk.seal(m, r.Spec.WireGuard)
		if err != nil {
			tk.refuse(fmt.Sprintf("cannot announce the takeover to %s: %v", r.Name, err))
			continue
		}
		t, ok := discoveryTarget(r.Spec)
		if !ok {
			continue
		}
		pending = true
		if t.Private.IsValid() {
			_ = send(b, t.Private) // repeated every announceInterval
		}
		if t.Public.IsValid() && t.Public != t.Private {
			_ = send(b, t.Public)
		}
	}
	return pending
}

// seal seals m for the gateway with WireGuard settings wg (nil: none
// published), with keys or without as the driver has them.
func (tk *takeover) seal(m announce.Message, wg *v1.WireGuardConfig) ([]byte, error) {
	if !tk.keyed {
		return announce.SealUnkeyed(m)
	}
	if wg == nil {
		return nil, errors.New("it publishes no key")
	}
	k, err := wgtypes.ParseKey(wg.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("its key: %w", err)
	}
	return announce.Seal(m, tk.private, announce.Key(k))
}

// receive handles datagram d against the Endpoints at hand (eps, with the
// announced ones: endpoints). An acknowledgement of this term's
// announcement marks its cluster acknowledged. An announcement from a
// candidate of its cluster's current Endpoint, newer than it, makes the
// Endpoint it stands for the cluster's (switched: the caller steps the
// data plane before it sends the reply); one from the gateway that already
// stands for its cluster in that epoch (a repeat: the acknowledgement was
// lost, or the broker was faster) is only acknowledged again. reply is the
// acknowledgement to send back to d's source; nil for none. Anything else
// is refused, logged once.
func (tk *takeover) receive(d datagram, eps []v1.Endpoint) (reply []byte, switched bool) {
	m, err := tk.open(d, eps)
	if err != nil {
		tk.refuse(fmt.Sprintf("refused a takeover message from %s: %v", d.from, err))
		return nil, false
	}
	if m.Kind == announce.Ack {
		if m.Epoch == tk.epoch && !tk.acked[m.ClusterID] {
			tk.acked[m.ClusterID] = true
			tk.log.Info("takeover acknowledged", "remoteCluster", m.ClusterID, "remoteGateway", m.Node, "epoch", m.Epoch)
		}
		return nil, false
	}
	ep, err := announcedEndpoint(eps, tk.cluster, m)
	switch {
	case err == nil:
		tk.announced[m.ClusterID] = ep
		switched = true
		tk.log.Info("remote cluster announced a new active gateway; moving the cable to it", "remoteCluster", m.ClusterID,
			"remoteGateway", m.Node, "epoch", m.Epoch, "endpoint", ep.Name)
	case errors.Is(err, errNotNewer) && tk.standsFor(eps, m):
	default:
		tk.refuse(fmt.Sprintf("refused a takeover announcement from %s: %v", d.from, err))
		return nil, false
	}
	ack := announce.Message{Kind: announce.Ack, ClusterID: tk.cluster, Node: tk.node, Epoch: m.Epoch, Sent: time.Now()}
	// eps describe the sender (a candidate, or the gateway standing for
	// its cluster), whether it just switched or not.
	if reply, err = tk.sealTo(ack, eps, m); err != nil {
		tk.refuse(fmt.Sprintf("cannot acknowledge %s/%s's takeover: %v", m.ClusterID, m.Node, err))
		return nil, switched
	}
	return reply, switched
}

// sealTo seals m for the gateway that stands for announcement a's cluster
// in eps.
func (tk *takeover) sealTo(m announce.Message, eps []v1.Endpoint, a announce.Message) ([]byte, error) {
	g, ok := gatewayIn(eps, tk.cluster, a.ClusterID, a.Node)
	if !ok {
		return nil, errors.New("not in its cluster's Endpoint")
	}
	return tk.seal(m, g.WireGuard)
}

// standsFor reports whether m's sender is the gateway whose Endpoint stands
// for its cluster in eps, in m's epoch.
func (tk *takeover) standsFor(eps []v1.Endpoint, m announce.Message) bool {
	remotes, _ := activeEndpoints(eps, tk.cluster)
	for _, r := range remotes {
		if string(r.Spec.ClusterID) == m.ClusterID {
			return r.Spec.Hostname == m.Node && epoch(r) == int(m.Epoch)
		}
	}
	return false
}

// open opens d from a gateway of another cluster described in eps (the
// active one or a candidate): by its key with a keyed driver, else by its
// source address, which must be one of the gateway's published addresses.
func (tk *takeover) open(d datagram, eps []v1.Endpoint) (announce.Message, error) {
	if tk.keyed {
		return announce.Open(d.b, tk.private, func(cluster, node string) (announce.Key, bool) {
			g, ok := gatewayIn(eps, tk.cluster, cluster, node)
			if !ok || g.WireGuard == nil {
				return announce.Key{}, false
			}
			k, err := wgtypes.ParseKey(g.WireGuard.PublicKey)
			return announce.Key(k), err == nil
		})
	}
	m, err := announce.OpenUnkeyed(d.b)
	if err != nil {
		return announce.Message{}, err
	}
	g, ok := gatewayIn(eps, tk.cluster, m.ClusterID, m.Node)
	if !ok {
		return announce.Message{}, fmt.Errorf("%w: %s/%s", announce.ErrUnknownSender, m.ClusterID, m.Node)
	}
	for _, ip := range slices.Concat(g.PrivateIPs, g.PublicIPs) {
		if a, err := netip.ParseAddr(string(ip)); err == nil && a.Unmap() == d.from.Addr().Unmap() {
			return m, nil
		}
	}
	return announce.Message{}, fmt.Errorf("%s/%s's message came from %s, not one of its published addresses", m.ClusterID, m.Node, d.from.Addr())
}

// refuse logs why a message was refused or could not be sent, once in a
// row.
func (tk *takeover) refuse(why string) {
	if why != tk.refused {
		tk.refused = why
		tk.log.Info(why)
	}
}

// gatewayIn describes node of cluster as the cluster's current Endpoint in
// eps does (self is this gateway's cluster): the active gateway itself, or
// one of its candidates.
func gatewayIn(eps []v1.Endpoint, self, cluster, node string) (v1.GatewayCandidate, bool) {
	remotes, _ := activeEndpoints(eps, self)
	for _, ep := range remotes {
		if string(ep.Spec.ClusterID) != cluster {
			continue
		}
		if ep.Spec.Hostname == node {
			s := ep.Spec
			return v1.GatewayCandidate{Hostname: s.Hostname, PrivateIPs: s.PrivateIPs, PublicIPs: s.PublicIPs,
				NATTraversal: s.NATTraversal, WireGuard: s.WireGuard, VXLAN: s.VXLAN, HealthCheckIPs: s.HealthCheckIPs}, true
		}
		i := slices.IndexFunc(ep.Spec.Candidates, func(c v1.GatewayCandidate) bool { return c.Hostname == node })
		if i >= 0 {
			return ep.Spec.Candidates[i], true
		}
		return v1.GatewayCandidate{}, false
	}
	return v1.GatewayCandidate{}, false
}
