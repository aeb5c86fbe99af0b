package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"strait.dev/strait/gateway/health"
	"strait.dev/strait/gateway/natdiscovery"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/nodenet"
)

// Takeover by reachability (docs/gateway-failover.md): an active gateway
// that has lost every remote cluster says so in its heartbeat answers, and
// a standby that reaches one takes the Lease from it; so does a standby
// through which, as a node of the cluster, no remote gateway answers
// through the active one (its forwarding path is broken).
const (
	// cutOffHold is how long every connection of the active gateway must
	// have been in error (itself 3 unanswered health probes through the
	// cable, 3 s by default) before it says it is cut off: a moment's loss
	// (a remote cluster failing over, a busy node) is no reason to move
	// the role.
	cutOffHold = 2 * time.Second
	// reachSteady is how long a remote gateway must have answered a
	// standby's NAT discovery requests, without a gap, before the standby
	// counts it as reached. A new remote Endpoint (a remote cluster that
	// failed over) reaches the active gateway's prober at the same moment,
	// which clears its cut-off at once; the standby must not take the role
	// on the strength of that same Endpoint in between.
	reachSteady = 2 * time.Second
	// cutOffBackoff is how long a gateway that said it was cut off does
	// not take the role by reachability: when the fault is a remote
	// cluster's (it answers NAT discovery but carries no traffic), every
	// gateway that takes the role loses every remote cluster in turn, and
	// this bounds the flapping to one move per backoff.
	cutOffBackoff = time.Minute
	// reachInterval is how often a standby asks the remote gateways.
	reachInterval = time.Second
)

// startReach has this gateway ask, until ctx ends, from ephemeral UDP
// ports:
//   - every remote cluster's active gateway, on its NAT discovery port,
//     whether it answers, every reachInterval (NAT discovery's own
//     requests: the port every gateway already opens to the others, so no
//     new firewall rule);
//   - every remote gateway's health-check address of each family this
//     cluster has (throughTargets), with health probes, through the route
//     agent's routes, as any node's traffic goes: through the active
//     gateway's FORWARD path and cable (the source is the node's
//     pod-network address, which the remote cluster routes back through
//     its cable). Standing by, that is the active gateway's forwarding
//     under test, in every family.
//
// The remote gateways come from cache, the engine's Endpoint informer. It
// returns nil, having logged why, when a socket cannot start or there is no
// informer: the gateway then never takes the role by reachability.
func (e *Engine) startReach(ctx context.Context, wg *sync.WaitGroup, cache *objectCache[v1.Endpoint]) *natdiscovery.Discoverer {
	fail := func(what string, err error) *natdiscovery.Discoverer {
		e.log.Warn(what+"; this gateway will not take over from an active gateway that cannot carry traffic", "err", err)
		return nil
	}
	if cache == nil {
		return fail("cannot watch Endpoints", errors.New("no Endpoint informer"))
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		return fail("cannot open the reachability socket", err)
	}
	through, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		conn.Close()
		return fail("cannot open the socket for health probes through the active gateway", err)
	}
	d := natdiscovery.NewReach(conn, reachInterval)
	wg.Go(func() { _ = d.Run(ctx) })
	p := health.NewProber(through, health.Options{Interval: e.cfg.HealthCheckInterval, Failures: e.cfg.HealthCheckFailures, Log: e.log})
	wg.Go(func() { _ = p.Run(ctx) })
	wg.Go(func() {
		tick := time.NewTicker(reachInterval)
		defer tick.Stop()
		var reached []string
		for {
			if eps, err := cache.list(); err == nil {
				remotes, _ := activeEndpoints(eps, e.cfg.ClusterID)
				targets := map[string]natdiscovery.Target{}
				healthTargets := map[string]netip.AddrPort{}
				for _, r := range remotes {
					if t, ok := discoveryTarget(r.Spec); ok {
						targets[r.Name] = t
					}
					maps.Copy(healthTargets, throughTargets(r, e.cfg.PodCIDRs, uint16(e.cfg.HealthCheckPort)))
				}
				d.SetTargets(targets)
				p.SetTargets(healthTargets)
				e.followThrough(healthTargets, p.Results())
				if now := d.Answering(reachSteady); !slices.Equal(now, reached) {
					e.log.Info("remote gateways this gateway reaches directly changed", "reached", now, "before", reached)
					reached = now
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			case <-cache.changed:
			}
		}
	})
	return d
}

// throughTargets are the addresses a standby probes remote gateway r at
// through the active gateway: r's health-check address (on port) of each
// family of this cluster's pod CIDRs (podCIDRs; with none, r's first),
// keyed by r's name and the family ("c2.c2-n1/IPv6"). A forwarding path
// that drops one family alone (an ip6tables rule, say) leaves the other
// family's probes answered, and the cluster still cannot carry that
// family: each family is judged on its own (followThrough).
func throughTargets(r v1.Endpoint, podCIDRs []netip.Prefix, port uint16) map[string]netip.AddrPort {
	out := map[string]netip.AddrPort{}
	if len(podCIDRs) == 0 {
		if t, ok := healthTarget(r.Spec, nil, port); ok {
			out[r.Name+"/"+familyName(t.Addr())] = t
		}
		return out
	}
	for _, ip := range r.Spec.HealthCheckIPs {
		a, err := netip.ParseAddr(string(ip))
		if err != nil {
			continue
		}
		key := r.Name + "/" + familyName(a)
		if _, seen := out[key]; seen {
			continue
		}
		for _, p := range podCIDRs {
			if nodenet.FamilyOf(p.Addr()) == nodenet.FamilyOf(a) {
				out[key] = netip.AddrPortFrom(a, port)
				break
			}
		}
	}
	return out
}

// familyName is "IPv4" or "IPv6".
func familyName(a netip.Addr) string {
	return "IPv" + strconv.Itoa(int(nodenet.FamilyOf(a)))
}

// followThrough keeps throughLostSince: when, in one family at least,
// every remote gateway stopped answering the health probes through the
// active gateway (targets, with their results; throughTargets), zero while
// one answers in every family or there is none. It logs each change, with
// every target's result.
func (e *Engine) followThrough(targets map[string]netip.AddrPort, results map[string]health.Result) {
	lost := familyInError(targets, results)
	switch {
	case !lost:
		if e.throughLostSince.Swap(0) != 0 {
			e.log.Info("remote gateways answer health probes through the active gateway again, in every family", "probes", throughResults(targets, results))
		}
	case e.throughLostSince.Load() == 0:
		e.throughLostSince.Store(time.Now().UnixNano())
		e.log.Info("no remote gateway answers health probes through the active gateway in one family at least", "probes", throughResults(targets, results))
	}
}

// familyInError reports whether, in one IP family at least, every target
// of that family is in error.
func familyInError(targets map[string]netip.AddrPort, results map[string]health.Result) bool {
	for _, f := range nodenet.Families {
		of := map[string]netip.AddrPort{}
		for name, a := range targets {
			if nodenet.FamilyOf(a.Addr()) == f {
				of[name] = a
			}
		}
		if allInError(of, results) {
			return true
		}
	}
	return false
}

// throughResults is each target's address and status, sorted, for a log.
func throughResults(targets map[string]netip.AddrPort, results map[string]health.Result) []string {
	var out []string
	for name, a := range targets {
		r := results[name]
		out = append(out, fmt.Sprintf("%s %s: %s %s", name, a, r.Status, r.Message))
	}
	slices.Sort(out)
	return out
}

// replaces is the elector's replaces: why this gateway, standing by,
// should take the role from the active gateway, whose last heartbeat
// answer is holder; "" to keep it. Only when this gateway reaches a remote
// cluster's gateway now (it has answered for reachSteady) and has not
// itself been cut off within cutOffBackoff; then when the active gateway
// says it lost every remote cluster (holder.CutOff), or when no remote
// gateway has answered through it for the health probes' failures and
// cutOffHold more while its own probes are answered (not holder.Losing).
func (e *Engine) replaces(holder health.Result) string {
	why, whyNot := e.judgeHolder(holder.CutOff, holder.Losing)
	if prev, _ := e.whyNot.Swap(whyNot).(string); prev != whyNot && whyNot != "" {
		e.log.Info("staying standby", "why", whyNot)
	}
	return why
}

// judgeHolder is replaces' decision: why to take the role, or else why
// not (for the log; "" while nothing points to a fault).
//
// The probes through the active gateway judge its forwarding only while
// its own probes are answered: when every connection of its own is in
// error too (holderLosing), the fault may be the remote clusters' (a
// remote cable device down, say), which the probes through any gateway of
// this cluster would meet alike. The standby then waits for the active
// gateway to say it is cut off, which starts the old active gateway's
// cutOffBackoff: taking the role on the through probes alone, the standby
// once left the old one free to take it back on its own through probes a
// moment later, and the role moved every 2 s or so, too often for the
// remote cluster's standby to count any of them as reached.
func (e *Engine) judgeHolder(holderCutOff, holderLosing bool) (why, whyNot string) {
	lostAt := e.throughLostSince.Load()
	if !holderCutOff && lostAt == 0 {
		return "", ""
	}
	if e.reach == nil || len(e.reach.Answering(reachSteady)) == 0 {
		return "", "the active gateway cannot carry traffic, but this gateway reaches no remote gateway either"
	}
	if at := e.cutOffAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < cutOffBackoff {
		return "", "the active gateway cannot carry traffic, but this gateway lost every remote cluster itself less than " + cutOffBackoff.String() + " ago"
	}
	if holderCutOff {
		return "the active gateway lost every remote cluster", ""
	}
	if holderLosing {
		return "", "no remote gateway answers through the active gateway (in one family at least), nor its own health probes: waiting for it to say it is cut off"
	}
	if time.Since(time.Unix(0, lostAt)) >= cutOffHold {
		return "no remote gateway answers through the active gateway (in one family at least): its forwarding path is broken", ""
	}
	return "", "no remote gateway answers through the active gateway (in one family at least), for less than " + cutOffHold.String() + " yet"
}

// Condition on the active gateway's Gateway status: whether it reaches any
// remote cluster.
const (
	conditionRemoteReachable   = "RemoteClustersReachable"
	reasonReachable            = "Reachable"
	reasonLostEveryRemote      = "LostEveryRemoteCluster"
	reasonNoRemoteClusterKnown = "NoRemoteCluster"
)

// followCutOff says, in this term's heartbeat answers and Gateway status,
// whether the active gateway has lost every remote cluster: every health
// target in error for cutOffHold. It logs each change and asks for a
// status write then.
func (t *activeTerm) followCutOff(targets map[string]netip.AddrPort, results map[string]health.Result) {
	lost := allInError(targets, results)
	t.prober.SetLosing(lost)
	now := time.Now()
	switch {
	case !lost:
		if t.cutOff {
			t.e.log.Info("a remote cluster answers again; no longer cut off")
			t.prober.SetCutOff(false)
			t.reachChanged, t.lastStatus = now, nil
		}
		t.cutOff, t.lostSince = false, time.Time{}
	case t.lostSince.IsZero():
		t.lostSince = now
	case !t.cutOff && now.Sub(t.lostSince) >= cutOffHold:
		t.cutOff = true
		t.prober.SetCutOff(true)
		t.reachChanged, t.lastStatus = now, nil
		t.e.log.Warn("lost every remote cluster; a standby gateway that reaches one will take over", "connections", len(targets))
	}
	if t.cutOff {
		t.e.cutOffAt.Store(now.UnixNano())
	}
}

// reachCondition is the active gateway's RemoteClustersReachable condition
// for conns, its connections now.
func (t *activeTerm) reachCondition(conns []v1.Connection) metav1.Condition {
	c := metav1.Condition{Type: conditionRemoteReachable, Status: metav1.ConditionTrue, Reason: reasonReachable,
		LastTransitionTime: metav1.NewTime(t.reachChanged)}
	switch {
	case t.cutOff:
		var why []string
		for _, cn := range conns {
			why = append(why, fmt.Sprintf("%s: %s", cn.Endpoint, cn.StatusMessage))
		}
		slices.Sort(why)
		c.Status, c.Reason = metav1.ConditionFalse, reasonLostEveryRemote
		c.Message = fmt.Sprintf("every connection has been in error since %s (%s); a standby gateway that reaches a remote cluster takes over",
			t.lostSince.UTC().Format(time.RFC3339), strings.Join(why, "; "))
	case len(conns) == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, reasonNoRemoteClusterKnown, "no remote cluster's Endpoint is known yet"
	default:
		c.Message = "at least one connection is not in error"
	}
	return c
}

// allInError reports whether there are targets and every one's result is
// an error.
func allInError(targets map[string]netip.AddrPort, results map[string]health.Result) bool {
	for name := range targets {
		if results[name].Status != health.Error {
			return false
		}
	}
	return len(targets) > 0
}
