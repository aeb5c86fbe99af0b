package coredns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/lighthouse"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Store is the plugin's view of the cluster: every ServiceImport and the
// EndpointSlices Lighthouse imported for it, indexed by service, and the
// active gateway's view of the remote clusters. Informer events update it
// (SetImport, SetSlice, SetGateway and their deletes); queries read it
// under a read lock and never wait for the apiserver. The zero Store is not
// usable: use NewStore.
type Store struct {
	local     string // this cluster's ID
	component string // Strait's component namespace: records, not imports

	mu         sync.RWMutex
	services   map[serviceKey]*service
	namespaces map[string]int // services with an import, per namespace
	imports    int            // services with an import
	gateways   map[string]v1.Gateway

	health atomic.Pointer[lighthouse.Health]
	synced atomic.Bool
	serial atomic.Uint32
}

// NewStore returns an empty, unsynced Store for the cluster whose ID is
// local (the cluster.clusterset.k8s.io ClusterProperty): that cluster's
// endpoints are always reachable. Objects in namespace component (Strait's,
// strait-system) are Lighthouse's records, never answered.
func NewStore(local, component string) *Store {
	s := &Store{
		local:      local,
		component:  component,
		services:   map[serviceKey]*service{},
		namespaces: map[string]int{},
		gateways:   map[string]v1.Gateway{},
	}
	s.health.Store(&lighthouse.Health{})
	s.serial.Store(1)
	return s
}

// serviceKey names a service: its namespace and name, as Kubernetes spells
// them (lower case: both are DNS labels).
type serviceKey struct{ namespace, name string }

// service is what the store knows of one service. A value is never changed
// once stored: updates store a new one, so a query may keep using the one
// it read after the lock is released.
type service struct {
	imported bool // a ServiceImport exists
	headless bool
	ips      []netip.Addr // the clusterset IPs, one per family
	ports    []port       // the import's ports
	slices   map[string]*slice
}

// slice is one imported EndpointSlice: its source cluster, ports and
// endpoints.
type slice struct {
	cluster   string
	ports     []port
	endpoints []endpoint
}

// endpoint is one endpoint of an imported slice.
type endpoint struct {
	hostname string // the endpoint's hostname, or one derived from its first address
	addrs    []netip.Addr
	ready    bool
}

// port is a service or slice port as DNS names it: the port name and the
// protocol in lower case ("http", "tcp"), as in _http._tcp.
type port struct {
	name     string
	protocol string
	port     uint16
}

// SetImport records a ServiceImport. A record in Strait's component
// namespace (an export record, not an import) is ignored.
func (s *Store) SetImport(si *mcsv1beta1.ServiceImport) {
	if isRecord(si.Labels) || si.Namespace == s.component {
		return
	}
	var ips []netip.Addr
	for _, ip := range si.Spec.IPs {
		if a, err := netip.ParseAddr(ip); err == nil {
			ips = append(ips, a.Unmap())
		}
	}
	var ports []port
	for _, p := range si.Spec.Ports {
		ports = append(ports, newPort(p.Name, p.Protocol, p.Port))
	}
	s.update(serviceKey{si.Namespace, si.Name}, func(svc *service) {
		svc.imported = true
		svc.headless = si.Spec.Type == mcsv1beta1.Headless
		svc.ips = ips
		svc.ports = ports
	})
}

// DeleteImport forgets the ServiceImport namespace/name.
func (s *Store) DeleteImport(namespace, name string) {
	s.update(serviceKey{namespace, name}, func(svc *service) {
		*svc = service{slices: svc.slices}
	})
}

// SetSlice records an EndpointSlice Lighthouse imported (labelled with the
// MCS service name and source cluster). Other slices are ignored.
func (s *Store) SetSlice(es *discoveryv1.EndpointSlice) {
	name, cluster := es.Labels[mcsv1beta1.LabelServiceName], es.Labels[mcsv1beta1.LabelSourceCluster]
	if name == "" || cluster == "" || isRecord(es.Labels) || es.Namespace == s.component || es.Labels[discoveryv1.LabelManagedBy] != lighthouse.ManagedBy {
		return
	}
	sl := &slice{cluster: cluster}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		sl.ports = append(sl.ports, newPort(ptr.Deref(p.Name, ""), ptr.Deref(p.Protocol, corev1.ProtocolTCP), *p.Port))
	}
	for _, ep := range es.Endpoints {
		e := endpoint{ready: ptr.Deref(ep.Conditions.Ready, true)}
		for _, a := range ep.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil {
				e.addrs = append(e.addrs, addr.Unmap())
			}
		}
		if len(e.addrs) == 0 {
			continue
		}
		e.hostname = strings.ToLower(ptr.Deref(ep.Hostname, ""))
		if e.hostname == "" {
			e.hostname = addrHostname(e.addrs[0])
		}
		sl.endpoints = append(sl.endpoints, e)
	}
	s.update(serviceKey{es.Namespace, name}, func(svc *service) {
		svc.slices[es.Name] = sl
	})
}

// DeleteSlice forgets the EndpointSlice namespace/sliceName of serviceName
// (its multicluster.kubernetes.io/service-name label).
func (s *Store) DeleteSlice(namespace, serviceName, sliceName string) {
	s.update(serviceKey{namespace, serviceName}, func(svc *service) {
		delete(svc.slices, sliceName)
	})
}

// SetGateway records a Gateway of the component namespace; the active one's
// connections decide which remote clusters are reachable
// (lighthouse.GatewayHealth).
func (s *Store) SetGateway(gw *v1.Gateway) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gateways[gw.Name] = *gw
	s.updateHealth()
}

// DeleteGateway forgets the Gateway name.
func (s *Store) DeleteGateway(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.gateways, name)
	s.updateHealth()
}

func (s *Store) updateHealth() {
	gws := make([]v1.Gateway, 0, len(s.gateways))
	for _, gw := range s.gateways {
		gws = append(gws, gw)
	}
	h := lighthouse.GatewayHealth(gws)
	s.health.Store(&h)
	s.serial.Add(1)
}

// SetSynced says whether the store holds everything the apiserver had when
// the informers started; until then the plugin answers SERVFAIL.
func (s *Store) SetSynced(synced bool) { s.synced.Store(synced) }

// Synced reports what SetSynced last said.
func (s *Store) Synced() bool { return s.synced.Load() }

// Serial is the SOA serial: it changes whenever the store does.
func (s *Store) Serial() uint32 { return s.serial.Load() }

// Imports is how many ServiceImports the store holds.
func (s *Store) Imports() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.imports
}

// update replaces the service key with a copy changed by f, keeping the
// namespace counts, and drops it once it has neither import nor slices.
func (s *Store) update(key serviceKey, f func(*service)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.services[key]
	svc := &service{slices: map[string]*slice{}}
	if old != nil {
		*svc = *old
		svc.slices = make(map[string]*slice, len(old.slices)+1)
		for k, v := range old.slices {
			svc.slices[k] = v
		}
	}
	f(svc)
	if old != nil && old.imported {
		s.namespaces[key.namespace]--
		s.imports--
	}
	if svc.imported {
		s.namespaces[key.namespace]++
		s.imports++
	}
	if s.namespaces[key.namespace] <= 0 {
		delete(s.namespaces, key.namespace)
	}
	if !svc.imported && len(svc.slices) == 0 {
		delete(s.services, key)
	} else {
		s.services[key] = svc
	}
	s.serial.Add(1)
}

// lookup returns the imported service namespace/name, or nil.
func (s *Store) lookup(namespace, name string) *service {
	s.mu.RLock()
	defer s.mu.RUnlock()
	svc := s.services[serviceKey{namespace, name}]
	if svc != nil && !svc.imported {
		return nil
	}
	return svc
}

// hasNamespace reports whether namespace has any import.
func (s *Store) hasNamespace(namespace string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.namespaces[namespace] > 0
}

// readyEndpoint is a ready endpoint of a reachable cluster, with the ports
// of its slice.
type readyEndpoint struct {
	cluster string
	endpoint
	ports []port
}

// readyEndpoints lists the ready endpoints of svc in the clusters that are
// reachable now, in a stable order (cluster, hostname, first address).
func (s *Store) readyEndpoints(svc *service) []readyEndpoint {
	h := s.health.Load()
	var out []readyEndpoint
	for _, sl := range svc.slices {
		if !h.Reachable(sl.cluster, s.local) {
			continue
		}
		for _, ep := range sl.endpoints {
			if ep.ready {
				out = append(out, readyEndpoint{cluster: sl.cluster, endpoint: ep, ports: sl.ports})
			}
		}
	}
	slices.SortFunc(out, func(a, b readyEndpoint) int {
		if c := strings.Compare(a.cluster, b.cluster); c != 0 {
			return c
		}
		if c := strings.Compare(a.hostname, b.hostname); c != 0 {
			return c
		}
		return a.addrs[0].Compare(b.addrs[0])
	})
	return out
}

func newPort(name string, protocol corev1.Protocol, p int32) port {
	return port{name: strings.ToLower(name), protocol: strings.ToLower(string(protocol)), port: uint16(p)} // #nosec G115 -- a Service port is 1..65535
}

// addrHostname is the DNS label of an endpoint without a hostname, derived
// from its address as CoreDNS's kubernetes plugin names such endpoints:
// 10.1.2.3 → "10-1-2-3", fd00::1 → "fd00--1"; a label cannot begin or end
// with "-", so fd00:: → "fd00--0" and ::1 → "0--1".
func addrHostname(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	h := strings.ReplaceAll(a.String(), ":", "-")
	if strings.HasSuffix(h, "-") {
		h += "0"
	}
	if strings.HasPrefix(h, "-") {
		h = "0" + h
	}
	return h
}

// isRecord reports whether labels are those of a Lighthouse record (an
// export or slice record in the component namespace, or its broker copy):
// records carry the owning cluster's ID label; imports do not.
func isRecord(labels map[string]string) bool {
	_, ok := labels[v1.ClusterIDLabel]
	return ok
}
