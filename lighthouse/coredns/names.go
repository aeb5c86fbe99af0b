package coredns

import (
	"slices"
	"strings"
)

// The names of the clusterset zone (KEP-1645, "DNS"; the MCS DNS
// specification, sigs.k8s.io/mcs-api docs/dns.md), relative to the zone
// (clusterset.local):
//
//	dns-version                                       TXT "1.0.0"
//	<svc>.<ns>.svc                                    the service
//	_<port>._<proto>.<svc>.<ns>.svc                   one of its named ports
//	<hostname>.<clusterid>.<svc>.<ns>.svc             one endpoint of a headless service
//
// <clusterid>.<svc>.<ns>.svc is reserved by the KEP and does not exist. A
// cluster ID is a DNS subdomain (KEP-2149) and may have several labels, so
// everything between the hostname and the service is the cluster ID.

// versionLabel and SpecVersion: the TXT record at dns-version.<zone> holds
// the version of the DNS specification the server implements.
const (
	versionLabel = "dns-version"
	// SpecVersion is the version of the MCS DNS specification this plugin
	// answers.
	SpecVersion = "1.0.0"
)

// kind is what a name under the zone is.
type kind int

const (
	kindNone     kind = iota // no such name
	kindEmpty                // a name that exists without records of its own: the apex, "svc"
	kindNS                   // <ns>.svc: exists while the namespace has an import
	kindVersion              // dns-version
	kindService              // <svc>.<ns>.svc
	kindPort                 // _<port>._<proto>.<svc>.<ns>.svc
	kindEndpoint             // <hostname>.<clusterid>.<svc>.<ns>.svc
)

// String names the kind in metrics.
func (k kind) String() string {
	switch k {
	case kindEmpty, kindNS:
		return "empty"
	case kindVersion:
		return "version"
	case kindService:
		return "service"
	case kindPort:
		return "port"
	case kindEndpoint:
		return "endpoint"
	}
	return "none"
}

// query is a parsed name.
type query struct {
	kind               kind
	namespace, service string
	portName, protocol string // kindPort, without the underscores
	hostname, cluster  string // kindEndpoint
}

// parse reads name, a lower-case FQDN under zone (also a lower-case FQDN).
func parse(name, zone string) query {
	rel, ok := strings.CutSuffix(name, zone)
	if !ok {
		return query{}
	}
	if rel == "" {
		return query{kind: kindEmpty}
	}
	rel = strings.TrimSuffix(rel, ".")
	if rel == versionLabel {
		return query{kind: kindVersion}
	}
	labels := strings.Split(rel, ".")
	n := len(labels)
	if labels[n-1] != "svc" || slices.Contains(labels, "") {
		return query{}
	}
	switch n {
	case 1:
		return query{kind: kindEmpty}
	case 2:
		return query{kind: kindNS, namespace: labels[0]}
	}
	q := query{namespace: labels[n-2], service: labels[n-3]}
	prefix := labels[:n-3]
	switch {
	case len(prefix) == 0:
		q.kind = kindService
	case strings.HasPrefix(prefix[0], "_"):
		if len(prefix) != 2 || !strings.HasPrefix(prefix[1], "_") || len(prefix[0]) < 2 || len(prefix[1]) < 2 {
			return query{}
		}
		q.kind, q.portName, q.protocol = kindPort, prefix[0][1:], prefix[1][1:]
	case len(prefix) == 1:
		return query{} // <clusterid>.<svc>.<ns>.svc: reserved
	default:
		q.kind, q.hostname, q.cluster = kindEndpoint, prefix[0], strings.Join(prefix[1:], ".")
	}
	return q
}
