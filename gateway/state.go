package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"strait.dev/strait/gateway/cable"
	"strait.dev/strait/gateway/natdiscovery"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cabledriver"
)

// natKeepalive holds a NAT mapping open; 25 s is WireGuard's usual.
const natKeepalive = 25 * time.Second

// Facts are what the active gateway's desired state is computed from: this
// gateway, the Endpoints its namespace holds (the syncer's imports and its
// own), and what NAT discovery found. Compute reads them only.
type Facts struct {
	// ClusterID is this gateway's cluster: its own Endpoints are not remotes.
	ClusterID string
	// Local is this gateway's Endpoint spec as it publishes it.
	Local v1.EndpointSpec
	// Cable are this gateway's cable settings, private key included.
	Cable cabledriver.Settings
	// HealthCheckPort is the UDP port remote gateways answer probes on.
	HealthCheckPort uint16
	// Endpoints are the Endpoints of the namespace, of any cluster, in any
	// order.
	Endpoints []v1.Endpoint
	// Reach is the address NAT discovery chose for a remote Endpoint, by
	// name; a remote without one is reached at its first public address
	// (else private).
	Reach map[string]netip.Addr
}

// CableState is what the data plane makes of the desired state: the driver
// and settings it is opened with, its peers, and the node state around it.
// It holds no API object.
type CableState struct {
	// Driver names the cable driver; Settings are what it is opened with.
	Driver   v1.CableDriver
	Settings cabledriver.Settings
	// Peers are the remote gateways, sorted by name.
	Peers []cable.Peer
	// RemoteSubnets are the peers' subnets, masked and sorted: routed
	// into the cable's table and exempt from masquerade.
	RemoteSubnets []netip.Prefix
	// HealthCheckIPs are this gateway's probe addresses, put on the cable
	// device.
	HealthCheckIPs []netip.Addr
}

// State is the active gateway's desired state.
type State struct {
	Cable CableState
	// HealthTargets are where each remote gateway answers probes, by
	// Endpoint name.
	HealthTargets map[string]netip.AddrPort
	// DiscoveryTargets are the remote gateways' NAT discovery addresses,
	// by Endpoint name.
	DiscoveryTargets map[string]natdiscovery.Target
	// Connections are the static parts of the Gateway status's connections,
	// sorted by Endpoint: an Error status is final (the remote cannot be a
	// peer), any other is replaced by the health probes' result once there
	// is one (see withHealth).
	Connections []v1.Connection
	// Skipped lists the Endpoints that are not peers, and why, sorted.
	Skipped []Skip
}

// Skip is an Endpoint that Compute left out of the peers.
type Skip struct {
	Endpoint, Reason string
}

// Compute is the active gateway's desired state from facts. It is pure:
// the same facts give the same state whatever their order. A remote
// Endpoint that cannot be a peer (another driver, malformed addresses or
// subnets, a VNI that differs) is skipped with a reason and shows as an
// Error connection; when a cluster has several Endpoints (while it fails
// over), the one of the highest epoch stands for it.
func Compute(f Facts) State {
	s := State{
		Cable:         CableState{Driver: f.Local.CableDriver, Settings: f.Cable},
		HealthTargets: map[string]netip.AddrPort{}, DiscoveryTargets: map[string]natdiscovery.Target{},
	}
	for _, ip := range f.Local.HealthCheckIPs {
		if a, err := netip.ParseAddr(string(ip)); err == nil {
			s.Cable.HealthCheckIPs = append(s.Cable.HealthCheckIPs, a)
		}
	}
	remotes, skipped := activeEndpoints(f.Endpoints, f.ClusterID)
	s.Skipped = skipped
	desc, descErr := cabledriver.Get(f.Local.CableDriver)
	for _, r := range remotes {
		c := v1.Connection{ClusterID: r.Spec.ClusterID, Endpoint: r.Name, Status: v1.Connecting,
			StatusMessage: "no health-check address published", UsingNAT: f.Local.NATTraversal || r.Spec.NATTraversal}
		if t, ok := discoveryTarget(r.Spec); ok {
			s.DiscoveryTargets[r.Name] = t
		}
		addr, addrErr := reachAddress(r.Spec)
		if a, ok := f.Reach[r.Name]; ok && a.IsValid() {
			addr, addrErr = a, nil
		}
		if addrErr == nil {
			c.UsingIP = v1.IP(addr.String())
		}
		p, err := func() (cable.Peer, error) {
			switch {
			case r.Spec.CableDriver != f.Local.CableDriver:
				return cable.Peer{}, fmt.Errorf("the remote gateway uses %s, this one %s", r.Spec.CableDriver, f.Local.CableDriver)
			case descErr != nil:
				return cable.Peer{}, descErr
			case addrErr != nil:
				return cable.Peer{}, addrErr
			}
			return peer(desc, &f.Local, &r, addr)
		}()
		if err != nil {
			c.Status, c.StatusMessage = v1.ConnectionError, err.Error()
			s.Skipped = append(s.Skipped, Skip{Endpoint: r.Name, Reason: err.Error()})
			s.Connections = append(s.Connections, c)
			continue
		}
		s.Cable.Peers = append(s.Cable.Peers, p)
		s.Cable.RemoteSubnets = append(s.Cable.RemoteSubnets, p.Subnets...)
		if t, ok := healthTarget(r.Spec, s.Cable.HealthCheckIPs, f.HealthCheckPort); ok {
			s.HealthTargets[r.Name] = t
		}
		s.Connections = append(s.Connections, c)
	}
	slices.SortFunc(s.Cable.RemoteSubnets, netip.Prefix.Compare)
	s.Cable.RemoteSubnets = slices.Compact(s.Cable.RemoteSubnets)
	slices.SortFunc(s.Skipped, func(a, b Skip) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return s
}

// peer is the cable peer of a remote Endpoint reached at addr. Keepalives
// run when either side sits behind NAT, so that the side behind it opens
// the path and keeps the mapping.
func peer(desc cabledriver.Descriptor, local *v1.EndpointSpec, r *v1.Endpoint, addr netip.Addr) (cable.Peer, error) {
	p := cable.Peer{Name: r.Name, Endpoint: netip.AddrPortFrom(addr, 0)}
	for _, sub := range r.Spec.Subnets {
		pfx, err := netip.ParsePrefix(string(sub))
		if err != nil {
			return cable.Peer{}, fmt.Errorf("subnet %q: %w", sub, err)
		}
		p.Subnets = append(p.Subnets, pfx.Masked())
	}
	if len(p.Subnets) == 0 {
		return cable.Peer{}, fmt.Errorf("no subnets")
	}
	slices.SortFunc(p.Subnets, netip.Prefix.Compare)
	if local.NATTraversal || r.Spec.NATTraversal {
		p.Keepalive = natKeepalive
	}
	if err := desc.ReadPeer(local, &r.Spec, &p); err != nil {
		return cable.Peer{}, err
	}
	return p, nil
}

// reachAddress is where a remote gateway is reached without NAT
// discovery's choice: its first public address, else its first private one.
func reachAddress(e v1.EndpointSpec) (netip.Addr, error) {
	ips := e.PublicIPs
	if len(ips) == 0 {
		ips = e.PrivateIPs
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("no address")
	}
	a, err := netip.ParseAddr(string(ips[0]))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %w", ips[0], err)
	}
	return a, nil
}

// discoveryTarget is a remote gateway's first private and public address at
// its NAT discovery port; none without the port. An address that does not
// parse is left out.
func discoveryTarget(e v1.EndpointSpec) (natdiscovery.Target, bool) {
	if e.NATDiscoveryPort <= 0 || e.NATDiscoveryPort > 65535 {
		return natdiscovery.Target{}, false
	}
	port := uint16(e.NATDiscoveryPort)
	var t natdiscovery.Target
	if len(e.PrivateIPs) > 0 {
		if a, err := netip.ParseAddr(string(e.PrivateIPs[0])); err == nil {
			t.Private = netip.AddrPortFrom(a, port)
		}
	}
	if len(e.PublicIPs) > 0 {
		if a, err := netip.ParseAddr(string(e.PublicIPs[0])); err == nil {
			t.Public = netip.AddrPortFrom(a, port)
		}
	}
	return t, t.Private.IsValid() || t.Public.IsValid()
}

// healthTarget is the remote health-check address to probe: the first one
// of a family this gateway has a health-check address in (the probe leaves
// from it through the cable), else the first that parses.
func healthTarget(e v1.EndpointSpec, local []netip.Addr, port uint16) (netip.AddrPort, bool) {
	var first netip.Addr
	for _, ip := range e.HealthCheckIPs {
		a, err := netip.ParseAddr(string(ip))
		if err != nil {
			continue
		}
		if !first.IsValid() {
			first = a
		}
		for _, l := range local {
			if l.Is4() == a.Is4() {
				return netip.AddrPortFrom(a, port), true
			}
		}
	}
	return netip.AddrPortFrom(first, port), first.IsValid()
}

// activeEndpoints keeps one Endpoint per other cluster, sorted by name:
// while a cluster fails over, its old and new gateways' Endpoints may both
// be here for a moment, and the one with the higher epoch is the active one.
// It returns the others as skipped, with the one that superseded them.
func activeEndpoints(eps []v1.Endpoint, self string) ([]v1.Endpoint, []Skip) {
	best := map[string]v1.Endpoint{}
	var skipped []Skip
	for _, ep := range eps {
		c, ok := ep.Labels[v1.ClusterIDLabel]
		switch {
		case !ok:
			skipped = append(skipped, Skip{Endpoint: ep.Name, Reason: "no " + v1.ClusterIDLabel + " label"})
		case c == self:
		default:
			if cur, ok := best[c]; !ok || newerGateway(ep, cur) {
				best[c] = ep
			}
		}
	}
	for _, ep := range eps {
		c, ok := ep.Labels[v1.ClusterIDLabel]
		if w, won := best[c]; ok && won && w.Name != ep.Name {
			skipped = append(skipped, Skip{Endpoint: ep.Name, Reason: fmt.Sprintf("superseded by %s (epoch %d, this one %d)", w.Name, epoch(w), epoch(ep))})
		}
	}
	out := make([]v1.Endpoint, 0, len(best))
	for _, ep := range best {
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b v1.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	return out, skipped
}

// epoch is the Lease term an Endpoint's gateway published it in; 0 without
// (or with a malformed) annotation.
func epoch(e v1.Endpoint) int {
	n, _ := strconv.Atoi(e.Annotations[v1.GatewayEpochAnnotation])
	return n
}

// newerGateway: a's gateway became active after b's. A higher epoch wins;
// between equal epochs the later creation, then the greater name (so that
// the choice never depends on the order of the input).
func newerGateway(a, b v1.Endpoint) bool {
	if ea, eb := epoch(a), epoch(b); ea != eb {
		return ea > eb
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

// String renders the cable state, one line per item, as the golden tests
// compare it. The private key is redacted; peers' public keys show.
func (c CableState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cable %s %s\n", c.Driver, c.Settings)
	for _, a := range c.HealthCheckIPs {
		fmt.Fprintf(&b, "health-check-ip %s\n", a)
	}
	for _, p := range c.Peers {
		ka := "off"
		if p.Keepalive > 0 {
			ka = p.Keepalive.String()
		}
		key := p.PublicKey
		if key == "" {
			key = "none"
		}
		fmt.Fprintf(&b, "peer %s endpoint %s key %s keepalive %s subnets %s\n", p.Name, p.Endpoint, key, ka, joinPrefixes(p.Subnets))
	}
	for _, s := range c.RemoteSubnets {
		fmt.Fprintf(&b, "route %s\n", s)
	}
	return b.String()
}

// Equal reports whether two cable states are the same (private key
// included), so that the engine hands the data plane only changes.
func (c CableState) Equal(o CableState) bool {
	return c.String() == o.String() && c.Settings == o.Settings
}

// String renders the whole desired state, one line per item, sorted.
func (s State) String() string {
	var b strings.Builder
	b.WriteString(s.Cable.String())
	for _, n := range sortedKeys(s.HealthTargets) {
		fmt.Fprintf(&b, "health %s %s\n", n, s.HealthTargets[n])
	}
	for _, n := range sortedKeys(s.DiscoveryTargets) {
		t := s.DiscoveryTargets[n]
		fmt.Fprintf(&b, "discover %s private %s public %s\n", n, addrPortOrNone(t.Private), addrPortOrNone(t.Public))
	}
	for _, c := range s.Connections {
		using := string(c.UsingIP)
		if using == "" {
			using = "none"
		}
		fmt.Fprintf(&b, "connection %s cluster %s using %s nat %v status %s %q\n", c.Endpoint, c.ClusterID, using, c.UsingNAT, c.Status, c.StatusMessage)
	}
	for _, k := range s.Skipped {
		fmt.Fprintf(&b, "skip %s: %s\n", k.Endpoint, k.Reason)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func addrPortOrNone(a netip.AddrPort) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

func joinPrefixes(ps []netip.Prefix) string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return strings.Join(ss, ",")
}
