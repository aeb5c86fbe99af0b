// Package coredns is Lighthouse's CoreDNS plugin, "lighthouse": it answers
// the clusterset zone (clusterset.local) of the Multi-Cluster Services API
// from the ServiceImports and EndpointSlices Lighthouse writes in the
// member cluster, as KEP-1645 and the MCS DNS specification
// (sigs.k8s.io/mcs-api docs/dns.md, version 1.0.0) describe. cmd/strait-dns
// is the CoreDNS build that runs it; README.md gives the Corefile syntax.
package coredns

import (
	"context"
	"errors"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/etcd/msg"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// pluginName is the plugin's name in a Corefile and in metrics.
const pluginName = "lighthouse"

// DefaultTTL is the TTL of every answer unless the Corefile says otherwise:
// short, because a cluster's endpoints leave answers when its connection
// fails and clients should not hold on to them for long.
const DefaultTTL = 5

// errNoItems says a name does not exist (NXDOMAIN).
var errNoItems = errors.New("no such name")

// Lighthouse is the plugin: a plugin.Handler, and the plugin.ServiceBackend
// through which CoreDNS's record helpers (plugin.A, plugin.SRV, ...) build
// the answers.
type Lighthouse struct {
	Next plugin.Handler
	// Zones are the zones answered, lower-case FQDNs ("clusterset.local.").
	Zones []string
	// TTL of the answers and of the SOA's minimum, seconds.
	TTL uint32
	// Fall passes NXDOMAIN names under these zones to the next plugin.
	Fall fall.F
	// Store holds what the answers are made from.
	Store *Store
}

// Name implements plugin.Handler.
func (l *Lighthouse) Name() string { return pluginName }

// Ready implements the ready plugin's Readiness: the store has synced.
func (l *Lighthouse) Ready() bool { return l.Store.Synced() }

// ServeDNS implements plugin.Handler: names under the zones are answered
// from the store, others go to the next plugin. Before the store has
// synced every answer but dns-version's is SERVFAIL (never a false NXDOMAIN); a name that
// does not exist is NXDOMAIN and one without records of the type NODATA,
// both with the zone's SOA (RFC 2308). AXFR and IXFR are refused; ANY is
// answered with the name's addresses (RFC 8482 allows a subset).
func (l *Lighthouse) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if r == nil || len(r.Question) != 1 {
		return dns.RcodeFormatError, nil
	}
	state := request.Request{W: w, Req: r}
	qname := state.Name()
	zone := plugin.Zones(l.Zones).Matches(qname)
	if zone == "" {
		return plugin.NextOrFailure(l.Name(), l.Next, ctx, w, r)
	}
	server := metrics.WithServer(ctx)
	// answered counts a response the plugin made itself: its rcode, and
	// whether it carried records from the imports.
	answered := func(rcode int, records bool) {
		responseCount.WithLabelValues(server, zone, rcodeName(rcode)).Inc()
		if records {
			importAnswerCount.WithLabelValues(server, zone).Inc()
		}
	}
	if state.QClass() != dns.ClassINET {
		answered(dns.RcodeRefused, false)
		return dns.RcodeRefused, nil
	}
	state.Zone = zone
	q := parse(qname, zone)
	requestCount.WithLabelValues(server, zone, q.kind.String(), qtypeName(state.QType())).Inc()
	if !l.Store.Synced() && q.kind != kindVersion {
		answered(dns.RcodeServerFailure, false)
		return plugin.BackendError(ctx, l, zone, dns.RcodeServerFailure, state, nil, plugin.Options{})
	}

	var (
		records, extra []dns.RR
		err            error
	)
	opt := plugin.Options{}
	switch state.QType() {
	case dns.TypeA:
		records, _, err = plugin.A(ctx, l, zone, state, nil, opt)
	case dns.TypeAAAA:
		records, _, err = plugin.AAAA(ctx, l, zone, state, nil, opt)
	case dns.TypeANY:
		records, _, err = plugin.A(ctx, l, zone, state, nil, opt)
		if err == nil {
			var six []dns.RR
			six, _, err = plugin.AAAA(ctx, l, zone, state, nil, opt)
			records = append(records, six...)
		}
	case dns.TypeSRV:
		records, extra, err = plugin.SRV(ctx, l, zone, state, opt)
	case dns.TypeTXT:
		records, _, err = plugin.TXT(ctx, l, zone, state, nil, opt)
	case dns.TypeSOA:
		if qname == zone {
			records, err = plugin.SOA(ctx, l, zone, state, opt)
		} else {
			_, err = l.Services(ctx, state, true, opt)
		}
	case dns.TypeAXFR, dns.TypeIXFR:
		answered(dns.RcodeRefused, false)
		return dns.RcodeRefused, nil
	default:
		// NODATA or NXDOMAIN, as the name exists or not.
		_, err = l.Services(ctx, state, true, opt)
	}
	if l.IsNameError(err) {
		if l.Fall.Through(qname) {
			return plugin.NextOrFailure(l.Name(), l.Next, ctx, w, r)
		}
		answered(dns.RcodeNameError, false)
		return plugin.BackendError(ctx, l, zone, dns.RcodeNameError, state, nil, opt)
	}
	if err != nil {
		answered(dns.RcodeServerFailure, false)
		return dns.RcodeServerFailure, err
	}
	if len(records) == 0 {
		answered(dns.RcodeSuccess, false)
		return plugin.BackendError(ctx, l, zone, dns.RcodeSuccess, state, nil, opt)
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.Answer = records
	m.Extra = extra
	// Too large for the client's UDP buffer: CoreDNS's server wraps w in
	// request.ScrubWriter, which truncates and sets TC (the full answer
	// goes over TCP); EDNS0 buffer sizes are honoured there.
	if err := w.WriteMsg(m); err != nil {
		answered(dns.RcodeServerFailure, false)
		return dns.RcodeServerFailure, err
	}
	answered(dns.RcodeSuccess, true)
	return dns.RcodeSuccess, nil
}

// Services implements plugin.ServiceBackend: the records of the question's
// name, as msg.Service values whose Host is an address (or, at
// dns-version, whose Text is the version) and whose Key is the path of
// the name an SRV record targets. Errors: errNoItems when the name does
// not exist.
func (l *Lighthouse) Services(_ context.Context, state request.Request, _ bool, _ plugin.Options) ([]msg.Service, error) {
	zone := state.Zone
	if zone == "" {
		zone = plugin.Zones(l.Zones).Matches(state.Name())
	}
	q := parse(state.Name(), zone)
	srv := state.QType() == dns.TypeSRV
	switch q.kind {
	case kindVersion:
		if state.QType() != dns.TypeTXT {
			return nil, nil
		}
		return []msg.Service{{Text: SpecVersion, TTL: l.TTL}}, nil
	case kindEmpty:
		return nil, nil
	case kindNS:
		if l.Store.hasNamespace(q.namespace) {
			return nil, nil
		}
		return nil, errNoItems
	case kindService, kindPort, kindEndpoint:
	default:
		return nil, errNoItems
	}
	svc := l.Store.lookup(q.namespace, q.service)
	if svc == nil {
		return nil, errNoItems
	}
	serviceName := dns.Fqdn(q.service + "." + q.namespace + ".svc." + zone)
	serviceKey := msg.Path(serviceName, pluginName)
	var out []msg.Service
	switch q.kind {
	case kindService:
		if !svc.headless {
			for _, ip := range svc.ips {
				out = appendPorts(out, ip.String(), serviceKey, svc.ports, l.TTL)
			}
			return out, nil
		}
		eps := l.Store.readyEndpoints(svc)
		if len(eps) == 0 {
			return nil, errNoItems
		}
		for _, ep := range eps {
			key := msg.Path(endpointName(ep, serviceName), pluginName)
			for _, a := range ep.addrs {
				out = appendPorts(out, a.String(), key, ep.ports, l.TTL)
			}
		}
		return out, nil

	case kindPort:
		var match []port
		for _, p := range svc.ports {
			if p.name == q.portName && p.protocol == q.protocol {
				match = append(match, p)
			}
		}
		if len(match) == 0 {
			return nil, errNoItems
		}
		if !svc.headless {
			if !srv {
				return nil, nil
			}
			for _, ip := range svc.ips {
				out = appendPorts(out, ip.String(), serviceKey, match, l.TTL)
			}
			return out, nil
		}
		eps := l.Store.readyEndpoints(svc)
		for _, ep := range eps {
			var ports []port
			for _, p := range ep.ports {
				if p.name == q.portName && p.protocol == q.protocol {
					ports = append(ports, p)
				}
			}
			if len(ports) == 0 {
				continue
			}
			key := msg.Path(endpointName(ep, serviceName), pluginName)
			for _, a := range ep.addrs {
				out = appendPorts(out, a.String(), key, ports, l.TTL)
			}
		}
		if len(out) == 0 {
			return nil, errNoItems
		}
		if !srv {
			return nil, nil
		}
		return out, nil

	default: // kindEndpoint
		if !svc.headless {
			return nil, errNoItems
		}
		for _, ep := range l.Store.readyEndpoints(svc) {
			if ep.cluster != q.cluster || ep.hostname != q.hostname {
				continue
			}
			for _, a := range ep.addrs {
				out = append(out, msg.Service{Host: a.String(), Port: -1, TTL: l.TTL, Key: msg.Path(state.Name(), pluginName)})
			}
		}
		if len(out) == 0 {
			return nil, errNoItems
		}
		return out, nil
	}
}

// endpointName is the name of a headless service's endpoint:
// <hostname>.<clusterid>.<serviceName>.
func endpointName(ep readyEndpoint, serviceName string) string {
	return ep.hostname + "." + ep.cluster + "." + serviceName
}

// appendPorts appends one msg.Service per port at host, or one without a
// port (-1, no SRV) when there are none.
func appendPorts(out []msg.Service, host, key string, ports []port, ttl uint32) []msg.Service {
	if len(ports) == 0 {
		return append(out, msg.Service{Host: host, Port: -1, TTL: ttl, Key: key})
	}
	for _, p := range ports {
		out = append(out, msg.Service{Host: host, Port: int(p.port), TTL: ttl, Key: key})
	}
	return out
}

// Reverse implements plugin.ServiceBackend: the plugin answers no PTR.
func (l *Lighthouse) Reverse(context.Context, request.Request, bool, plugin.Options) ([]msg.Service, error) {
	return nil, errNoItems
}

// Lookup implements plugin.ServiceBackend: names outside the zone are not
// looked up (every SRV target is inside it).
func (l *Lighthouse) Lookup(context.Context, request.Request, string, uint16) (*dns.Msg, error) {
	return nil, errNoItems
}

// Records implements plugin.ServiceBackend.
func (l *Lighthouse) Records(ctx context.Context, state request.Request, exact bool) ([]msg.Service, error) {
	return l.Services(ctx, state, exact, plugin.Options{})
}

// IsNameError implements plugin.ServiceBackend.
func (l *Lighthouse) IsNameError(err error) bool { return errors.Is(err, errNoItems) }

// Serial implements plugin.ServiceBackend: the store's serial.
func (l *Lighthouse) Serial(request.Request) uint32 { return l.Store.Serial() }

// MinTTL implements plugin.ServiceBackend: the TTL.
func (l *Lighthouse) MinTTL(request.Request) uint32 { return l.TTL }

var (
	_ plugin.Handler        = (*Lighthouse)(nil)
	_ plugin.ServiceBackend = (*Lighthouse)(nil)
)
