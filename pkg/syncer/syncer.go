// Package syncer keeps label-selected objects in step between a member's
// strait-system namespace and the broker namespace, with exactly one owning
// cluster writing each object. The gateway syncs Clusters and Endpoints with
// it; Lighthouse will sync its exported-service records the same way.
package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Config configures a Syncer.
type Config struct {
	// ClusterID is the local cluster: the owner of what it exports.
	ClusterID string
	// Local and LocalNamespace are the member's side (strait-system).
	Local          dynamic.Interface
	LocalNamespace string
	// Broker and BrokerNamespace are the broker's side.
	Broker          dynamic.Interface
	BrokerNamespace string
	// Resources are the types to sync. Only objects labelled with
	// strait.dev/cluster-id take part.
	Resources []schema.GroupVersionResource
	// StampBrokerCreation makes the syncer record, on each synced object in
	// the local namespace, when the broker first stored it: annotation
	// BrokerCreatedAtAnnotation. Lighthouse turns it on to order exports of
	// the same service by age without trusting member clocks; the gateway
	// leaves it off.
	StampBrokerCreation bool
	Log                 *slog.Logger
	// Workers is how many objects are synced at once; 0 is
	// DefaultWorkers. The queue never hands one object to two workers.
	Workers int
	// WithdrawSettle is how long an import must have been missing at the
	// broker before its local copy is removed; 0 is DefaultWithdrawSettle.
	WithdrawSettle time.Duration
	// OnHeld, when set, is called with the number of imports the syncer
	// keeps although the broker lacks them (see Syncer), and the reason of
	// the last one held, whenever that number changes.
	OnHeld func(held int, reason string)
	// OnSync, when set, is called once both sides have first been listed
	// (with nil), and after each attempt to sync one object with the
	// attempt's error (nil: synced), from the worker that made it; not
	// for attempts cut short by the end of Run's context. For metrics.
	OnSync func(err error)
}

// DefaultWithdrawSettle lets a broker namespace being deleted finish
// deleting (its records go one resource at a time, this cluster's own with
// the others') before the syncer tells an outage from one cluster leaving.
const DefaultWithdrawSettle = 5 * time.Second

// healthTTL is how long one live check of the broker answers for every
// withdrawal waiting on it: a burst of withdrawals costs one round of lists.
const healthTTL = time.Second

// DefaultWorkers syncs several objects at once: each sync is a round trip
// to an apiserver, and one at a time held a burst of exports back by the
// sum of their round trips (make bench-dns-sandbox).
const DefaultWorkers = 4

// BrokerCreatedAtAnnotation, with StampBrokerCreation, holds the
// metadata.creationTimestamp of an object's copy at the broker, in RFC 3339
// at second precision ("2006-01-02T15:04:05Z", as metav1.Time writes it),
// on the object's copy in a member's local namespace:
//
//   - on an import (another cluster's object), the syncer writes it with the
//     rest of the copy;
//   - on an export (the local cluster's own object, written by some other
//     component), the syncer patches it on, under FieldManager, once the
//     broker copy exists; writers that use server-side apply or patches keep
//     it, and a writer that replaces the object whole gets it put back.
//
// It is a creation time taken from the one broker apiserver's clock, so
// every member orders every record the same way whatever their own clocks
// say. When the broker copy is deleted and created again (by an orphan
// removal, a leave, an administrator), the stamp follows the new copy. It
// belongs to one member's copy: it is never exported to the broker and never
// makes a copy differ from its source.
const BrokerCreatedAtAnnotation = "strait.dev/broker-created-at"

// FieldManager is the field manager of every write of the syncer: the
// copies it creates and updates (on both sides), and its patches of
// BrokerCreatedAtAnnotation onto the local cluster's own objects, so that
// the component's server-side applies neither own the annotation nor remove
// it, and a component can tell its own writes (its binary's name is the
// default field manager) from the syncer's.
const FieldManager = "strait-syncer"

// BrokerCreatedAt returns the time in obj's BrokerCreatedAtAnnotation, in
// UTC, and true; or the zero time and false when obj has no stamp (the syncer
// has not seen its broker copy yet, or stamping is off) or one that is not
// RFC 3339. Stamps have second precision: records the broker stored within the
// same second compare equal, and callers that need a strict order break the
// tie themselves (by cluster ID, say).
func BrokerCreatedAt(obj metav1.Object) (time.Time, bool) {
	v, ok := obj.GetAnnotations()[BrokerCreatedAtAnnotation]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// Syncer keeps label-selected objects in step between a member's namespace
// and the broker namespace, in both directions:
//
//   - an object in the local namespace labelled with the local cluster ID is
//     the local cluster's own: it is exported to the broker, and the broker
//     copy is deleted when the local object goes;
//   - an object at the broker labelled with another cluster's ID is
//     imported into the local namespace, and the local copy is deleted when
//     the broker object goes, as one cluster withdrawing its record, not
//     as the broker losing everything (below).
//
// A broker that vanishes whole (its namespace deleted, restored empty, this
// member's credential revoked) is an outage, not a leave: the syncer keeps
// the local copies of other clusters' records ("holds" them), says so
// (a warning, Held, Config.OnHeld), and syncs again when the broker is back.
// An import missing at the broker is removed only when all of these hold:
//
//   - it has been missing for Config.WithdrawSettle;
//   - a live list at the broker, with this member's credential, works;
//   - when this cluster has exports of its own, the broker still holds at
//     least one of them (a broker that lost ours as well was emptied, not
//     left by one member);
//   - the syncer saw the record deleted at the broker while it ran, or the
//     broker still holds other records of the same cluster. A cluster
//     with no record at all that this syncer never saw go (a broker restored
//     empty, to which that cluster has not joined again) is held; so, as a
//     consequence, is a cluster that left while this member's syncer was
//     not running.
//
// Every object has exactly one writer on each side: its owner's syncer at the
// broker, each member's own syncer for the imported copies. Deletions follow
// only from a complete, successful list of the other side, so a broker that
// cannot be reached delays sync and never deletes local state; informers
// relist when it returns, which also removes what went stale meanwhile.
//
// With Config.StampBrokerCreation, local objects also carry
// BrokerCreatedAtAnnotation; that is the one write the syncer makes to the
// local cluster's own objects.
type Syncer struct {
	cfg   Config
	log   *slog.Logger
	queue workqueue.TypedRateLimitingInterface[key]
	local map[schema.GroupVersionResource]cache.SharedIndexInformer
	brk   map[schema.GroupVersionResource]cache.SharedIndexInformer

	mu           sync.Mutex
	missingSince map[key]time.Time // imports missing at the broker, since when
	seenGone     map[key]bool      // imports whose broker copy this syncer saw deleted
	held         map[key]string    // imports kept although the broker lacks them, and why
	health       healthCheck       // the last live check of the broker
}

// healthCheck is the result of one live check of the broker: "" when it
// may be trusted with withdrawals, else why not.
type healthCheck struct {
	at     time.Time
	reason string
}

type key struct {
	gvr  schema.GroupVersionResource
	name string
}

// New returns a syncer; Run starts it.
func New(cfg Config) *Syncer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Syncer{
		cfg: cfg,
		log: cfg.Log.With("component", "syncer", "cluster", cfg.ClusterID),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[key](retryBase, retryMax),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "broker-syncer"}),
		local:        map[schema.GroupVersionResource]cache.SharedIndexInformer{},
		brk:          map[schema.GroupVersionResource]cache.SharedIndexInformer{},
		missingSince: map[key]time.Time{},
		seenGone:     map[key]bool{},
		held:         map[key]string{},
	}
}

// Held is the number of imports the syncer keeps although the broker lacks
// them: an outage of the broker, as Syncer explains.
func (s *Syncer) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Retries of a failed sync back off from retryBase to retryMax: a broker
// that comes back after an outage is caught up with within retryMax.
const (
	retryBase = 100 * time.Millisecond
	retryMax  = 30 * time.Second
)

// resyncPeriod re-examines every object now and then, which also retries
// anything a lost event left behind.
const resyncPeriod = 5 * time.Minute

// Run syncs until ctx ends, and returns nil then. It writes nothing until
// both sides of every resource in Config.Resources have been listed once, so
// a broker unreachable at start delays all sync (as it would anyway: nothing
// can be exported or imported without it). The error is from registering
// the informers' event handlers.
func (s *Syncer) Run(ctx context.Context) error {
	selector := func(o *metav1.ListOptions) { o.LabelSelector = v1.ClusterIDLabel }
	lf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.cfg.Local, resyncPeriod, s.cfg.LocalNamespace, selector)
	bf := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.cfg.Broker, resyncPeriod, s.cfg.BrokerNamespace, selector)
	for _, gvr := range s.cfg.Resources {
		s.local[gvr] = lf.ForResource(gvr).Informer()
		s.brk[gvr] = bf.ForResource(gvr).Informer()
		for _, inf := range []cache.SharedIndexInformer{s.local[gvr], s.brk[gvr]} {
			atBroker := inf == s.brk[gvr]
			_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    func(obj any) { s.enqueue(gvr, obj) },
				UpdateFunc: func(_, obj any) { s.enqueue(gvr, obj) },
				DeleteFunc: func(obj any) {
					if atBroker {
						s.sawGone(gvr, obj)
					}
					s.enqueue(gvr, obj)
				},
			})
			if err != nil {
				return err
			}
		}
	}
	lf.Start(ctx.Done())
	bf.Start(ctx.Done())
	defer s.queue.ShutDown()
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	// Work starts once both sides of every resource are listed: before, an
	// object missing from one cache may only not be there yet, and creating
	// it again would fail (AlreadyExists) and be retried, on every start.
	// Events meanwhile wait in the queue.
	var synced []cache.InformerSynced
	for _, gvr := range s.cfg.Resources {
		synced = append(synced, s.local[gvr].HasSynced, s.brk[gvr].HasSynced)
	}
	if cache.WaitForCacheSync(ctx.Done(), synced...) {
		if s.cfg.OnSync != nil {
			s.cfg.OnSync(nil)
		}
		workers := s.cfg.Workers
		if workers <= 0 {
			workers = DefaultWorkers
		}
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for s.processNext(ctx) {
				}
			})
		}
		wg.Wait()
	}
	lf.Shutdown()
	bf.Shutdown()
	return nil
}

func (s *Syncer) enqueue(gvr schema.GroupVersionResource, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, ok := obj.(metav1.Object); ok {
		s.queue.Add(key{gvr, m.GetName()})
	}
}

func (s *Syncer) processNext(ctx context.Context) bool {
	k, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(k)
	err := s.sync(ctx, k)
	if s.cfg.OnSync != nil && ctx.Err() == nil {
		s.cfg.OnSync(err)
	}
	if err != nil {
		// Log the first failure and then ever more rarely, not every retry.
		if n := s.queue.NumRequeues(k); ctx.Err() == nil && n&(n-1) == 0 {
			s.log.Warn("sync", "resource", k.gvr.Resource, "name", k.name, "err", err, "retries", n)
		}
		s.queue.AddRateLimited(k)
		return true
	}
	s.queue.Forget(k)
	return true
}

func get(inf cache.SharedIndexInformer, ns, name string) (*unstructured.Unstructured, bool) {
	obj, ok, err := inf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	return obj.(*unstructured.Unstructured), true
}

func owner(u *unstructured.Unstructured) string { return u.GetLabels()[v1.ClusterIDLabel] }

// errNotSynced defers work until both sides have been listed.
var errNotSynced = errors.New("waiting for the first complete list")

func (s *Syncer) sync(ctx context.Context, k key) error {
	linf, binf := s.local[k.gvr], s.brk[k.gvr]
	local, haveLocal := get(linf, s.cfg.LocalNamespace, k.name)
	remote, haveRemote := get(binf, s.cfg.BrokerNamespace, k.name)
	me := s.cfg.ClusterID
	brokerAPI := s.cfg.Broker.Resource(k.gvr).Namespace(s.cfg.BrokerNamespace)
	localAPI := s.cfg.Local.Resource(k.gvr).Namespace(s.cfg.LocalNamespace)
	if haveRemote || !haveLocal {
		s.settled(k)
	}

	switch {
	case haveLocal && owner(local) == me:
		// Ours: export.
		if haveRemote && owner(remote) != me {
			return fmt.Errorf("%s %s at the broker belongs to cluster %s; not overwriting it", k.gvr.Resource, k.name, owner(remote))
		}
		if err := upsert(ctx, brokerAPI, copyOf(local, s.cfg.BrokerNamespace), remote); err != nil || !s.cfg.StampBrokerCreation || !haveRemote {
			return err
		}
		// Stamped from the cache: a broker copy created just now is stamped
		// when its add event brings it there, so that the stamp's own
		// update event never finds the broker cache behind.
		return stampOwn(ctx, localAPI, local, remote)
	case haveRemote && owner(remote) != me:
		// Theirs: import.
		if haveLocal && owner(local) == me {
			return nil // handled above; unreachable
		}
		want := copyOf(remote, s.cfg.LocalNamespace)
		if s.cfg.StampBrokerCreation {
			setStamp(want, remote)
		}
		return upsert(ctx, localAPI, want, local)
	case haveRemote && owner(remote) == me:
		// Our export whose source is gone: an orphan, once the local list is complete.
		if !linf.HasSynced() {
			return errNotSynced
		}
		s.log.Info("removing orphan at the broker", "resource", k.gvr.Resource, "name", k.name)
		return ignoreNotFound(brokerAPI.Delete(ctx, k.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptrUID(remote)}}))
	case haveLocal && owner(local) != me:
		// An import whose source is gone at the broker.
		if !binf.HasSynced() {
			return errNotSynced
		}
		reason, wait := s.holdWithdrawal(ctx, k, local)
		if wait > 0 {
			s.queue.AddAfter(k, wait)
			return nil
		}
		if reason != "" {
			s.hold(k, reason)
			return &heldError{reason}
		}
		s.log.Info("removing import its owner withdrew", "resource", k.gvr.Resource, "name", k.name, "owner", owner(local))
		if err := ignoreNotFound(localAPI.Delete(ctx, k.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptrUID(local)}})); err != nil {
			return err
		}
		s.settled(k)
	}
	return nil
}

// heldError is an import kept although the broker lacks it; the syncer
// tries again with back-off.
type heldError struct{ reason string }

func (e *heldError) Error() string { return "holding the import: " + e.reason }

// sawGone notes that the broker copy of another cluster's object was
// deleted while the syncer watched.
func (s *Syncer) sawGone(gvr schema.GroupVersionResource, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if u, ok := obj.(*unstructured.Unstructured); ok && owner(u) != s.cfg.ClusterID {
		s.mu.Lock()
		s.seenGone[key{gvr, u.GetName()}] = true
		s.mu.Unlock()
	}
}

// settled forgets what the syncer noted about k's withdrawal: it is back at
// the broker, or its local copy is gone.
func (s *Syncer) settled(k key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.missingSince, k)
	delete(s.seenGone, k)
	if _, ok := s.held[k]; ok {
		delete(s.held, k)
		s.log.Info("the broker has the record again or it was withdrawn", "resource", k.gvr.Resource, "name", k.name, "held", len(s.held))
		s.reportHeld("")
	}
}

// hold notes that import k is kept for reason, and says so once.
func (s *Syncer) hold(k key, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.held[k]; !ok {
		s.held[k] = reason
		s.log.Warn("keeping a record the broker lacks", "resource", k.gvr.Resource, "name", k.name, "reason", reason, "held", len(s.held))
		s.reportHeld(reason)
	}
}

func (s *Syncer) reportHeld(reason string) {
	if s.cfg.OnHeld != nil {
		s.cfg.OnHeld(len(s.held), reason)
	}
}

// holdWithdrawal decides on import local, missing at the broker: remove
// it ("", 0), wait (0 < wait) until it has been missing for the settle
// time, or keep it (reason), as Syncer explains.
func (s *Syncer) holdWithdrawal(ctx context.Context, k key, local *unstructured.Unstructured) (string, time.Duration) {
	settle := s.cfg.WithdrawSettle
	if settle <= 0 {
		settle = DefaultWithdrawSettle
	}
	now := time.Now()
	s.mu.Lock()
	since, ok := s.missingSince[k]
	if !ok {
		since = now
		s.missingSince[k] = now
	}
	seen := s.seenGone[k]
	s.mu.Unlock()
	if left := settle - now.Sub(since); left > 0 {
		return "", left
	}
	if reason := s.brokerHealth(ctx); reason != "" {
		return reason, 0
	}
	if who := owner(local); !seen && !s.brokerHolds(who) {
		return fmt.Sprintf("the broker holds no record of cluster %s, and this syncer never saw them go: a broker restored empty, or a cluster that left while this one was away", who), 0
	}
	return "", 0
}

// brokerHolds reports whether the broker cache has any record of cluster.
func (s *Syncer) brokerHolds(cluster string) bool {
	for _, inf := range s.brk {
		for _, obj := range inf.GetStore().List() {
			if u, ok := obj.(*unstructured.Unstructured); ok && owner(u) == cluster {
				return true
			}
		}
	}
	return false
}

// brokerHealth checks, live and at most once per healthTTL, that the
// broker may be trusted with withdrawals: "" when it may, else why not.
func (s *Syncer) brokerHealth(ctx context.Context) string {
	s.mu.Lock()
	if h := s.health; !h.at.IsZero() && time.Since(h.at) < healthTTL {
		s.mu.Unlock()
		return h.reason
	}
	s.mu.Unlock()
	reason := s.checkBroker(ctx)
	s.mu.Lock()
	s.health = healthCheck{at: time.Now(), reason: reason}
	s.mu.Unlock()
	return reason
}

func (s *Syncer) checkBroker(ctx context.Context) string {
	me := s.cfg.ClusterID
	haveOwn, brokerOwn := false, false
	for _, gvr := range s.cfg.Resources {
		for _, obj := range s.local[gvr].GetStore().List() {
			if u, ok := obj.(*unstructured.Unstructured); ok && owner(u) == me {
				haveOwn = true
				break
			}
		}
		list, err := s.cfg.Broker.Resource(gvr).Namespace(s.cfg.BrokerNamespace).List(ctx,
			metav1.ListOptions{LabelSelector: v1.ClusterIDLabel + "=" + me, Limit: 1})
		if err != nil {
			return fmt.Sprintf("the broker cannot be read (%v): its namespace deleted, this cluster's credential revoked, or the broker unreachable", err)
		}
		brokerOwn = brokerOwn || len(list.Items) > 0
	}
	if haveOwn && !brokerOwn {
		return "the broker holds none of this cluster's own records: it was emptied or replaced, not left by one cluster"
	}
	return ""
}

// upsert makes cur, the copy in want's namespace (nil when there is none),
// match want: it creates or replaces the copy, or leaves it alone when
// sameContent says it already matches.
func upsert(ctx context.Context, api dynamic.ResourceInterface, want, cur *unstructured.Unstructured) error {
	if cur == nil {
		_, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: %w (the cache is behind; retrying)", want.GetName(), err)
		}
		return err
	}
	if sameContent(want, cur) {
		return nil
	}
	want.SetResourceVersion(cur.GetResourceVersion())
	want.SetUID(cur.GetUID())
	_, err := api.Update(ctx, want, metav1.UpdateOptions{FieldManager: FieldManager})
	return err
}

// stamp is the value of BrokerCreatedAtAnnotation for a record whose broker
// copy is atBroker, or "" when atBroker has no creation time (only a fake
// apiserver leaves it out, and a zero time would pass for the oldest record).
func stamp(atBroker *unstructured.Unstructured) string {
	t := atBroker.GetCreationTimestamp()
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// setStamp puts the stamp of atBroker on u, an import's local copy.
func setStamp(u, atBroker *unstructured.Unstructured) {
	v := stamp(atBroker)
	if v == "" {
		return
	}
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[BrokerCreatedAtAnnotation] = v
	u.SetAnnotations(a)
}

// stampOwn puts the stamp of atBroker on local, one of the local cluster's
// own objects, unless it is already there. It patches that one annotation
// (a JSON merge patch, as FieldManager) and nothing else, because another
// component owns the rest of the object. A local object deleted meanwhile is
// not an error: its sync removes the broker copy.
func stampOwn(ctx context.Context, api dynamic.ResourceInterface, local, atBroker *unstructured.Unstructured) error {
	v := stamp(atBroker)
	if v == "" || local.GetAnnotations()[BrokerCreatedAtAnnotation] == v {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{BrokerCreatedAtAnnotation: v}}})
	if err != nil {
		return err
	}
	_, err = api.Patch(ctx, local.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stamp %s with its broker creation time: %w", local.GetName(), err)
	}
	return nil
}

// copyOf is what a synced copy of src in namespace ns looks like.
func copyOf(src *unstructured.Unstructured, ns string) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range src.Object {
		if k != "metadata" && k != "status" {
			out.Object[k] = runtimeDeepCopy(v)
		}
	}
	out.SetName(src.GetName())
	out.SetNamespace(ns)
	out.SetLabels(src.GetLabels())
	if a := syncedAnnotations(src.GetAnnotations()); len(a) > 0 {
		out.SetAnnotations(a)
	}
	return out
}

// syncedAnnotations drops annotations that belong to one apiserver's copy:
// kubectl's last applied configuration, and BrokerCreatedAtAnnotation, which
// is the syncer's own note on a member's copy.
func syncedAnnotations(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if k != "kubectl.kubernetes.io/last-applied-configuration" && k != BrokerCreatedAtAnnotation {
			out[k] = v
		}
	}
	return out
}

// sameContent reports whether cur, a synced copy, already matches want, what
// it should be: the same labels, synced annotations and content (everything
// but metadata and status). A stamp (BrokerCreatedAtAnnotation) is not
// content, so an export's stamp never makes it differ from its broker copy;
// but when want carries one (an import, with stamping on) cur must carry the
// same, so that a broker copy made anew, with the same content, is restamped.
func sameContent(want, cur *unstructured.Unstructured) bool {
	if !reflect.DeepEqual(want.GetLabels(), cur.GetLabels()) ||
		!reflect.DeepEqual(syncedAnnotations(want.GetAnnotations()), syncedAnnotations(cur.GetAnnotations())) {
		return false
	}
	if v, ok := want.GetAnnotations()[BrokerCreatedAtAnnotation]; ok && cur.GetAnnotations()[BrokerCreatedAtAnnotation] != v {
		return false
	}
	for k, v := range want.Object {
		if k != "metadata" && !reflect.DeepEqual(v, cur.Object[k]) {
			return false
		}
	}
	for k := range cur.Object {
		if _, ok := want.Object[k]; !ok && k != "metadata" && k != "status" {
			return false
		}
	}
	return true
}

func runtimeDeepCopy(v any) any {
	return (&unstructured.Unstructured{Object: map[string]any{"v": v}}).DeepCopy().Object["v"]
}

func ptrUID(u *unstructured.Unstructured) *types.UID {
	uid := u.GetUID()
	return &uid
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
