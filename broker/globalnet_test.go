package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/test/kubetest"
)

func gnMember(id, pods, services string, size int) broker.Member {
	m := member(id, "uid-"+id, pods, services)
	m.Globalnet, m.GlobalCIDRSize = true, size
	return m
}

func wantErr(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one naming %q", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func blocks(t *testing.T, cs kubernetes.Interface) map[string]string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(v1.BrokerNamespace).Get(context.Background(), broker.GlobalnetConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// The pool, allocation, the overlap rules of enrolment, exhaustion and
// release, on a real apiserver (RBAC and the Globalnet policy under test).
func TestGlobalnetAllocation(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(env.Config)

	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if info.GlobalnetCIDR != "242.0.0.0/8" || blocks(t, cs)[broker.GlobalnetPoolKey] != "242.0.0.0/8" {
		t.Fatalf("default pool: info %q, ConfigMap %v", info.GlobalnetCIDR, blocks(t, cs))
	}
	// No member holds a block: the pool may change. A /20 holds four /22s.
	pool := netip.MustParsePrefix("242.0.0.0/20")
	if info, err = broker.Deploy(ctx, env.Config, broker.DeployOptions{GlobalnetCIDR: pool}); err != nil || info.GlobalnetCIDR != pool.String() {
		t.Fatalf("deploy with pool %s: %v, %q", pool, err, info.GlobalnetCIDR)
	}

	enroll := func(m broker.Member) (*broker.Enrolment, error) { return broker.EnrollMember(ctx, info, m) }
	c1, err := enroll(gnMember("c1", "10.1.0.0/16", "10.101.0.0/16", 1024))
	if err != nil || c1.GlobalCIDR.String() != "242.0.0.0/22" {
		t.Fatalf("c1: %v, %+v; want 242.0.0.0/22", err, c1)
	}

	t.Run("globalnet members with overlapping CIDRs join", func(t *testing.T) {
		c2, err := enroll(gnMember("c2", "10.1.0.0/16", "10.101.0.0/16", 1024))
		if err != nil || c2.GlobalCIDR.String() != "242.0.4.0/22" {
			t.Fatalf("c2: %v, %+v; want 242.0.4.0/22", err, c2)
		}
		sa, err := cs.CoreV1().ServiceAccounts(v1.BrokerNamespace).Get(ctx, broker.MemberPrefix+"c2", metav1.GetOptions{})
		if err != nil || sa.Annotations["strait.dev/globalnet"] != "true" || sa.Annotations["strait.dev/global-cidrs"] != "242.0.4.0/22" {
			t.Fatalf("c2's service account: %v, %v", err, sa.Annotations)
		}
	})
	t.Run("a plain member overlapping a globalnet one is refused, naming both", func(t *testing.T) {
		_, err := enroll(member("p1", "uid-p1", "10.1.0.0/16", "10.120.0.0/16"))
		var conflict *broker.ConflictError
		if !errors.As(err, &conflict) {
			t.Fatalf("want a conflict, got %v", err)
		}
		wantErr(t, err, "10.1.0.0/16", "p1", "c1", "c1 uses Globalnet, p1 does not")
	})
	t.Run("a globalnet member overlapping a plain one is refused, naming both", func(t *testing.T) {
		if _, err := enroll(member("p2", "uid-p2", "10.50.0.0/16", "10.150.0.0/16")); err != nil {
			t.Fatal(err)
		}
		_, err := enroll(gnMember("g3", "10.50.0.0/17", "10.160.0.0/16", 1024))
		wantErr(t, err, "10.50.0.0/17", "g3", "10.50.0.0/16", "p2", "g3 uses Globalnet, p2 does not")
		if _, ok := blocks(t, cs)["g3"]; ok {
			t.Error("a refused member holds a block")
		}
	})
	t.Run("pod CIDRs in a global CIDR are refused", func(t *testing.T) {
		_, err := enroll(member("p3", "uid-p3", "242.0.1.0/24", "10.170.0.0/16"))
		wantErr(t, err, "242.0.1.0/24", "p3", "global CIDR 242.0.0.0/22", "c1")
	})
	t.Run("joining again keeps the block", func(t *testing.T) {
		again, err := enroll(gnMember("c1", "10.1.0.0/16", "10.101.0.0/16", 4096))
		if err != nil || again.GlobalCIDR != c1.GlobalCIDR {
			t.Fatalf("c1 again: %v, %+v; want %s", err, again, c1.GlobalCIDR)
		}
	})
	t.Run("an explicit CIDR outside the pool is refused", func(t *testing.T) {
		m := gnMember("x1", "10.1.0.0/16", "10.101.0.0/16", 0)
		m.GlobalCIDR = netip.MustParsePrefix("243.0.0.0/22")
		_, err := enroll(m)
		wantErr(t, err, "243.0.0.0/22", "x1", "not in the broker's Globalnet pool 242.0.0.0/20")
	})
	t.Run("an explicit CIDR overlapping another's is refused, naming it", func(t *testing.T) {
		m := gnMember("x1", "10.1.0.0/16", "10.101.0.0/16", 0)
		m.GlobalCIDR = netip.MustParsePrefix("242.0.6.0/23")
		_, err := enroll(m)
		var conflict *broker.ConflictError
		if !errors.As(err, &conflict) {
			t.Fatalf("want a conflict, got %v", err)
		}
		wantErr(t, err, "242.0.6.0/23", "x1", "global CIDR of cluster c2 242.0.4.0/22")
	})
	t.Run("an explicit CIDR is taken as asked", func(t *testing.T) {
		m := gnMember("x2", "10.1.0.0/16", "10.101.0.0/16", 0)
		m.GlobalCIDR = netip.MustParsePrefix("242.0.12.0/22")
		e, err := enroll(m)
		if err != nil || e.GlobalCIDR != m.GlobalCIDR {
			t.Fatalf("x2: %v, %+v", err, e)
		}
	})
	t.Run("an exhausted pool is a clear error and leaves nothing", func(t *testing.T) {
		if e, err := enroll(gnMember("x3", "10.1.0.0/16", "10.101.0.0/16", 1024)); err != nil || e.GlobalCIDR.String() != "242.0.8.0/22" {
			t.Fatalf("x3: %v, %+v; want 242.0.8.0/22", err, e)
		}
		_, err := enroll(gnMember("x4", "10.1.0.0/16", "10.101.0.0/16", 1024))
		if !errors.Is(err, broker.ErrPoolExhausted) {
			t.Fatalf("x4: %v, want ErrPoolExhausted", err)
		}
		wantErr(t, err, "242.0.0.0/20", "1024 addresses", "x4")
		if _, err := cs.CoreV1().ServiceAccounts(v1.BrokerNamespace).Get(ctx, broker.MemberPrefix+"x4", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("x4's service account after a refused join: %v", err)
		}
	})
	t.Run("the pool cannot change while members hold blocks", func(t *testing.T) {
		_, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{GlobalnetCIDR: netip.MustParsePrefix("243.0.0.0/8")})
		wantErr(t, err, "242.0.0.0/20", "243.0.0.0/8", "c1 242.0.0.0/22")
		again, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
		if err != nil || again.GlobalnetCIDR != pool.String() {
			t.Fatalf("deploy again without a pool: %v, %q; want %s kept", err, again.GlobalnetCIDR, pool)
		}
	})
	t.Run("a member removes its own block and nothing else", func(t *testing.T) {
		c2Token, err := broker.Enroll(ctx, info, gnMember("c2", "10.1.0.0/16", "10.101.0.0/16", 1024))
		if err != nil {
			t.Fatal(err)
		}
		mc := kubernetes.NewForConfigOrDie(info.RESTConfig(c2Token)).CoreV1().ConfigMaps(v1.BrokerNamespace)
		for what, change := range map[string]func(map[string]string){
			"remove c1's key":  func(d map[string]string) { delete(d, "c1") },
			"change c1's key":  func(d map[string]string) { d["c1"] = "242.0.0.0/8" },
			"change the pool":  func(d map[string]string) { d[broker.GlobalnetPoolKey] = "10.0.0.0/8" },
			"add a key":        func(d map[string]string) { d["c9"] = "242.0.8.0/22" },
			"change its block": func(d map[string]string) { d["c2"] = "242.0.0.0/8" },
		} {
			cm, err := mc.Get(ctx, broker.GlobalnetConfigMap, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			change(cm.Data)
			_, err = mc.Update(ctx, cm, metav1.UpdateOptions{})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may only remove its own key") {
				t.Errorf("c2 tries to %s: %v, want Forbidden", what, err)
			}
		}
		if err := mc.Delete(ctx, broker.GlobalnetConfigMap, metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("c2 deletes the ConfigMap: %v, want Forbidden", err)
		}
		if err := broker.Leave(ctx, info.RESTConfig(c2Token), v1.BrokerNamespace, "c2"); err != nil {
			t.Fatalf("c2 leaves: %v", err)
		}
		got := blocks(t, cs)
		if _, ok := got["c2"]; ok || got["c1"] != "242.0.0.0/22" || got[broker.GlobalnetPoolKey] != pool.String() {
			t.Fatalf("blocks after c2 left: %v", got)
		}
		// The block is free again.
		if e, err := enroll(gnMember("x4", "10.1.0.0/16", "10.101.0.0/16", 1024)); err != nil || e.GlobalCIDR.String() != "242.0.4.0/22" {
			t.Fatalf("x4 after c2 left: %v, %+v; want 242.0.4.0/22", err, e)
		}
	})
	t.Run("cleanup-broker and a join without globalnet release the block", func(t *testing.T) {
		if left, err := broker.Remaining(ctx, env.Config, v1.BrokerNamespace, "x3"); err != nil || !slices.Contains(left, "configmaps/strait-globalnet key x3 (its global CIDR 242.0.8.0/22)") {
			t.Errorf("remaining of x3 before cleanup: %v, %v", left, err)
		}
		if err := broker.Unenroll(ctx, env.Config, v1.BrokerNamespace, "x3"); err != nil {
			t.Fatal(err)
		}
		if left, err := broker.Remaining(ctx, env.Config, v1.BrokerNamespace, "x3"); err != nil || len(left) > 0 {
			t.Errorf("remaining of x3 after cleanup: %v, %v", left, err)
		}
		if _, err := enroll(member("x2", "uid-x2", "10.1.0.0/16", "10.101.0.0/16")); err == nil {
			t.Fatal("x2 joins without globalnet with CIDRs that overlap c1's")
		}
		if _, err := enroll(member("x2", "uid-x2", "10.2.0.0/16", "10.102.0.0/16")); err != nil {
			t.Fatal(err)
		}
		got := blocks(t, cs)
		if _, ok := got["x3"]; ok {
			t.Errorf("x3's block after cleanup-broker: %v", got)
		}
		if _, ok := got["x2"]; ok {
			t.Errorf("x2's block after it joined without globalnet: %v", got)
		}
	})
}

// Many joins at once each get a block of their own: the loser of a race for
// the ConfigMap retries on the resourceVersion conflict.
func TestGlobalnetConcurrentAllocation(t *testing.T) {
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	ctx := context.Background()
	info, err := broker.Deploy(ctx, env.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	const n = 8
	got := make([]netip.Prefix, n)
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			got[i], errs[i] = broker.AllocateGlobalCIDR(ctx, info, fmt.Sprintf("c%d", i), 0, netip.Prefix{})
		}()
	}
	start.Done()
	done.Wait()
	seen := map[netip.Prefix]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("c%d: %v", i, errs[i])
		}
		if j, ok := seen[got[i]]; ok {
			t.Fatalf("c%d and c%d both got %s", j, i, got[i])
		}
		seen[got[i]] = i
	}
	state, err := broker.ReadGlobalnet(ctx, env.Config, v1.BrokerNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if id := fmt.Sprintf("c%d", i); state.Blocks[id] != got[i] {
			t.Errorf("the ConfigMap has %s for %s, the allocation said %s", state.Blocks[id], id, got[i])
		}
	}
}
