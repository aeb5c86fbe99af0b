package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"strait.dev/strait/lighthouse"
)

// sourceCluster is the cluster every imported service comes from, and
// localCluster the one the DNS servers run in: the imported slices are
// written as Lighthouse writes a remote cluster's.
const (
	sourceCluster = "c2"
	localCluster  = "c1"
)

// loadWorkers is how many objects are created at once: enough to keep the
// apiserver busy on two cores, few enough not to trip its
// max-requests-inflight (400 by default).
const loadWorkers = 32

// svcSpec is one service of the data set: the same name and namespace
// serve as a ServiceImport (clusterset.local) and as an ordinary Service
// (cluster.local).
type svcSpec struct {
	ns, name string
	headless bool
	ip       netip.Addr   // the clusterset IP (ClusterSetIP imports only)
	eps      []netip.Addr // ready endpoints
	notReady netip.Addr   // one endpoint that is not ready (headless only)
}

// dataSet is what the benchmark loads: n services over nsCount
// namespaces, every headlessEvery-th one headless.
func dataSet(n, nsCount, headlessEvery, headlessEndpoints int) []svcSpec {
	out := make([]svcSpec, n)
	for i := range out {
		s := svcSpec{
			ns:       fmt.Sprintf("bench-%02d", i%nsCount),
			name:     fmt.Sprintf("svc-%05d", i),
			headless: headlessEvery > 0 && i%headlessEvery == headlessEvery-1,
		}
		// Endpoints in 10.128.0.0/9, clusterset IPs in 100.64.0.0/10:
		// 4 endpoint addresses per service, one IP per import.
		ep := func(k int) netip.Addr {
			v := 10<<24 + 128<<16 + i*4 + k
			return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		}
		if s.headless {
			for k := range headlessEndpoints {
				s.eps = append(s.eps, ep(k%3))
			}
			s.notReady = ep(3)
		} else {
			v := 100<<24 + 64<<16 + i
			s.ip = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			s.eps = []netip.Addr{ep(0), ep(1)}
		}
		out[i] = s
	}
	return out
}

// namespaces returns the distinct namespaces of set, in order.
func namespaces(set []svcSpec) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range set {
		if !seen[s.ns] {
			seen[s.ns] = true
			out = append(out, s.ns)
		}
	}
	return out
}

var benchPorts = []discoveryv1.EndpointPort{
	{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](80)},
	{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](53)},
}

// endpoints returns s's endpoints as EndpointSlice endpoints.
func (s svcSpec) endpoints() []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, ip := range s.eps {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if s.notReady.IsValid() {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{s.notReady.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}})
	}
	return out
}

// createNamespaces creates the data set's namespaces and strait-system.
func createNamespaces(ctx context.Context, cs kubernetes.Interface, set []svcSpec) error {
	for _, ns := range append(namespaces(set), "strait-system") {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	return nil
}

// loadImports creates, per service, the ServiceImport and the
// EndpointSlice that Lighthouse writes in an importing cluster for an
// export from sourceCluster (lighthouse.SliceRecord, then
// lighthouse.ImportedSlice: the same labels and shape).
func loadImports(ctx context.Context, cfg *rest.Config, set []svcSpec) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mcs, err := mcsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return parallel(len(set), func(i int) error {
		s := set[i]
		si := &mcsv1beta1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name},
			Spec: mcsv1beta1.ServiceImportSpec{
				Type: mcsv1beta1.ClusterSetIP,
				Ports: []mcsv1beta1.ServicePort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
					{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
				},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			},
		}
		if s.headless {
			si.Spec.Type = mcsv1beta1.Headless
		} else {
			si.Spec.IPs = []string{s.ip.String()}
		}
		created, err := mcs.MulticlusterV1beta1().ServiceImports(s.ns).Create(ctx, si, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create ServiceImport %s/%s: %w", s.ns, s.name, err)
		}
		local := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: s.ns, Name: s.name + "-abcde"},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       benchPorts,
			Endpoints:   s.endpoints(),
		}
		rec := lighthouse.SliceRecord(local, s.name, sourceCluster, "strait-system")
		owner := metav1.OwnerReference{APIVersion: mcsv1beta1.GroupVersion.String(), Kind: "ServiceImport", Name: created.Name, UID: created.UID}
		sl := lighthouse.ImportedSlice(rec, localCluster, !s.headless, owner)
		sl.TypeMeta = metav1.TypeMeta{}
		if _, err := cs.DiscoveryV1().EndpointSlices(s.ns).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create imported EndpointSlice %s/%s: %w", s.ns, sl.Name, err)
		}
		return nil
	})
}

// loadServices creates, per service, the ordinary Service (ClusterIP from
// the apiserver, or headless) and its EndpointSlice as the EndpointSlice
// controller would write it: stock CoreDNS's equivalent of the imports.
func loadServices(ctx context.Context, cfg *rest.Config, set []svcSpec) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return parallel(len(set), func(i int) error {
		s := set[i]
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
			}},
		}
		if s.headless {
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		}
		if _, err := cs.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Service %s/%s: %w", s.ns, s.name, err)
		}
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name + "-abcde", Labels: map[string]string{
				discoveryv1.LabelServiceName: s.name,
				discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       benchPorts,
			Endpoints:   s.endpoints(),
		}
		if _, err := cs.DiscoveryV1().EndpointSlices(s.ns).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create EndpointSlice %s/%s: %w", s.ns, sl.Name, err)
		}
		return nil
	})
}

// parallel runs f(0..n-1) on loadWorkers goroutines and returns the first
// error.
func parallel(n int, f func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
