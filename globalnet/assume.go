package globalnet

import (
	"context"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// verifyAfter is how long an object the allocator wrote (or read once,
// uncached) may be missing from the manager's cache before it is read
// again from the apiserver. A watch brings a write into the cache within
// milliseconds; an object still missing after seconds was most likely
// deleted while the cache was relisting, and would otherwise hold its
// addresses, or keep its GlobalIngressIP from being made again, for ever.
const verifyAfter = 5 * time.Second

// assumed is what the allocator last wrote of each object it writes (a
// holder's status; a GlobalIngressIP, strait-gn Service or
// cluster-egress made, changed or deleted), kept until the manager's cache
// shows that write or a later one, like kube-scheduler's assume cache. The
// cache lags the writes: a holder read from it without the status just
// written would look as if its addresses were free, and a GlobalIngressIP
// just made would be made again.
//
// What the allocator reads is view's merge of the cache and these entries:
// of the cached copy and the entry, the one with the higher
// resourceVersion. ResourceVersions are compared as integers (the
// apiserver's are etcd revisions, which order every write; the scheduler
// relies on the same); where one is not an integer, or an entry's object
// has been missing from the cache for verifyAfter, the object is read
// once from the apiserver. Not safe for concurrent use: the allocator
// runs one reconcile at a time.
type assumed struct {
	reader  client.Reader // uncached
	entries map[assumeKey]*assumedEntry
	now     func() time.Time
}

type assumeKey struct {
	kind string // the Go type, "*v1alpha1.GlobalEgressIP"
	types.NamespacedName
}

type assumedEntry struct {
	obj client.Object // nil: deleted
	rv  uint64
	// opaque: the resourceVersion is not an integer; comparing needs the
	// apiserver.
	opaque bool
	at     time.Time // written or last read from the apiserver
}

func newAssumed(reader client.Reader) *assumed {
	return &assumed{reader: reader, entries: map[assumeKey]*assumedEntry{}, now: time.Now}
}

func keyOf(o client.Object) assumeKey {
	return assumeKey{kind: fmt.Sprintf("%T", o), NamespacedName: client.ObjectKeyFromObject(o)}
}

// write records o as the apiserver returned it after the allocator's
// create, update or status update (o carries the new resourceVersion).
func (a *assumed) write(o client.Object) {
	rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	k := keyOf(o)
	if cur, ok := a.entries[k]; ok && err == nil && !cur.opaque && cur.rv > rv {
		return
	}
	a.entries[k] = &assumedEntry{obj: o.DeepCopyObject().(client.Object), rv: rv, opaque: err != nil, at: a.now()}
}

// deleted records that the allocator deleted o, read at o's
// resourceVersion: a cached copy at that version or older is gone.
func (a *assumed) deleted(o client.Object) {
	rv, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	a.entries[keyOf(o)] = &assumedEntry{rv: rv, opaque: err != nil, at: a.now()}
}

// waiting reports whether an object written is not in the cache yet: the
// allocator looks again after verifyAfter even if no event comes.
func (a *assumed) waiting() bool {
	for _, e := range a.entries {
		if e.obj != nil {
			return true
		}
	}
	return false
}

// view merges the cached objects of one kind (items, from the cache's
// List) with the entries of that kind: the objects as the allocator should
// see them, in no particular order. It drops the entries the cache has
// caught up with, and those of deleted objects the cache no longer holds.
// Errors: the apiserver's, where an object had to be read from it.
func view[T any, PT interface {
	*T
	client.Object
}](ctx context.Context, a *assumed, items []T) ([]PT, error) {
	kind := fmt.Sprintf("%T", PT(new(T)))
	var out []PT
	inCache := map[types.NamespacedName]bool{}
	for i := range items {
		c := PT(&items[i])
		k := keyOf(c)
		inCache[k.NamespacedName] = true
		e, ok := a.entries[k]
		if !ok {
			out = append(out, c)
			continue
		}
		rv, err := strconv.ParseUint(c.GetResourceVersion(), 10, 64)
		switch {
		case err != nil || e.opaque:
			o, err := fetch[T, PT](ctx, a, k)
			if err != nil {
				return nil, err
			}
			if o != nil {
				out = append(out, o)
			}
		case rv >= e.rv:
			// The cache has the write, or a later one.
			delete(a.entries, k)
			out = append(out, c)
		case e.obj != nil:
			out = append(out, e.obj.DeepCopyObject().(PT))
		}
		// Else deleted by the allocator after the cached version.
	}
	for k, e := range a.entries {
		if k.kind != kind || inCache[k.NamespacedName] {
			continue
		}
		switch {
		case e.obj == nil:
			delete(a.entries, k) // deleted, and the cache agrees
		case a.now().Sub(e.at) < verifyAfter:
			out = append(out, e.obj.DeepCopyObject().(PT))
		default:
			o, err := fetch[T, PT](ctx, a, k)
			if err != nil {
				return nil, err
			}
			if o != nil {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

// fetch reads k from the apiserver and records it (nil and no entry when
// it is gone).
func fetch[T any, PT interface {
	*T
	client.Object
}](ctx context.Context, a *assumed, k assumeKey) (PT, error) {
	o := PT(new(T))
	if err := a.reader.Get(ctx, k.NamespacedName, o); err != nil {
		if apierrors.IsNotFound(err) {
			delete(a.entries, k)
			return nil, nil
		}
		return nil, fmt.Errorf("read %s %s: %w", k.kind, k.NamespacedName, err)
	}
	delete(a.entries, k)
	a.write(o)
	return o, nil
}
