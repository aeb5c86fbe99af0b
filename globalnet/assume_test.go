package globalnet

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// names renders a view as "name:addresses", sorted.
func names(objs []*v1.GlobalEgressIP) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Name+":"+ipStrings(o.Status.AllocatedIPs))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func geip(name, rv string, ips ...v1.IP) v1.GlobalEgressIP {
	return v1.GlobalEgressIP{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, ResourceVersion: rv}, Status: v1.GlobalEgressIPStatus{AllocatedIPs: ips}}
}

// view's merge of the cache and the allocator's writes, case by case; the
// uncached reads go to a real apiserver, which holds "kept" and not
// "gone".
func TestAssumedView(t *testing.T) {
	ctx := context.Background()
	cl := newCluster(t, "242.1.0.0/24")
	kept := egress("kept", 1, map[string]string{"k": "1"})
	cl.create(t, kept)
	kept.Status.AllocatedIPs = []v1.IP{"242.1.0.40"}
	if err := cl.c.Status().Update(ctx, kept); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	a := newAssumed(cl.c)
	a.now = func() time.Time { return now }
	w := func(o v1.GlobalEgressIP) { a.write(&o) }
	d := func(o v1.GlobalEgressIP) { a.deleted(&o) }

	// The cache behind the writes: the writes are seen.
	w(geip("x", "20", "242.1.0.10"))
	d(geip("y", "21"))
	w(geip("new", "22", "242.1.0.11"))
	cached := []v1.GlobalEgressIP{geip("x", "15"), geip("y", "18", "242.1.0.12"), geip("z", "5", "242.1.0.13")}
	got, err := view(ctx, a, cached)
	if err != nil {
		t.Fatal(err)
	}
	if s, want := names(got), "new:242.1.0.11 x:242.1.0.10 z:242.1.0.13"; s != want {
		t.Errorf("cache behind: %s, want %s", s, want)
	}

	// The cache caught up (or past): its copies, and the entries go.
	cached = []v1.GlobalEgressIP{geip("x", "25", "242.1.0.14"), geip("y", "30", "242.1.0.12"), geip("new", "22", "242.1.0.11")}
	if got, err = view(ctx, a, cached); err != nil {
		t.Fatal(err)
	}
	if s, want := names(got), "new:242.1.0.11 x:242.1.0.14 y:242.1.0.12"; s != want {
		t.Errorf("cache caught up: %s, want %s", s, want)
	}
	if len(a.entries) != 0 || a.waiting() {
		t.Errorf("entries left: %v", a.entries)
	}

	// Written, then missing from the cache: kept until verifyAfter, then
	// read from the apiserver (gone: dropped; there: its copy).
	w(geip("gone", "40", "242.1.0.20"))
	w(*kept)
	got, _ = view(ctx, a, []v1.GlobalEgressIP(nil))
	if s, want := names(got), "gone:242.1.0.20 kept:242.1.0.40"; s != want || !a.waiting() {
		t.Errorf("missing, before verifyAfter: %s, want %s", s, want)
	}
	now = now.Add(verifyAfter)
	got, err = view(ctx, a, []v1.GlobalEgressIP(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s, want := names(got), "kept:242.1.0.40"; s != want {
		t.Errorf("missing, after verifyAfter: %s, want %s", s, want)
	}
	if _, ok := a.entries[keyOf(kept)]; !ok || len(a.entries) != 1 {
		t.Errorf("entries after the uncached read: %v", a.entries)
	}

	// A resourceVersion that is not an integer: the apiserver decides.
	cached = []v1.GlobalEgressIP{geip("kept", "opaque")}
	if got, err = view(ctx, a, cached); err != nil {
		t.Fatal(err)
	}
	if s, want := names(got), "kept:242.1.0.40"; s != want {
		t.Errorf("opaque: %s, want %s", s, want)
	}
	var live v1.GlobalEgressIP
	if err := cl.c.Get(ctx, client.ObjectKeyFromObject(kept), &live); err != nil || got[0].ResourceVersion != live.ResourceVersion {
		t.Errorf("opaque: read %s, the apiserver has %s (%v)", got[0].ResourceVersion, live.ResourceVersion, err)
	}
}
