package syncer_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// OnSync is told of the first complete list, of each attempt that fails
// (the broker refusing writes) and of each that succeeds once the broker
// takes them again.
func TestOnSync(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	brokerURL, err := url.Parse(w.brokerEnv.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	refuse.Store(true)
	errInjected := errors.New("broker write refused by the test")
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if refuse.Load() && r.URL.Host == brokerURL.Host && r.Method != http.MethodGet {
				return nil, errInjected
			}
			return rt.RoundTrip(r)
		})
	}
	var mu sync.Mutex
	var oks, fails int
	onSync := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			fails++
		} else {
			oks++
		}
	}
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return oks, fails
	}
	ep := endpoint("c1.gw", "c1", "c1")
	ep.Namespace = "c1-system"
	if err := w.members.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	w.startSyncerWith(t, "c1", syncerOptions{wrap: wrap, onSync: onSync})

	poll := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			ok, fail := counts()
			t.Fatalf("waiting for %s: %d successes and %d failures reported", what, ok, fail)
		}
	}
	// The first list is a success; the write to the broker fails.
	poll("a failure", func() bool { ok, fail := counts(); return ok >= 1 && fail >= 1 })
	okBefore, _ := counts()
	refuse.Store(false)
	poll("the record at the broker", func() bool {
		err := w.brokerAdmin.Get(ctx, types.NamespacedName{Namespace: w.info.Namespace, Name: "c1.gw"}, &v1.Endpoint{})
		return err == nil
	})
	poll("a success after the broker took the write", func() bool { ok, _ := counts(); return ok > okBefore })
}
