package broker

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// credentialRetry is how soon a credential Secret that could not be read
// (the apiserver away) is read again; an event about it is not waited for.
const credentialRetry = 5 * time.Second

// RunWithCredentials runs run with the member's broker credential, read
// from Secret namespace/name, until ctx ends, and whenever the Secret's
// content changes (a join that renewed the token or moved the cluster to a
// rejoined broker) runs it again with the new credential: run's context is
// cancelled, RunWithCredentials waits for run to return, then calls it
// anew. So a component's broker client follows the credential without a
// restart of the component.
//
// It watches only that Secret (a field selector on its name: RBAC "list"
// and "watch" with resourceNames suffice) and reads it with "get". Until
// the Secret exists and is complete, run is not called and the wait is
// logged; once run is going, a Secret deleted or made incomplete leaves run
// going with the credential it has (leave stops the components itself).
//
// It returns nil when ctx ends, or run's error when run returns on its own
// (with a nil error too, run is not called again).
func RunWithCredentials(ctx context.Context, kube kubernetes.Interface, namespace, name string, log *slog.Logger,
	run func(context.Context, *Credentials) error) error {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("secret", namespace+"/"+name)
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return kube.CoreV1().Secrets(namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return kube.CoreV1().Secrets(namespace).Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return err
	}
	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	go inf.RunWithContext(ctx)

	// The run going, if any: its credential, how to stop it, its result.
	type running struct {
		creds  *Credentials
		cancel context.CancelFunc
		done   chan error
	}
	var cur *running
	stop := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
		}
	}
	defer stop()
	poke() // the Secret may already be there: read it at once
	for {
		var finished chan error
		if cur != nil {
			finished = cur.done
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-finished:
			cur.cancel()
			cur.done <- err // for stop
			return err
		case <-changed:
		}
		creds, err := ReadCredentials(ctx, kube, namespace, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if cur == nil {
				log.Warn("no broker credential yet; the broker client waits", "err", err)
			} else {
				log.Warn("the broker credential cannot be read; going on with the one in use", "err", err)
			}
			if !apierrors.IsNotFound(err) {
				time.AfterFunc(credentialRetry, poke) // else its creation is an event
			}
			continue
		}
		if cur != nil && sameCredentials(cur.creds, creds) {
			continue
		}
		if cur != nil {
			log.Info("the broker credential changed; restarting the broker client", "apiServer", creds.Info.APIServer, "namespace", creds.Info.Namespace)
		}
		stop()
		runCtx, cancel := context.WithCancel(ctx)
		cur = &running{creds: creds, cancel: cancel, done: make(chan error, 1)}
		go func(r *running) { r.done <- run(runCtx, r.creds) }(cur)
	}
}

// sameCredentials reports whether a and b reach the same broker namespace
// with the same token.
func sameCredentials(a, b *Credentials) bool {
	return a.Token == b.Token && a.Info.APIServer == b.Info.APIServer && a.Info.Namespace == b.Info.Namespace &&
		bytes.Equal(a.Info.CABundle, b.Info.CABundle)
}
