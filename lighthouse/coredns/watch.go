package coredns

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/lighthouse"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
)

// syncPoll is how often Watch checks whether its informers have delivered
// their first list: short, because the server answers SERVFAIL until then.
const syncPoll = 50 * time.Millisecond

// Watch fills store from the apiserver behind cfg until ctx ends: every
// ServiceImport, the EndpointSlices Lighthouse imported (labelled managed
// by lighthouse.ManagedBy and lighthouse.ManagedLabel), and the Gateways of
// namespace (Strait's component namespace). It returns once the informers
// are started; the store reports Synced when all three have delivered
// their first list. Errors: the cache's (a scheme or a rest.Config it
// cannot use).
func Watch(ctx context.Context, cfg *rest.Config, namespace string, store *Store) error {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelManagedBy: lighthouse.ManagedBy, lighthouse.ManagedLabel: "true"})
	// The kinds' resources are known: a static mapper needs no discovery,
	// so the informers start (and retry their lists) while the apiserver
	// is away or before the CRDs exist, and the store stays unsynced
	// meanwhile instead of the server failing to start.
	mapper := meta.NewDefaultRESTMapper(nil)
	for _, k := range []struct {
		gvk              schema.GroupVersionKind
		plural, singular string
	}{
		{mcsv1beta1.SchemeGroupVersion.WithKind("ServiceImport"), "serviceimports", "serviceimport"},
		{discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"), "endpointslices", "endpointslice"},
		{v1.SchemeGroupVersion.WithKind("Gateway"), "gateways", "gateway"},
	} {
		gv := k.gvk.GroupVersion()
		mapper.AddSpecific(k.gvk, gv.WithResource(k.plural), gv.WithResource(k.singular), meta.RESTScopeNamespace)
	}
	// Failed requests are counted where they happen, in the transport: a
	// reflector retries a watch refused by a down apiserver (connection
	// refused, 429) by itself and never reports it to a watch error
	// handler (client-go's Reflector.watch), so a handler would count
	// nothing while the apiserver is away.
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(countFailures)
	c, err := cache.New(cfg, cache.Options{
		Scheme:           scheme.New(),
		Mapper:           mapper,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&discoveryv1.EndpointSlice{}: {Label: sel},
			&v1.Gateway{}:                {Namespaces: map[string]cache.Config{namespace: {}}},
		},
	})
	if err != nil {
		return fmt.Errorf("lighthouse: informer cache: %w", err)
	}
	handlers := []struct {
		obj client.Object
		h   toolscache.ResourceEventHandlerFuncs
	}{
		{&mcsv1beta1.ServiceImport{}, toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { setImport(store, o) },
			UpdateFunc: func(_, o any) { setImport(store, o) },
			DeleteFunc: func(o any) {
				if si, ok := unwrap(o).(*mcsv1beta1.ServiceImport); ok {
					store.DeleteImport(si.Namespace, si.Name)
					importsGauge.Set(float64(store.Imports()))
				}
			},
		}},
		{&discoveryv1.EndpointSlice{}, toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { setSlice(store, o) },
			UpdateFunc: func(_, o any) { setSlice(store, o) },
			DeleteFunc: func(o any) {
				if es, ok := unwrap(o).(*discoveryv1.EndpointSlice); ok {
					store.DeleteSlice(es.Namespace, es.Labels[mcsv1beta1.LabelServiceName], es.Name)
				}
			},
		}},
		{&v1.Gateway{}, toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { setGateway(store, o) },
			UpdateFunc: func(_, o any) { setGateway(store, o) },
			DeleteFunc: func(o any) {
				if gw, ok := unwrap(o).(*v1.Gateway); ok {
					store.DeleteGateway(gw.Name)
				}
			},
		}},
	}
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, h := range handlers {
		inf, err := c.GetInformer(ctx, h.obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("lighthouse: informer for %T: %w", h.obj, err)
		}
		reg, err := inf.AddEventHandler(h.h)
		if err != nil {
			return fmt.Errorf("lighthouse: handler for %T: %w", h.obj, err)
		}
		regs = append(regs, reg)
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			log.Errorf("informer cache: %v", err)
		}
	}()
	go func() {
		err := wait.PollUntilContextCancel(ctx, syncPoll, true, func(context.Context) (bool, error) {
			for _, r := range regs {
				if !r.HasSynced() {
					return false, nil
				}
			}
			return true, nil
		})
		if err == nil {
			store.SetSynced(true)
			syncedGauge.Set(1)
			log.Infof("synced: %d ServiceImports", store.Imports())
		}
	}()
	return nil
}

// countFailures wraps the view's transport so that every request that
// fails counts in watchErrors, labelled with the resource of its URL path
// ("serviceimports", "endpointslices", "gateways"): a transport error (the
// apiserver unreachable or refusing connections) or an HTTP status of 400
// and above (401, 403: access denied; 5xx), except 410 Gone, the expired
// resource version of a routine relist. Requests ended by their own context
// (shutdown, a watch's timeout) are not failures.
func countFailures(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		failed := err != nil && req.Context().Err() == nil ||
			err == nil && resp.StatusCode >= http.StatusBadRequest && resp.StatusCode != http.StatusGone
		if failed {
			watchErrors.WithLabelValues(resourceOf(req.URL.Path)).Inc()
		}
		return resp, err
	})
}

// resourceOf is the resource a list or watch URL path names: the segment
// after "namespaces/<ns>/" or after the group version
// (/apis/multicluster.x-k8s.io/v1beta1/serviceimports → "serviceimports").
func resourceOf(urlPath string) string {
	parts := strings.Split(strings.Trim(urlPath, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		switch parts[i] {
		case "serviceimports", "endpointslices", "gateways":
			return parts[i]
		}
	}
	return "other"
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func setImport(store *Store, o any) {
	if si, ok := o.(*mcsv1beta1.ServiceImport); ok {
		store.SetImport(si)
		importsGauge.Set(float64(store.Imports()))
	}
}

func setSlice(store *Store, o any) {
	if es, ok := o.(*discoveryv1.EndpointSlice); ok {
		store.SetSlice(es)
	}
}

func setGateway(store *Store, o any) {
	if gw, ok := o.(*v1.Gateway); ok {
		store.SetGateway(gw)
	}
}

// unwrap returns the object of a delete event, which may come as a
// tombstone when the watch missed the deletion.
func unwrap(o any) any {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return o
}
