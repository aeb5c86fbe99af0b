package syncer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/kubeapply"
	"strait.dev/strait/pkg/syncer"
)

// The export records Lighthouse syncs through the broker.
var (
	serviceImports = mcsv1beta1.SchemeGroupVersion.WithResource("serviceimports")
	endpointSlices = discoveryv1.SchemeGroupVersion.WithResource("endpointslices")
	recordGVRs     = []schema.GroupVersionResource{serviceImports, endpointSlices}
)

// sliceSuffix ends the name of each test EndpointSlice record, as the hash of
// the exported slice's name would.
const sliceSuffix = ".0a1b2c3d"

// records are the export records of Service demo/<service> as cluster owner's
// Lighthouse writes them in its strait-system stand-in: a ServiceImport
// "<service>.demo.<owner>" and one EndpointSlice, both serving port.
func records(service, owner string, port int32) []client.Object {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: owner + "-system", Labels: map[string]string{
			v1.ClusterIDLabel: owner, mcsv1beta1.LabelSourceCluster: owner,
		}}
	}
	name := service + ".demo." + owner
	return []client.Object{
		&mcsv1beta1.ServiceImport{
			ObjectMeta: meta(name),
			Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ClusterSetIP,
				Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  meta(name + sliceSuffix),
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
		},
	}
}

// apply writes objs as Lighthouse does: server-side apply under its own
// field manager, which never sets the stamp.
func apply(t *testing.T, c client.Client, objs []client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := kubeapply.Apply(context.Background(), c, o, kubeapply.FieldManagerLighthouse); err != nil {
			t.Fatal(err)
		}
	}
}

// list returns the gvr objects in namespace ns, from the broker when ns is
// the broker namespace and from the members' apiserver otherwise.
func (w *world) list(t *testing.T, gvr schema.GroupVersionResource, ns string) []unstructured.Unstructured {
	t.Helper()
	api := w.memberDyn
	if ns == w.info.Namespace {
		api = w.brokerDyn
	}
	l, err := api.Resource(gvr).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list %s in %s: %v", gvr.Resource, ns, err)
	}
	return l.Items
}

// stamped lists every object of gvrs in namespaces that carries a stamp, one
// sorted "<namespace> <resource> <name> <stamp>" line each.
func stamped(t *testing.T, w *world, gvrs []schema.GroupVersionResource, namespaces ...string) string {
	t.Helper()
	var out []string
	for _, ns := range namespaces {
		for _, gvr := range gvrs {
			for _, o := range w.list(t, gvr, ns) {
				if v, ok := o.GetAnnotations()[syncer.BrokerCreatedAtAnnotation]; ok {
					out = append(out, fmt.Sprintf("%s %s %s %s", ns, gvr.Resource, o.GetName(), v))
				}
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// stampState renders every record, at the broker and in both members'
// namespaces, as a sorted line "<where> <resource> <name> port=<port>
// stamp=<verdict>", the verdict being "broker" when the stamp is the broker
// copy's creationTimestamp, "none" when there is no stamp (right at the broker
// only), and the stamp and what it should have been otherwise.
func stampState(t *testing.T, w *world) string {
	t.Helper()
	created := map[string]string{} // resource/name → the broker copy's creationTimestamp
	var out []string
	for _, where := range []string{"broker", "c1-system", "c2-system"} {
		ns := where
		if where == "broker" {
			ns = w.info.Namespace
		}
		for _, gvr := range recordGVRs {
			for _, o := range w.list(t, gvr, ns) {
				if where == "broker" {
					created[gvr.Resource+"/"+o.GetName()] = o.GetCreationTimestamp().UTC().Format(time.RFC3339)
				}
				port, _, _ := unstructured.NestedSlice(o.Object, "spec", "ports")
				if gvr == endpointSlices {
					port, _, _ = unstructured.NestedSlice(o.Object, "ports")
				}
				v, ok := o.GetAnnotations()[syncer.BrokerCreatedAtAnnotation]
				verdict := "none"
				switch want, atBroker := created[gvr.Resource+"/"+o.GetName()]; {
				case ok && atBroker && v == want:
					verdict = "broker"
				case ok:
					verdict = fmt.Sprintf("%s(broker copy made %s)", v, want)
				}
				out = append(out, fmt.Sprintf("%s %s %s port=%v stamp=%s", where, gvr.Resource, o.GetName(), port[0].(map[string]any)["port"], verdict))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// wantStamps is stampState once the records of each "<service>.demo.<owner>"
// in ports, serving that port, are everywhere, stamped in both members and
// not at the broker.
func wantStamps(ports map[string]int32) string {
	var out []string
	for rec, port := range ports {
		for _, where := range []string{"broker", "c1-system", "c2-system"} {
			verdict := "broker"
			if where == "broker" {
				verdict = "none"
			}
			out = append(out,
				fmt.Sprintf("%s serviceimports %s port=%d stamp=%s", where, rec, port, verdict),
				fmt.Sprintf("%s endpointslices %s%s port=%d stamp=%s", where, rec, sliceSuffix, port, verdict))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// eventuallyStamps waits until stampState is want. The bound only keeps a
// broken syncer from hanging the suite.
func eventuallyStamps(t *testing.T, w *world, want string) {
	t.Helper()
	var got string
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = stampState(t, w)
		return got == want, nil
	}); err != nil {
		t.Fatalf("stamps not converged; want:\n%s\ngot:\n%s", want, got)
	}
}

// writeLog records every request but GET (and so every write) that goes
// through the transports it wraps, as "<method> <path> <object name>".
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

type roundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// wrap is a transport.WrapperFunc that logs into l.
func (l *writeLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method != http.MethodGet {
			// A create names its object in the body only.
			name := path.Base(r.URL.Path)
			if r.Method == http.MethodPost && r.GetBody != nil {
				if body, err := r.GetBody(); err == nil {
					var obj struct {
						Metadata struct{ Name string } `json:"metadata"`
					}
					if json.NewDecoder(body).Decode(&obj) == nil {
						name = obj.Metadata.Name
					}
				}
			}
			l.mu.Lock()
			l.writes = append(l.writes, r.Method+" "+r.URL.Path+" "+name)
			l.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

// except returns the recorded writes that name none of names.
func (l *writeLog) except(names ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, wr := range l.writes {
		mentioned := false
		for _, n := range names {
			mentioned = mentioned || strings.HasSuffix(wr, " "+n)
		}
		if !mentioned {
			out = append(out, wr)
		}
	}
	return out
}

// brokerCopy is the broker's copy of the gvr object name.
func (w *world) brokerCopy(t *testing.T, gvr schema.GroupVersionResource, name string) *unstructured.Unstructured {
	t.Helper()
	o, err := w.brokerDyn.Resource(gvr).Namespace(w.info.Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestBrokerCreationStamp(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	opts := syncerOptions{resources: recordGVRs, stamp: true}

	var latest time.Time
	for _, id := range []string{"c1", "c2"} {
		apply(t, w.members, records("web", id, 80))
		for _, gvr := range recordGVRs {
			for _, o := range w.list(t, gvr, id+"-system") {
				if c := o.GetCreationTimestamp().Time; c.After(latest) {
					latest = c
				}
			}
		}
	}
	// Not synchronisation: the syncers start in a later second than the
	// local records were made (creation times have second precision), so a
	// stamp taken from a local copy instead of the broker's would show.
	time.Sleep(time.Until(latest.Add(time.Second)))
	stop1 := w.startSyncerWith(t, "c1", opts)
	stop2 := w.startSyncerWith(t, "c2", opts)
	ports := map[string]int32{"web.demo.c1": 80, "web.demo.c2": 80}

	t.Run("member copies carry the broker copy's creation time", func(t *testing.T) {
		eventuallyStamps(t, w, wantStamps(ports))
		atBroker := w.brokerCopy(t, serviceImports, "web.demo.c1")
		for _, ns := range []string{"c1-system", "c2-system"} {
			local, err := w.memberDyn.Resource(serviceImports).Namespace(ns).Get(ctx, "web.demo.c1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := syncer.BrokerCreatedAt(local); !ok || !got.Equal(atBroker.GetCreationTimestamp().Time) {
				t.Errorf("%s: BrokerCreatedAt = %v, %v; want %v, true", ns, got, ok, atBroker.GetCreationTimestamp().Time)
			}
		}
	})

	t.Run("the owner's server-side apply keeps the stamp", func(t *testing.T) {
		// Lighthouse re-applies c1's records without the annotation: the
		// syncer's field manager owns it, so it stays, and the change
		// reaches the broker and c2 as usual.
		apply(t, w.members, records("web", "c1", 81))
		ports["web.demo.c1"] = 81
		eventuallyStamps(t, w, wantStamps(ports))
		own, err := w.memberDyn.Resource(serviceImports).Namespace("c1-system").Get(ctx, "web.demo.c1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var managers []string
		for _, m := range own.GetManagedFields() {
			managers = append(managers, m.Manager+"/"+string(m.Operation))
		}
		sort.Strings(managers)
		if want := kubeapply.FieldManagerLighthouse + "/Apply " + syncer.FieldManager + "/Update"; strings.Join(managers, " ") != want {
			t.Errorf("field managers of c1's own record: %v, want %s", managers, want)
		}
	})

	// A second pass: fresh syncers look at every record again, through
	// transports that log what they write.
	versions := func() string {
		var out []string
		for _, ns := range []string{"c1-system", "c2-system", w.info.Namespace} {
			for _, gvr := range recordGVRs {
				for _, o := range w.list(t, gvr, ns) {
					if !strings.HasPrefix(o.GetName(), "zz-sentinel.") {
						out = append(out, ns+"/"+gvr.Resource+"/"+o.GetName()+"@"+o.GetResourceVersion())
					}
				}
			}
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	before := versions()
	stop1()
	stop2()
	var logs [2]writeLog
	for i, id := range []string{"c1", "c2"} {
		w.startSyncerWith(t, id, syncerOptions{resources: recordGVRs, stamp: true, wrap: logs[i].wrap})
	}

	t.Run("a second pass writes nothing", func(t *testing.T) {
		// The barrier: each cluster exports a new service, "zz-sentinel",
		// whose records sort after every other. A syncer handles keys one at
		// a time, in the order its informers list and watch them; so once
		// both clusters' sentinels are stamped in both members, each syncer
		// has been through every other record since its restart.
		var sentinels []string
		for _, id := range []string{"c1", "c2"} {
			apply(t, w.members, records("zz-sentinel", id, 80))
			ports["zz-sentinel.demo."+id] = 80
			sentinels = append(sentinels, "zz-sentinel.demo."+id, "zz-sentinel.demo."+id+sliceSuffix)
		}
		eventuallyStamps(t, w, wantStamps(ports))
		for i, id := range []string{"c1", "c2"} {
			if got := logs[i].except(sentinels...); len(got) != 0 {
				t.Errorf("%s's syncer wrote to records already in step:\n%s", id, strings.Join(got, "\n"))
			}
			// The log must have seen the sentinels' writes, or it proves nothing.
			if all := logs[i].except(); len(all) == 0 {
				t.Errorf("%s's write log is empty: the transport wrapper saw nothing", id)
			}
		}
		if after := versions(); after != before {
			t.Errorf("records rewritten by the second pass:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("a broker copy made anew is stamped anew", func(t *testing.T) {
		old := w.brokerCopy(t, serviceImports, "web.demo.c1")
		// Not synchronisation: creation times have second precision, so the
		// broker's clock has to reach a later second for the new copy's to
		// differ from the old one's.
		time.Sleep(time.Until(old.GetCreationTimestamp().Add(time.Second)))
		// As an orphan removal or an administrator would.
		if err := w.brokerDyn.Resource(serviceImports).Namespace(w.info.Namespace).Delete(ctx, "web.demo.c1",
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(old.GetUID())}}); err != nil {
			t.Fatal(err)
		}
		var made *unstructured.Unstructured
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			o, err := w.brokerDyn.Resource(serviceImports).Namespace(w.info.Namespace).Get(ctx, "web.demo.c1", metav1.GetOptions{})
			made = o
			return err == nil && o.GetUID() != old.GetUID(), nil
		}); err != nil {
			t.Fatal("c1's syncer did not export its record again")
		}
		if was, now := old.GetCreationTimestamp(), made.GetCreationTimestamp(); now.Equal(&was) {
			t.Fatalf("the new broker copy has the old one's creation time %v: the test proves nothing", was)
		}
		// stampState compares every stamp with the new copy's time.
		eventuallyStamps(t, w, wantStamps(ports))
	})

	t.Run("stamps edited locally are put back", func(t *testing.T) {
		patch := []byte(`{"metadata":{"annotations":{"` + syncer.BrokerCreatedAtAnnotation + `":"2000-01-01T00:00:00Z"}}}`)
		// c1's own record and c2's import of it.
		for _, ns := range []string{"c1-system", "c2-system"} {
			if _, err := w.memberDyn.Resource(serviceImports).Namespace(ns).Patch(ctx, "web.demo.c1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		eventuallyStamps(t, w, wantStamps(ports))
	})
}

func TestBrokerCreatedAt(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        time.Time
		ok          bool
	}{
		{"no annotations", nil, time.Time{}, false},
		{"no stamp", map[string]string{"other": "2024-05-06T07:08:09Z"}, time.Time{}, false},
		{"stamp", map[string]string{syncer.BrokerCreatedAtAnnotation: "2024-05-06T07:08:09Z"}, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), true},
		{"stamp with an offset, in UTC", map[string]string{syncer.BrokerCreatedAtAnnotation: "2024-05-06T09:08:09+02:00"}, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), true},
		{"not RFC 3339", map[string]string{syncer.BrokerCreatedAtAnnotation: "6 May 2024"}, time.Time{}, false},
		{"empty", map[string]string{syncer.BrokerCreatedAtAnnotation: ""}, time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := syncer.BrokerCreatedAt(&metav1.ObjectMeta{Annotations: tc.annotations})
			if ok != tc.ok || !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("BrokerCreatedAt = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
