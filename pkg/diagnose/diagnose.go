// Package diagnose looks for what commonly breaks a Strait clusterset and
// says, for each check, ok, warn or fail and what to do: kube-proxy's mode,
// the pod and service CIDRs the cluster has against those it joined with,
// overlapping CIDRs between clusters, gateway nodes and their public
// addresses, the gateways' cables, the NAT discovery port between gateways
// (a real request from a pod on one gateway node to the other gateway), the
// largest packet that crosses from a pod of each cluster to a pod of each
// other with Don't Fragment set, against the cable's MTU, the
// clusterset.local forward in the cluster's CoreDNS, clock and version skew
// between clusters, and Strait's leftovers in clusters that have not
// joined, on their nodes too. It is the library of "straitctl diagnose".
package diagnose

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"strait.dev/strait/deploy/manifests"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/corefile"
	"strait.dev/strait/pkg/member"
	"strait.dev/strait/pkg/mtu"
	"strait.dev/strait/pkg/probe"
)

// Check names.
const (
	CheckKubeProxy    = "kube-proxy-mode"
	CheckCIDRs        = "cidrs"
	CheckOverlap      = "cidr-overlap"
	CheckGatewayNodes = "gateway-nodes"
	CheckPublicIP     = "public-ip"
	CheckCables       = "cables"
	CheckNATDiscovery = "nat-discovery"
	CheckMTU          = "mtu"
	CheckDNSForward   = "dns-forward"
	CheckClockSkew    = "clock-skew"
	CheckVersions     = "versions"
	CheckLeftovers    = "leftovers"
)

// Results.
const (
	OK   = "ok"
	Warn = "warn"
	Fail = "fail"
)

const (
	namespacePrefix = "strait-diagnose"
	// kubeProxyMetrics is where kube-proxy answers /proxyMode by default
	// (--metrics-bind-address), on the node's loopback.
	kubeProxyMetrics = "http://127.0.0.1:10249/proxyMode"
	// clockWarn and clockFail bound the skew between clusters' apiservers:
	// HTTP dates have a resolution of a second, so less than two is noise;
	// tokens and certificates start to be refused at about a minute.
	clockWarn = 2 * time.Second
	clockFail = 30 * time.Second
	// probeTimeout bounds each probe in a test pod.
	probeTimeout = 3 * time.Second
)

// Options say how to diagnose.
type Options struct {
	// Image is the test workload's image (probe.DefaultImage).
	Image string
	// Version is straitctl's own version, which the components' versions
	// are compared with.
	Version string
	// Log receives progress lines, printf-style; nil drops them.
	Log func(format string, args ...any)
}

// Result is one check.
type Result struct {
	Check string `json:"check"`
	// Where is a cluster, a node or a pair ("c1", "c1/c1-n1", "c1 -> c2").
	Where  string `json:"where"`
	Result string `json:"result"`
	Detail string `json:"detail"`
	// Todo says what to do about a warn or a fail.
	Todo string `json:"todo,omitempty"`
}

// Report is a whole run.
type Report struct {
	Results []Result `json:"results"`
}

// Err is nil unless a check failed; it names the failed checks.
func (r *Report) Err() error {
	var failed []string
	for _, x := range r.Results {
		if x.Result == Fail {
			failed = append(failed, x.Check+" "+x.Where)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d checks failed: %s", len(failed), len(r.Results), strings.Join(failed, ", "))
}

// PrintTable writes one line per check.
func (r *Report) PrintTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tCHECK\tWHERE\tDETAIL\tWHAT TO DO")
	for _, x := range r.Results {
		todo := x.Todo
		if todo == "" {
			todo = "-"
		}
		// One line per check, whatever a detail quotes.
		oneLine := strings.NewReplacer("\n", " ", "\t", " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Result, x.Check, x.Where, oneLine.Replace(x.Detail), oneLine.Replace(todo))
	}
	return tw.Flush()
}

type run struct {
	o       Options
	mu      sync.Mutex
	results []Result
}

func (r *run) add(check, where, result, detail, todo string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, Result{Check: check, Where: where, Result: result, Detail: detail, Todo: todo})
}

func (r *run) logf(format string, args ...any) {
	if r.o.Log != nil {
		r.o.Log(format, args...)
	}
}

// member is what diagnose learns about a joined cluster.
type memberState struct {
	c        *probe.Cluster
	nodes    probe.Nodes
	endpoint *v1.Endpoint
	gateway  *v1.Gateway
}

// Run diagnoses the clusters. Clusters that have not joined (an empty ID)
// are only searched for leftovers. A failed check is in the report;
// errors are what kept the checks from running.
func Run(ctx context.Context, clusters []*probe.Cluster, o Options) (*Report, error) {
	r := &run{o: o}
	var joined []*memberState
	var unjoined []*probe.Cluster
	for _, c := range clusters {
		if c.ID == "" {
			r.leftovers(ctx, c)
			unjoined = append(unjoined, c)
			continue
		}
		m := &memberState{c: c}
		joined = append(joined, m)
		if err := r.readMember(ctx, m); err != nil {
			return nil, err
		}
		r.gatewayNodes(m)
		r.publicIP(m)
		r.cables(m)
		r.cidrs(ctx, m)
		r.dnsForward(ctx, m)
	}
	r.overlap(ctx, joined)
	r.clockSkew(ctx, clusters)
	r.versions(ctx, joined)
	if len(joined) > 0 {
		if err := r.podChecks(ctx, joined); err != nil {
			return nil, err
		}
	}
	if len(unjoined) > 0 {
		if err := r.nodeLeftovers(ctx, unjoined); err != nil {
			return nil, err
		}
	}
	order := []string{CheckLeftovers, CheckKubeProxy, CheckCIDRs, CheckOverlap, CheckGatewayNodes, CheckPublicIP, CheckCables,
		CheckNATDiscovery, CheckMTU, CheckDNSForward, CheckClockSkew, CheckVersions}
	slices.SortStableFunc(r.results, func(a, b Result) int {
		if d := slices.Index(order, a.Check) - slices.Index(order, b.Check); d != 0 {
			return d
		}
		return strings.Compare(a.Where, b.Where)
	})
	return &Report{Results: r.results}, ctx.Err()
}

func (r *run) readMember(ctx context.Context, m *memberState) error {
	var err error
	if m.nodes, err = probe.FindNodes(ctx, m.c); err != nil {
		return err
	}
	var eps v1.EndpointList
	if err := m.c.Client.List(ctx, &eps, client.InNamespace(v1.ComponentNamespace), client.MatchingLabels{v1.ClusterIDLabel: m.c.ID}); err != nil {
		return fmt.Errorf("%s: list endpoints: %w", m.c.ID, err)
	}
	for i := range eps.Items {
		if eps.Items[i].Spec.ClusterID == v1.ClusterID(m.c.ID) {
			m.endpoint = &eps.Items[i]
		}
	}
	if m.nodes.ActiveGateway != "" {
		var gw v1.Gateway
		if err := m.c.Client.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: m.nodes.ActiveGateway}, &gw); err == nil {
			m.gateway = &gw
		}
	}
	return nil
}

// gatewayNodes: labelled nodes, a standby, an active gateway.
func (r *run) gatewayNodes(m *memberState) {
	id, n := m.c.ID, m.nodes
	switch {
	case len(n.Gateways) == 0:
		r.add(CheckGatewayNodes, id, Fail, "no node has the label "+probe.GatewayLabel+"=true",
			"name gateway nodes: straitctl join <file> --gateway-nodes <node>,<node>")
	case n.ActiveGateway == "":
		r.add(CheckGatewayNodes, id, Fail, "gateway nodes "+strings.Join(n.Gateways, ",")+", none active",
			"look at the gateway pods: kubectl -n "+v1.ComponentNamespace+" get pods -l app.kubernetes.io/component=gateway")
	case len(n.Gateways) == 1:
		r.add(CheckGatewayNodes, id, Warn, "one gateway node ("+n.ActiveGateway+"), active: no standby to fail over to",
			"label a second node: straitctl join <file> --gateway-nodes "+n.ActiveGateway+",<node>")
	default:
		r.add(CheckGatewayNodes, id, OK, fmt.Sprintf("gateway nodes %s, active %s", strings.Join(n.Gateways, ","), n.ActiveGateway), "")
	}
}

// publicIP: the cluster's Endpoint and the addresses others reach it at.
func (r *run) publicIP(m *memberState) {
	e := m.endpoint
	switch {
	case e == nil:
		r.add(CheckPublicIP, m.c.ID, Fail, "the cluster publishes no Endpoint", "the active gateway publishes it: look at its logs")
	case len(e.Spec.PublicIPs) == 0:
		r.add(CheckPublicIP, m.c.ID, Warn, fmt.Sprintf("%s: private %s, no public address", e.Spec.Hostname, ips(e.Spec.PrivateIPs)),
			"clusters outside this network cannot reach it: annotate the gateway nodes with "+v1.PublicIPAnnotation+"=<address>")
	default:
		nat := ""
		if e.Spec.NATTraversal {
			nat = " (behind NAT)"
		}
		r.add(CheckPublicIP, m.c.ID, OK, fmt.Sprintf("%s: private %s, public %s%s", e.Spec.Hostname, ips(e.Spec.PrivateIPs), ips(e.Spec.PublicIPs), nat), "")
	}
}

func ips(in v1.DualStackIPs) string {
	s := make([]string, len(in))
	for i, x := range in {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

// cables: the active gateway's own view of each cable.
func (r *run) cables(m *memberState) {
	if m.gateway == nil {
		return
	}
	if len(m.gateway.Status.Connections) == 0 {
		r.add(CheckCables, m.c.ID, Warn, "the active gateway has no cables", "no other cluster has joined, or their Endpoints do not reach this one: straitctl show endpoints")
	}
	for _, x := range m.gateway.Status.Connections {
		where := m.c.ID + " -> " + string(x.ClusterID)
		if x.Status == v1.Connected {
			detail := "connected via " + string(x.UsingIP)
			if x.LatencyRTT != nil {
				detail += ", rtt " + x.LatencyRTT.Average.Duration.Round(time.Microsecond).String()
			}
			r.add(CheckCables, where, OK, detail, "")
			continue
		}
		r.add(CheckCables, where, Fail, fmt.Sprintf("%s: %s", x.Status, x.StatusMessage),
			"the cable's UDP port must pass between the gateways both ways (a firewall, a security group); see the nat-discovery check and the gateway logs")
	}
}

// cidrs: what the cluster has against what it joined with.
func (r *run) cidrs(ctx context.Context, m *memberState) {
	var ds appsv1.DaemonSet
	if err := m.c.Client.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, &ds); err != nil {
		r.add(CheckCIDRs, m.c.ID, Fail, "cannot read the gateway DaemonSet: "+err.Error(), "join the cluster again")
		return
	}
	joined, err := manifests.ReadValues(&ds)
	if err != nil {
		r.add(CheckCIDRs, m.c.ID, Warn, "cannot read the CIDRs the cluster joined with: "+err.Error(), "join the cluster again")
		return
	}
	check := func(kind, flag, joinedList string, discover func() ([]netip.Prefix, error)) {
		have, err := discover()
		if err != nil {
			r.add(CheckCIDRs, m.c.ID, Warn, fmt.Sprintf("%s CIDRs joined %s; discovery: %v", kind, joinedList, err), "make sure "+joinedList+" are the cluster's "+kind+" CIDRs")
			return
		}
		switch missing := uncovered(joinedList, have); {
		case len(missing) == 0:
			r.add(CheckCIDRs, m.c.ID, OK, fmt.Sprintf("%s CIDRs %s, within those joined (%s)", kind, prefixes(have), joinedList), "")
		default:
			r.add(CheckCIDRs, m.c.ID, Fail, fmt.Sprintf("%s CIDRs joined %s, the cluster also has %s", kind, joinedList, prefixes(missing)),
				fmt.Sprintf("other clusters cannot reach addresses in %s: join again with %s covering them", prefixes(missing), flag))
		}
	}
	check("pod", "--pod-cidr", joined.PodCIDRs, func() ([]netip.Prefix, error) { return member.DiscoverPodCIDRs(ctx, m.c.Kube) })
	check("service", "--service-cidr", joined.ServiceCIDRs, func() ([]netip.Prefix, error) { return member.DiscoverServiceCIDRs(ctx, m.c.Kube) })
}

// uncovered returns the prefixes of have that no prefix of the
// comma-separated list joined contains: the cluster's addresses that other
// clusters do not route to it. A joined prefix larger than what the cluster
// uses (a /16 joined, nodes with /24s of it) is fine.
func uncovered(joined string, have []netip.Prefix) []netip.Prefix {
	var js []netip.Prefix
	for _, s := range strings.Split(joined, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			js = append(js, p.Masked())
		}
	}
	var out []netip.Prefix
	for _, p := range have {
		if !slices.ContainsFunc(js, func(j netip.Prefix) bool { return j.Bits() <= p.Bits() && j.Contains(p.Masked().Addr()) }) {
			out = append(out, p)
		}
	}
	return out
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Overlaps returns, for every two of the clusters, the prefixes of one that
// overlap those of the other, as "a 10.1.0.0/16 and b 10.1.128.0/17". Two
// Globalnet clusters (with global CIDRs) may share pod and service CIDRs:
// only their global CIDRs are compared. Otherwise each cluster's pod,
// service and global CIDRs are compared with the other's (the broker's
// rules at enrolment, docs/globalnet.md).
func Overlaps(clusters []v1.Cluster) []string {
	var out []string
	all := func(c v1.Cluster) []v1.CIDR {
		return slices.Concat(c.Spec.PodCIDRs, c.Spec.ServiceCIDRs, c.Spec.GlobalCIDRs)
	}
	for i, a := range clusters {
		for _, b := range clusters[i+1:] {
			as, bs := all(a), all(b)
			if len(a.Spec.GlobalCIDRs) > 0 && len(b.Spec.GlobalCIDRs) > 0 {
				as, bs = a.Spec.GlobalCIDRs, b.Spec.GlobalCIDRs
			}
			for _, x := range as {
				for _, y := range bs {
					px, errx := netip.ParsePrefix(string(x))
					py, erry := netip.ParsePrefix(string(y))
					if errx == nil && erry == nil && px.Overlaps(py) {
						out = append(out, fmt.Sprintf("%s %s and %s %s", a.Spec.ClusterID, x, b.Spec.ClusterID, y))
					}
				}
			}
		}
	}
	return out
}

// overlap: the Cluster records every member holds, all members' CIDRs.
func (r *run) overlap(ctx context.Context, joined []*memberState) {
	byID := map[v1.ClusterID]v1.Cluster{}
	for _, m := range joined {
		var list v1.ClusterList
		if err := m.c.Client.List(ctx, &list, client.InNamespace(v1.ComponentNamespace)); err != nil {
			r.add(CheckOverlap, m.c.ID, Warn, "cannot list Cluster records: "+err.Error(), "")
			continue
		}
		for _, x := range list.Items {
			byID[x.Spec.ClusterID] = x
		}
	}
	if len(byID) == 0 {
		return
	}
	var all []v1.Cluster
	var ids []string
	for id, x := range byID {
		all = append(all, x)
		ids = append(ids, string(id))
	}
	slices.SortFunc(all, func(a, b v1.Cluster) int { return strings.Compare(string(a.Spec.ClusterID), string(b.Spec.ClusterID)) })
	slices.Sort(ids)
	where := strings.Join(ids, ",")
	if o := Overlaps(all); len(o) > 0 {
		r.add(CheckOverlap, where, Fail, strings.Join(o, "; "), "clusters whose CIDRs overlap cannot reach each other: join both with --globalnet (straitctl leave, then straitctl join --globalnet), or give one of them other CIDRs")
		return
	}
	r.add(CheckOverlap, where, OK, fmt.Sprintf("no overlap between the pod and service CIDRs of %d clusters", len(all)), "")
}

// dnsForward: the marked clusterset.local block in kube-system/coredns
// forwards to strait-dns's Service.
func (r *run) dnsForward(ctx context.Context, m *memberState) {
	svc, err := m.c.Kube.CoreV1().Services(v1.ComponentNamespace).Get(ctx, manifests.DNSServiceName, metav1.GetOptions{})
	if err != nil {
		r.add(CheckDNSForward, m.c.ID, Fail, "no strait-dns Service: "+err.Error(), "join the cluster again")
		return
	}
	var servers []netip.Addr
	for _, s := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			servers = append(servers, a)
		}
	}
	cm, err := m.c.Kube.CoreV1().ConfigMaps(member.CoreDNSNamespace).Get(ctx, member.CoreDNSConfigMap, metav1.GetOptions{})
	if err != nil {
		r.add(CheckDNSForward, m.c.ID, Warn, "no ConfigMap kube-system/coredns: "+err.Error(),
			"make the cluster's DNS forward clusterset.local to "+addrList(servers))
		return
	}
	text := cm.Data[member.CorefileKey]
	want, err := corefile.SetForward(text, servers)
	switch {
	case err != nil:
		r.add(CheckDNSForward, m.c.ID, Warn, "the Corefile: "+err.Error(), "make sure clusterset.local is forwarded to "+addrList(servers))
	case want != text:
		r.add(CheckDNSForward, m.c.ID, Fail, "the Corefile of kube-system/coredns lacks the clusterset.local forward to "+addrList(servers)+" (or it is stale)",
			"join the cluster again, or add:\n"+corefile.Block(servers, "\n"))
	default:
		r.add(CheckDNSForward, m.c.ID, OK, "clusterset.local forwarded to "+addrList(servers), "")
	}
}

func addrList(a []netip.Addr) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// clockSkew compares the apiservers' clocks (their HTTP Date) with ours,
// and so with each other's.
func (r *run) clockSkew(ctx context.Context, clusters []*probe.Cluster) {
	if len(clusters) < 2 {
		return
	}
	type off struct {
		name   string
		offset time.Duration
	}
	var offs []off
	for _, c := range clusters {
		d, err := clockOffset(ctx, c.Config)
		if err != nil {
			r.add(CheckClockSkew, c.Name(), Warn, "cannot read the apiserver's clock: "+err.Error(), "")
			continue
		}
		offs = append(offs, off{c.Name(), d})
	}
	if len(offs) < 2 {
		return
	}
	lo, hi := offs[0], offs[0]
	for _, o := range offs {
		if o.offset < lo.offset {
			lo = o
		}
		if o.offset > hi.offset {
			hi = o
		}
	}
	skew := hi.offset - lo.offset
	detail := fmt.Sprintf("%s is %s ahead of %s (apiservers' HTTP Date, 1 s resolution)", hi.name, skew.Round(time.Second), lo.name)
	switch {
	case skew >= clockFail:
		r.add(CheckClockSkew, "all", Fail, detail, "synchronise the clusters' clocks (NTP): tokens and certificates are refused across such skew")
	case skew >= clockWarn:
		r.add(CheckClockSkew, "all", Warn, detail, "synchronise the clusters' clocks (NTP)")
	default:
		r.add(CheckClockSkew, "all", OK, fmt.Sprintf("within %s across %d clusters", clockWarn, len(offs)), "")
	}
}

// clockOffset is the apiserver's clock less ours, from the Date header of
// an answer to /version, against the middle of the request.
func clockOffset(ctx context.Context, cfg *rest.Config) (time.Duration, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/version", nil)
	if err != nil {
		return 0, err
	}
	sent := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	got := time.Now()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return 0, fmt.Errorf("no Date header: %w", err)
	}
	mid := sent.Add(got.Sub(sent) / 2)
	return date.Sub(mid.Truncate(time.Second)), nil
}

// versions: the tags of the components' images in each cluster.
func (r *run) versions(ctx context.Context, joined []*memberState) {
	tags := map[string][]string{} // tag -> "<cluster>/<component>"
	for _, m := range joined {
		var dss appsv1.DaemonSetList
		var deps appsv1.DeploymentList
		if err := m.c.Client.List(ctx, &dss, client.InNamespace(v1.ComponentNamespace)); err != nil {
			continue
		}
		if err := m.c.Client.List(ctx, &deps, client.InNamespace(v1.ComponentNamespace)); err != nil {
			continue
		}
		add := func(name string, spec []string) {
			for _, img := range spec {
				tag := "latest"
				if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
					tag = img[i+1:]
				}
				tags[tag] = append(tags[tag], m.c.ID+"/"+name)
			}
		}
		for _, d := range dss.Items {
			add(d.Name, images(d.Spec.Template.Spec.Containers))
		}
		for _, d := range deps.Items {
			add(d.Name, images(d.Spec.Template.Spec.Containers))
		}
	}
	if len(tags) == 0 {
		return
	}
	var list []string
	for t, who := range tags {
		slices.Sort(who)
		list = append(list, fmt.Sprintf("%s (%d components)", t, len(who)))
	}
	slices.Sort(list)
	switch {
	case len(tags) > 1:
		var detail []string
		for t, who := range tags {
			detail = append(detail, t+": "+strings.Join(who, ","))
		}
		slices.Sort(detail)
		r.add(CheckVersions, "all", Warn, "components run different versions: "+strings.Join(detail, "; "),
			"join every cluster again with the same --image-tag")
	case r.o.Version != "" && tags[r.o.Version] == nil:
		r.add(CheckVersions, "all", Warn, "components run "+strings.Join(list, ", ")+", straitctl is "+r.o.Version,
			"use the straitctl of the components' version, or join again with --image-tag "+r.o.Version)
	default:
		r.add(CheckVersions, "all", OK, "components run "+strings.Join(list, ", "), "")
	}
}

func images(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Image)
	}
	return out
}

// leftovers: what Strait leaves in a cluster that has not joined (or has
// left): gateway labels, its namespace, its CRDs, the DNS forward.
func (r *run) leftovers(ctx context.Context, c *probe.Cluster) {
	var found []string
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: probe.GatewayLabel})
	if err != nil {
		r.add(CheckLeftovers, c.Name(), Warn, "cannot list nodes: "+err.Error(), "")
		return
	}
	for _, n := range nodes.Items {
		found = append(found, "label "+probe.GatewayLabel+" on node "+n.Name)
	}
	if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, v1.ComponentNamespace, metav1.GetOptions{}); err == nil {
		found = append(found, "namespace "+v1.ComponentNamespace)
	}
	if res, err := c.Kube.Discovery().ServerResourcesForGroupVersion(v1.SchemeGroupVersion.String()); err == nil {
		for _, x := range res.APIResources {
			if !strings.Contains(x.Name, "/") {
				found = append(found, "CRD "+x.Name+"."+v1.GroupName)
			}
		}
	}
	if cm, err := c.Kube.CoreV1().ConfigMaps(member.CoreDNSNamespace).Get(ctx, member.CoreDNSConfigMap, metav1.GetOptions{}); err == nil {
		if _, removed, err := corefile.RemoveForward(cm.Data[member.CorefileKey]); err == nil && removed {
			found = append(found, "the clusterset.local block in kube-system/coredns")
		}
	} else if !apierrors.IsNotFound(err) {
		r.add(CheckLeftovers, c.Name(), Warn, "cannot read kube-system/coredns: "+err.Error(), "")
	}
	if len(found) == 0 {
		r.add(CheckLeftovers, c.Name(), OK, "not joined, and nothing of Strait's left", "")
		return
	}
	r.add(CheckLeftovers, c.Name(), Warn, "not joined, but has "+strings.Join(found, ", "), "run straitctl leave against it to remove them")
}

// nodeLeftovers runs a host-network test pod on every Ready node of the
// clusters that have not joined, which lists what of Strait's the node
// still has: its devices, routing tables and rules, iptables chains and
// WireGuard sockets (pkg/nodenet.Leftovers). A gateway or route agent that
// was killed, or a node that was down while its cluster left, keeps them,
// and they can bend traffic long after.
func (r *run) nodeLeftovers(ctx context.Context, clusters []*probe.Cluster) error {
	s, err := probe.NewSession(ctx, clusters, namespacePrefix, r.o.Image)
	if err != nil {
		return err
	}
	defer s.Close()
	s.Log = r.o.Log
	var names []string
	for _, c := range clusters {
		names = append(names, c.Name())
	}
	r.logf("test namespace %s; looking for Strait's state on the nodes of %s (not joined)", s.Namespace, strings.Join(names, ", "))
	var wg sync.WaitGroup
	for _, c := range clusters {
		nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			r.add(CheckLeftovers, c.Name(), Warn, "cannot list nodes: "+err.Error(), "")
			continue
		}
		for i, n := range nodes.Items {
			where := c.Name() + "/" + n.Name
			if !probe.NodeReady(&n) {
				r.add(CheckLeftovers, where, Warn, "node not Ready: not checked", "look again when it is back: straitctl diagnose")
				continue
			}
			wg.Go(func() { r.nodeLeftover(ctx, s, c, n.Name, where, fmt.Sprintf("node-state-%d", i)) })
		}
	}
	wg.Wait()
	return nil
}

// nodeLeftover runs the node-state probe on one node.
func (r *run) nodeLeftover(ctx context.Context, s *probe.Session, c *probe.Cluster, node, where, name string) {
	var rep probe.NodeStateReport
	err := s.RunTestpod(ctx, c, probe.PodSpec{Name: name, Node: node, HostNetwork: true,
		Capabilities: []corev1.Capability{"NET_ADMIN"}, Args: []string{"node-state"}}, &rep)
	switch {
	case err != nil:
		r.add(CheckLeftovers, where, Warn, "cannot look: "+oneLine(err), "")
	case len(rep.Found) > 0:
		r.add(CheckLeftovers, where, Warn, "not joined, but the node has "+strings.Join(rep.Found, ", "),
			"a gateway or route agent stopped without cleaning up (killed, or the node was down at leave): join and leave again, or remove them by hand")
	case rep.Error != "":
		r.add(CheckLeftovers, where, Warn, "cannot read the node's state: "+rep.Error, "")
	default:
		r.add(CheckLeftovers, where, OK, "nothing of Strait's on the node", "")
	}
}

// podChecks run test pods in the joined clusters: host-network ones on
// the active gateway node and on a non-gateway node, each running one probe
// to its end (kube-proxy's mode, the NAT discovery requests), and one pod
// per cluster that serves a UDP echo and, exec'd into, probes the path MTU
// to the others'.
func (r *run) podChecks(ctx context.Context, joined []*memberState) error {
	var clusters []*probe.Cluster
	for _, m := range joined {
		clusters = append(clusters, m.c)
	}
	s, err := probe.NewSession(ctx, clusters, namespacePrefix, r.o.Image)
	if err != nil {
		return err
	}
	defer s.Close()
	s.Log = r.o.Log
	r.logf("test namespace %s; running test pods (image %s)", s.Namespace, r.o.Image)
	var wg sync.WaitGroup
	for _, m := range joined {
		for _, pl := range []probe.Placement{probe.OnGateway, probe.OffGateway} {
			if node := m.nodes.Node(pl); node != "" {
				wg.Go(func() { r.kubeProxy(ctx, s, m.c, node, "kube-proxy-"+string(pl)) })
			}
		}
		for i, b := range joined {
			if b != m {
				wg.Go(func() { r.natDiscovery(ctx, s, m, b, fmt.Sprintf("nat-discovery-%d", i)) })
			}
		}
	}
	wg.Go(func() { r.mtus(ctx, s, joined) })
	wg.Wait()
	return nil
}

// kubeProxy asks kube-proxy on the node for its mode.
func (r *run) kubeProxy(ctx context.Context, s *probe.Session, c *probe.Cluster, node, name string) {
	where := c.ID + "/" + node
	var rep probe.ConnectReport
	err := s.RunTestpod(ctx, c, probe.PodSpec{Name: name, Node: node, HostNetwork: true,
		Args: []string{"connect", "--http", kubeProxyMetrics, "--timeout", probeTimeout.String()}}, &rep)
	if err != nil || !rep.OK {
		why := rep.Error
		if err != nil {
			why = err.Error()
		}
		r.add(CheckKubeProxy, where, Warn, "kube-proxy does not answer "+kubeProxyMetrics+": "+why,
			"without kube-proxy (or with a replacement) check that Services of other clusters answer: straitctl verify")
		return
	}
	switch mode := strings.TrimSpace(rep.Text); mode {
	case "iptables", "nftables":
		r.add(CheckKubeProxy, where, OK, mode, "")
	default:
		r.add(CheckKubeProxy, where, Warn, "mode "+strconv.Quote(mode)+": Strait's route agent is built and tested for iptables and nftables",
			"run kube-proxy in iptables or nftables mode, or check cross-cluster Services with straitctl verify")
	}
}

// natDiscovery sends a NAT discovery request from a's active gateway node
// to b's gateway at the address a's cable uses (else b's public one) and
// waits for the reply. A gateway behind NAT answers only through the
// mapping its own requests opened, so b behind NAT is probed from b's side.
func (r *run) natDiscovery(ctx context.Context, s *probe.Session, a, b *memberState, name string) {
	where := a.c.ID + " -> " + b.c.ID
	node := a.nodes.ActiveGateway
	e := b.endpoint
	switch {
	case node == "" || e == nil:
		return // gateway-nodes and public-ip say why
	case e.Spec.NATTraversal:
		r.add(CheckNATDiscovery, where, OK, b.c.ID+" is behind NAT: probed from its side", "")
		return
	case e.Spec.NATDiscoveryPort == 0:
		r.add(CheckNATDiscovery, where, Warn, b.c.ID+"'s Endpoint names no NAT discovery port", "")
		return
	}
	addr := ""
	if a.gateway != nil {
		for _, x := range a.gateway.Status.Connections {
			if string(x.ClusterID) == b.c.ID && x.UsingIP != "" {
				addr = string(x.UsingIP)
			}
		}
	}
	if addr == "" && len(e.Spec.PublicIPs) > 0 {
		addr = string(e.Spec.PublicIPs[0])
	}
	if addr == "" && len(e.Spec.PrivateIPs) > 0 {
		addr = string(e.Spec.PrivateIPs[0])
	}
	target := net.JoinHostPort(addr, strconv.Itoa(int(e.Spec.NATDiscoveryPort)))
	var rep probe.UDPSendReport
	err := s.RunTestpod(ctx, a.c, probe.PodSpec{Name: name, Node: node, HostNetwork: true,
		Args: []string{"udp-send", "--udp", target, "--hex", hex.EncodeToString(NATDiscoveryRequest(rand.Uint64())),
			"--expect", hex.EncodeToString(natDiscoveryReplyPrefix), "--count", "3", "--timeout", "1s"}}, &rep)
	switch {
	case err != nil:
		r.add(CheckNATDiscovery, where, Fail, err.Error(), "")
	case !rep.OK:
		r.add(CheckNATDiscovery, where, Fail, fmt.Sprintf("UDP %s from %s unanswered: %s", target, node, rep.Error),
			fmt.Sprintf("let UDP port %d (and the cable's port) pass between the gateways, both ways", e.Spec.NATDiscoveryPort))
	default:
		r.add(CheckNATDiscovery, where, OK, fmt.Sprintf("UDP %s from %s answered in %s", target, node, rep.RTT), "")
	}
}

// The NAT discovery wire format (the gateway's natdiscovery package):
// 16 bytes, magic "STND", version 1, kind (1 request, 2 reply), two
// reserved bytes, a 64-bit request ID echoed in the reply.
var natDiscoveryReplyPrefix = []byte{'S', 'T', 'N', 'D', 1, 2}

// NATDiscoveryRequest is a NAT discovery request with the given ID.
func NATDiscoveryRequest(id uint64) []byte {
	b := make([]byte, 16)
	copy(b, "STND")
	b[4], b[5] = 1, 1
	binary.BigEndian.PutUint64(b[8:], id)
	return b
}

// mtus starts an echo pod in every joined cluster, on a non-gateway node
// where there is one (its traffic crosses the route agents' overlay and
// then the cable, the longest path), and probes from each to every other's
// the largest packet that crosses with Don't Fragment set. The cable's MTU
// must cross: the route agents clamp TCP's MSS to it, so a path narrower
// than that drops full-sized segments; a link that drops them without an
// ICMP error (a tunnel or cloud path narrower than the nodes' NICs) stalls
// connections that pings and the health checks, with small packets, never
// notice.
func (r *run) mtus(ctx context.Context, s *probe.Session, joined []*memberState) {
	specs := map[*probe.Cluster][]probe.PodSpec{}
	for _, m := range joined {
		node := m.nodes.NonGateway
		if node == "" {
			node = m.nodes.ActiveGateway
		}
		specs[m.c] = []probe.PodSpec{{Name: "mtu", Node: node, Args: []string{"serve"}, Ready: probe.HTTPPort}}
	}
	pods, err := s.StartPods(ctx, specs)
	var wg sync.WaitGroup
	for _, a := range joined {
		for _, b := range joined {
			pa, pb := pods[a.c.ID+"/mtu"], pods[b.c.ID+"/mtu"]
			switch {
			case a == b:
			case pa == nil || pb == nil:
				r.add(CheckMTU, a.c.ID+" -> "+b.c.ID, Warn, "no test pod to probe with: "+oneLine(err), "")
			default:
				wg.Go(func() { r.mtu(ctx, s, a, pa, pb) })
			}
		}
	}
	wg.Wait()
}

// mtu probes from pod a (of cluster m) to pod b's echo.
func (r *run) mtu(ctx context.Context, s *probe.Session, m *memberState, a, b *probe.Pod) {
	where := fmt.Sprintf("%s/%s -> %s/%s", a.Cluster.ID, a.Node, b.Cluster.ID, b.Node)
	driver, underlay := r.cable(ctx, m)
	want := mtu.Cable(string(driver), underlay)
	var rep probe.PMTUReport
	err := s.Testpod(ctx, a, &rep, "pmtu", "--udp", net.JoinHostPort(b.IP, strconv.Itoa(probe.UDPEchoPort)), "--max", strconv.Itoa(want))
	switch {
	case err != nil:
		r.add(CheckMTU, where, Warn, "cannot probe: "+oneLine(err), "")
	case rep.OK:
		r.add(CheckMTU, where, OK, fmt.Sprintf("%d-byte packets (the %s cable's MTU) cross with Don't Fragment set, and come back", want, driver), "")
	case rep.Largest == 0:
		r.add(CheckMTU, where, Fail, "no packet came back, not even of "+strconv.Itoa(rep.Smallest)+" bytes: "+rep.Error,
			"the pods cannot reach each other at all: see the cables check and run straitctl verify")
	case rep.LocalMTU > 0 && rep.Largest >= rep.LocalMTU:
		r.add(CheckMTU, where, Warn, fmt.Sprintf("packets of up to %d bytes cross; the path says so (the sender's kernel holds MTU %d), the %s cable's MTU is %d", rep.Largest, rep.LocalMTU, driver, want),
			"TCP adapts to a path that reports its MTU; check the MTU of the pod network and of the links between the gateways")
	default:
		r.add(CheckMTU, where, Fail, fmt.Sprintf("packets over %d bytes vanish without an error on the way; the %s cable sends up to %d", rep.Largest, driver, want),
			fmt.Sprintf("a link between the gateways carries less than %s's underlay MTU (%d) and drops the rest silently: raise its MTU, or join %s again with straitctl join ... --underlay-mtu=%d",
				m.c.ID, underlay, m.c.ID, rep.Largest+mtu.Overhead(string(driver), mtu.IPv6Header)))
	}
}

// cable is the cluster's cable driver (its Endpoint's) and the underlay MTU
// its gateways size the cable from (their --underlay-mtu, 1500 unless
// given).
func (r *run) cable(ctx context.Context, m *memberState) (v1.CableDriver, int) {
	driver := v1.CableDriverWireGuard
	if m.endpoint != nil && m.endpoint.Spec.CableDriver != "" {
		driver = m.endpoint.Spec.CableDriver
	}
	underlay := defaultUnderlayMTU
	var ds appsv1.DaemonSet
	if err := m.c.Client.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: "strait-gateway"}, &ds); err == nil {
		for _, c := range ds.Spec.Template.Spec.Containers {
			if v, ok := flagValue(c.Args, "underlay-mtu"); ok {
				if n, err := strconv.Atoi(v); err == nil && n > 0 {
					underlay = n
				}
			}
		}
	}
	return driver, underlay
}

// defaultUnderlayMTU is the gateway's --underlay-mtu default (cmd/strait-gateway).
const defaultUnderlayMTU = 1500

// flagValue finds --name=value or --name value (one or two dashes) in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// oneLine is err's message on one line ("" for nil).
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
