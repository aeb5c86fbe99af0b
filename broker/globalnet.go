package broker

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Globalnet at the broker (docs/globalnet.md): a pool of global addresses,
// and one block of it per Globalnet member, its global CIDR.
//
// Both live in the ConfigMap GlobalnetConfigMap of the broker namespace:
//
//	data:
//	  _pool: 242.0.0.0/8      # GlobalnetPoolKey: the pool
//	  c1: 242.0.0.0/16        # one key per member cluster ID: its block
//	  c2: 242.1.0.0/16
//
// A cluster ID is an RFC 1123 label, so no cluster ID is the pool's key.
const (
	// GlobalnetConfigMap names the ConfigMap that holds the pool and the
	// allocations.
	GlobalnetConfigMap = "strait-globalnet"
	// GlobalnetPoolKey is the ConfigMap key of the pool.
	GlobalnetPoolKey = "_pool"
	// DefaultGlobalCIDRSize is how many addresses a member's global CIDR
	// has unless join asks otherwise: a /16.
	DefaultGlobalCIDRSize = 65536
	// MinGlobalCIDRSize is the smallest global CIDR: its first two
	// addresses are reserved, and the cluster's default egress takes 8.
	MinGlobalCIDRSize = 16
)

// DefaultGlobalnetCIDR is the pool of a broker deployed without one.
var DefaultGlobalnetCIDR = netip.MustParsePrefix("242.0.0.0/8")

// ErrPoolExhausted is an allocation that found no free block of the size
// asked for in the pool. The error that wraps it names the pool and the
// size.
var ErrPoolExhausted = errors.New("no free block left in the Globalnet pool")

// Annotations on a member's service account for Globalnet.
const (
	globalnetAnnotation   = "strait.dev/globalnet"
	globalCIDRsAnnotation = "strait.dev/global-cidrs"
)

// ValidateGlobalnetPool checks that p can be a Globalnet pool: an IPv4
// prefix of /8 to /24, given by its network address.
func ValidateGlobalnetPool(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("globalnet CIDR %s: only IPv4 pools are supported", p)
	}
	if p.Bits() < 8 || p.Bits() > 24 {
		return fmt.Errorf("globalnet CIDR %s: the pool must be a /8 to a /24", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("globalnet CIDR %s: host bits set, did you mean %s?", p, p.Masked())
	}
	return nil
}

// ValidateGlobalCIDRSize checks a global CIDR size in addresses (a power of
// two, from MinGlobalCIDRSize to 2^24) and returns its prefix length.
func ValidateGlobalCIDRSize(size int) (int, error) {
	if size < MinGlobalCIDRSize || size > 1<<24 || size&(size-1) != 0 {
		return 0, fmt.Errorf("global CIDR size %d: want a power of two from %d to %d addresses (65536 is a /16)", size, MinGlobalCIDRSize, 1<<24)
	}
	return 32 - bits.TrailingZeros(uint(size)), nil
}

// EnsureGlobalnetPool makes sure the broker namespace ns holds the
// Globalnet ConfigMap and returns its pool. A broker without one gets want,
// or DefaultGlobalnetCIDR when want is not valid. A broker with one keeps
// its pool when want is not valid or equal; it takes want instead when no
// member holds a block. Errors: changing the pool of a broker whose members
// hold blocks, or the apiserver's.
func EnsureGlobalnetPool(ctx context.Context, cs kubernetes.Interface, ns string, want netip.Prefix) (netip.Prefix, error) {
	var pool netip.Prefix
	err := retry.RetryOnConflict(allocBackoff, func() error {
		cms := cs.CoreV1().ConfigMaps(ns)
		cm, err := cms.Get(ctx, GlobalnetConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pool = want
			if !pool.IsValid() {
				pool = DefaultGlobalnetCIDR
			}
			cm = &corev1.ConfigMap{ObjectMeta: meta(GlobalnetConfigMap, ns), Data: map[string]string{GlobalnetPoolKey: pool.String()}}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), GlobalnetConfigMap, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		have, perr := netip.ParsePrefix(cm.Data[GlobalnetPoolKey])
		if perr == nil && (!want.IsValid() || want == have) {
			pool = have
			return nil
		}
		if perr == nil {
			var holders []string
			for k, v := range cm.Data {
				if k != GlobalnetPoolKey {
					holders = append(holders, k+" "+v)
				}
			}
			if len(holders) > 0 {
				sort.Strings(holders)
				return fmt.Errorf("the broker's Globalnet pool is %s and members hold blocks of it (%s): it cannot become %s while they do", have, strings.Join(holders, ", "), want)
			}
		}
		pool = want
		if !pool.IsValid() {
			pool = DefaultGlobalnetCIDR
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[GlobalnetPoolKey] = pool.String()
		_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("globalnet ConfigMap %s/%s: %w", ns, GlobalnetConfigMap, err)
	}
	return pool, nil
}

// allocBackoff spaces the retries of an allocation that lost a race for the
// ConfigMap to another: enough for many joins at once.
var allocBackoff = wait.Backoff{Steps: 12, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 0.5, Cap: time.Second}

// claim is a CIDR a global CIDR must not overlap, and whose it is.
type claim struct {
	cidr  netip.Prefix
	owner string // "cluster c1's pod CIDR"
}

// GlobalnetState is the broker's Globalnet ConfigMap, read.
type GlobalnetState struct {
	Pool netip.Prefix
	// Blocks are the members' global CIDRs by cluster ID.
	Blocks map[string]netip.Prefix
}

// ReadGlobalnet reads the Globalnet ConfigMap of broker namespace ns with
// cfg (a member's or the enrolment credential). A value that does not parse
// is left out. Errors are the apiserver's (NotFound on a broker deployed
// before Globalnet).
func ReadGlobalnet(ctx context.Context, cfg *rest.Config, ns string) (*GlobalnetState, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, GlobalnetConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("globalnet ConfigMap %s/%s: %w", ns, GlobalnetConfigMap, err)
	}
	st, _ := parseGlobalnet(cm)
	return st, nil
}

func parseGlobalnet(cm *corev1.ConfigMap) (*GlobalnetState, error) {
	st := &GlobalnetState{Blocks: map[string]netip.Prefix{}}
	pool, err := netip.ParsePrefix(cm.Data[GlobalnetPoolKey])
	if err == nil {
		err = ValidateGlobalnetPool(pool)
	}
	if err != nil {
		return st, fmt.Errorf("the broker's Globalnet pool %q is not valid (%v): run straitctl deploy-broker --globalnet-cidr", cm.Data[GlobalnetPoolKey], err)
	}
	st.Pool = pool
	for k, v := range cm.Data {
		if k == GlobalnetPoolKey {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			st.Blocks[k] = p
		}
	}
	return st, nil
}

// AllocateGlobalCIDR allots member clusterID a global CIDR at the broker
// in info, with its enrolment credential, and returns it. size is in
// addresses (0: DefaultGlobalCIDRSize); explicit, when valid, is the block
// asked for instead, which must lie in the pool and overlap no other
// member's global, pod or Service CIDR. Otherwise the first free block of
// the size, aligned, is taken, skipping every member's CIDRs. A member
// that holds a block keeps it (an explicit other block is an error: leave
// first). Errors: ErrPoolExhausted (wrapped, naming pool and size), a
// *ConflictError for an explicit block that overlaps another's, an explicit
// block outside the pool, a broker without a Globalnet ConfigMap, the
// apiserver's.
func AllocateGlobalCIDR(ctx context.Context, info *Info, clusterID string, size int, explicit netip.Prefix) (netip.Prefix, error) {
	cs, err := kubernetes.NewForConfig(info.RESTConfig(info.Token))
	if err != nil {
		return netip.Prefix{}, err
	}
	avoid, err := memberClaims(ctx, cs, info.Namespace, clusterID)
	if err != nil {
		return netip.Prefix{}, err
	}
	p, _, err := allocate(ctx, cs, info.Namespace, clusterID, size, explicit, avoid)
	return p, err
}

// memberClaims are the pod, Service and global CIDRs the service
// accounts of members other than self record.
func memberClaims(ctx context.Context, cs kubernetes.Interface, ns, self string) ([]claim, error) {
	members, err := cs.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{LabelSelector: v1.ClusterIDLabel})
	if err != nil {
		return nil, fmt.Errorf("list broker members: %w", err)
	}
	var out []claim
	for _, sa := range members.Items {
		if id := sa.Labels[v1.ClusterIDLabel]; id != self {
			out = append(out, saClaims(&sa)...)
		}
	}
	return out, nil
}

// allocate is AllocateGlobalCIDR with a client and the claims to avoid; it
// reports whether the block is new.
func allocate(ctx context.Context, cs kubernetes.Interface, ns, id string, size int, explicit netip.Prefix, avoid []claim) (netip.Prefix, bool, error) {
	if size == 0 {
		size = DefaultGlobalCIDRSize
	}
	length, err := ValidateGlobalCIDRSize(size)
	if explicit.IsValid() {
		if !explicit.Addr().Is4() || explicit.Masked() != explicit {
			return netip.Prefix{}, false, fmt.Errorf("global CIDR %s: want an IPv4 network address and prefix length", explicit)
		}
		length, err = ValidateGlobalCIDRSize(1 << (32 - explicit.Bits()))
	}
	if err != nil {
		return netip.Prefix{}, false, err
	}
	var got netip.Prefix
	var isNew bool
	err = retry.RetryOnConflict(allocBackoff, func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, GlobalnetConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("the broker has no Globalnet pool (ConfigMap %s/%s): run straitctl deploy-broker again to add it", ns, GlobalnetConfigMap)
		}
		if err != nil {
			return fmt.Errorf("globalnet ConfigMap %s/%s: %w", ns, GlobalnetConfigMap, err)
		}
		st, err := parseGlobalnet(cm)
		if err != nil {
			return err
		}
		if have, ok := st.Blocks[id]; ok {
			if explicit.IsValid() && explicit != have {
				return fmt.Errorf("cluster %s holds the global CIDR %s, not %s: leave first to change it", id, have, explicit)
			}
			got, isNew = have, false
			return nil
		}
		taken := append([]claim(nil), avoid...)
		for other, b := range st.Blocks {
			taken = append(taken, claim{b, "the global CIDR of cluster " + other})
		}
		// Sorted, so that errors name the same claim every time.
		sort.Slice(taken, func(i, j int) bool { return taken[i].owner < taken[j].owner })
		if explicit.IsValid() {
			if !st.Pool.Contains(explicit.Addr()) || explicit.Bits() < st.Pool.Bits() {
				return fmt.Errorf("global CIDR %s of cluster %s is not in the broker's Globalnet pool %s", explicit, id, st.Pool)
			}
			for _, t := range taken {
				if t.cidr.Overlaps(explicit) {
					return &ConflictError{fmt.Sprintf("global CIDR %s of cluster %s overlaps %s %s", explicit, id, t.owner, t.cidr)}
				}
			}
			got = explicit
		} else {
			var ok bool
			if got, ok = firstFree(st.Pool, length, taken); !ok {
				return fmt.Errorf("pool %s, a block of %d addresses (/%d) for cluster %s: %w", st.Pool, size, length, id, ErrPoolExhausted)
			}
		}
		cm.Data[id] = got.String()
		isNew = true
		_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return netip.Prefix{}, false, err
	}
	return got, isNew, nil
}

// firstFree returns the first block of prefix length length, aligned, in
// pool that overlaps no claim.
func firstFree(pool netip.Prefix, length int, taken []claim) (netip.Prefix, bool) {
	if length < pool.Bits() {
		return netip.Prefix{}, false
	}
	start := uint64(u32(pool.Addr()))
	end := start + 1<<(32-pool.Bits()) // one past the pool
	step := uint64(1) << (32 - length)
	for a := start; a+step <= end; {
		cand := netip.PrefixFrom(addr4(uint32(a)), length)
		next := a + step
		free := true
		for _, t := range taken {
			if t.cidr.Addr().Is4() && t.cidr.Overlaps(cand) {
				free = false
				// Skip past the claim, to the next aligned block.
				past := uint64(u32(t.cidr.Masked().Addr())) + 1<<(32-t.cidr.Bits())
				next = max(next, (past+step-1)/step*step)
			}
		}
		if free {
			return cand, true
		}
		a = next
	}
	return netip.Prefix{}, false
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ReleaseGlobalCIDR removes member clusterID's block from the Globalnet
// ConfigMap of broker namespace ns, with cfg: the member's own credential
// (which the Globalnet policy lets remove its own key and nothing else) or
// one that may update the ConfigMap (the enrolment credential, an admin).
// A broker without the ConfigMap, or without the member's key, has nothing
// to release. Errors are the apiserver's.
func ReleaseGlobalCIDR(ctx context.Context, cfg *rest.Config, ns, clusterID string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return release(ctx, cs, ns, clusterID)
}

func release(ctx context.Context, cs kubernetes.Interface, ns, clusterID string) error {
	err := retry.RetryOnConflict(allocBackoff, func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, GlobalnetConfigMap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, ok := cm.Data[clusterID]; !ok {
			return nil
		}
		delete(cm.Data, clusterID)
		_, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("release the global CIDR of %s (ConfigMap %s/%s): %w", clusterID, ns, GlobalnetConfigMap, err)
	}
	return nil
}

// GlobalnetPolicyName is the name of the policy that guards the Globalnet
// ConfigMap of a broker namespace.
func GlobalnetPolicyName(namespace string) string { return "strait-member-globalnet." + namespace }

// globalnetPolicy lets a member credential change the Globalnet ConfigMap
// only by removing its own cluster ID's key (its block, at leave): every
// other key stays as it is, and it adds none.
func globalnetPolicy(ns string) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	user := "system:serviceaccount:" + ns + ":" + MemberPrefix
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: GlobalnetPolicyName(ns), Labels: map[string]string{"app.kubernetes.io/part-of": "strait"}},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				ResourceNames: []string{GlobalnetConfigMap},
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			MatchConditions: []admissionv1.MatchCondition{{
				Name:       "member-credential",
				Expression: fmt.Sprintf("request.userInfo.username.startsWith('%s')", user),
			}},
			Variables: []admissionv1.Variable{
				{Name: "cluster", Expression: fmt.Sprintf("request.userInfo.username.substring(%d)", len(user))},
			},
			Validations: []admissionv1.Validation{{
				Expression: `request.operation == 'UPDATE' &&
					(!has(object.data) || !(variables.cluster in object.data)) &&
					(!has(oldObject.data) || oldObject.data.all(k, k == variables.cluster || (has(object.data) && k in object.data && object.data[k] == oldObject.data[k]))) &&
					(!has(object.data) || object.data.all(k, has(oldObject.data) && k in oldObject.data && oldObject.data[k] == object.data[k]))`,
				MessageExpression: fmt.Sprintf("'cluster ' + variables.cluster + ' may only remove its own key (' + variables.cluster + ') from ConfigMap %s'", GlobalnetConfigMap),
				Reason:            ptr.To(metav1.StatusReasonForbidden),
			}},
		},
	}
	return policy, policyBinding(GlobalnetPolicyName(ns), ns)
}
