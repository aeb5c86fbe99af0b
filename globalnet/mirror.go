package globalnet

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SliceManager is the endpointslice.kubernetes.io/managed-by value of the
// EndpointSlices Globalnet writes (Kubernetes' convention: a controller
// touches only the slices it manages).
const SliceManager = "globalnet.strait.dev"

// syncMirrors gives each strait-gn Service without a selector (the one next
// to an exported Service without a selector, whose endpoints a user or
// another controller writes as EndpointSlices) a copy of the exported
// Service's EndpointSlices, so that kube-proxy balances traffic to the
// global IP over the same endpoints; without them the global IP would lead
// nowhere. A Service with a selector needs none: the EndpointSlice
// controller fills its slices from the pods. Each copy is named after the
// strait-gn Service and the slice it mirrors, labelled for the strait-gn
// Service and SliceManager, and owned by the strait-gn Service; copies
// whose source or Service is gone are deleted.
func (a *allocator) syncMirrors(ctx context.Context) error {
	var gn corev1.ServiceList
	if err := a.c.List(ctx, &gn, client.MatchingLabels{ManagedLabel: "true"}); err != nil {
		return err
	}
	want := map[types.NamespacedName]*discoveryv1.EndpointSlice{}
	for i := range gn.Items {
		s := &gn.Items[i]
		if len(s.Spec.Selector) > 0 || s.DeletionTimestamp != nil || s.Labels[ServiceLabel] == "" {
			continue
		}
		var src discoveryv1.EndpointSliceList
		if err := a.c.List(ctx, &src, client.InNamespace(s.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: s.Labels[ServiceLabel]}); err != nil {
			return err
		}
		for _, sl := range src.Items {
			if sl.Labels[discoveryv1.LabelManagedBy] == SliceManager {
				continue
			}
			m := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: objectName(s.Name+"-", sl.Name),
					Labels:          map[string]string{discoveryv1.LabelServiceName: s.Name, discoveryv1.LabelManagedBy: SliceManager, ManagedLabel: "true"},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: s.Name, UID: s.UID, Controller: ptr.To(true)}}},
				AddressType: sl.AddressType,
				Endpoints:   sl.Endpoints,
				Ports:       sl.Ports,
			}
			want[types.NamespacedName{Namespace: m.Namespace, Name: m.Name}] = m
		}
	}
	var have discoveryv1.EndpointSliceList
	if err := a.c.List(ctx, &have, client.MatchingLabels{ManagedLabel: "true", discoveryv1.LabelManagedBy: SliceManager}); err != nil {
		return err
	}
	var errs []error
	for i := range have.Items {
		cur := &have.Items[i]
		k := types.NamespacedName{Namespace: cur.Namespace, Name: cur.Name}
		w, ok := want[k]
		if !ok || w.AddressType != cur.AddressType { // addressType is immutable
			if err := a.c.Delete(ctx, cur, client.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		delete(want, k)
		if equality.Semantic.DeepEqual(cur.Endpoints, w.Endpoints) && equality.Semantic.DeepEqual(cur.Ports, w.Ports) &&
			equality.Semantic.DeepEqual(cur.OwnerReferences, w.OwnerReferences) && cur.Labels[discoveryv1.LabelServiceName] == w.Labels[discoveryv1.LabelServiceName] {
			continue
		}
		cur.Endpoints, cur.Ports, cur.OwnerReferences, cur.Labels = w.Endpoints, w.Ports, w.OwnerReferences, w.Labels
		if err := a.c.Update(ctx, cur); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range want {
		if err := a.c.Create(ctx, m); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("create EndpointSlice %s/%s: %w", m.Namespace, m.Name, err))
		}
	}
	return errors.Join(errs...)
}
