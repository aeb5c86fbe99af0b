// Package show is "straitctl show": tables of the fabric's records, from
// one cluster or several at once.
package show

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"strait.dev/strait/broker"
	aboutv1beta1 "strait.dev/strait/pkg/apis/about.k8s.io/v1beta1"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
	"strait.dev/strait/pkg/scheme"
)

// Nouns are what show prints, in the order "show all" prints them.
var Nouns = []string{"clusters", "networks", "endpoints", "gateways", "connections", "brokers", "versions", "exports", "imports"}

// NewCommand returns the show command.
func NewCommand() *cobra.Command {
	var (
		kube cmdutil.Kube
		out  cmdutil.Output
	)
	cmd := &cobra.Command{
		Use:   "show all|clusters|networks|endpoints|gateways|connections|brokers|versions|exports|imports",
		Short: "Show the fabric's records as a member cluster knows them",
		Long: `show prints what a member cluster holds:

  clusters     the Cluster records in strait-system: its own and those imported from the broker
  networks     per cluster: pod and service CIDRs, cable driver, globalnet
  endpoints    the gateway Endpoints, local and imported
  gateways     the cluster's gateways and their roles
  connections  each gateway's cables with their health and round-trip times
  brokers      the broker the cluster is joined to (never its token)
  versions     the images of Strait's Deployments and DaemonSets
  exports      the ServiceExports of every namespace with their conditions
  imports      the ServiceImports of every namespace: type, IPs, ports, clusters
  all          every one of the above

With several --context values it asks each cluster and adds a CONTEXT
column. -o json and -o yaml print an object whose keys are the nouns, each
a list of records (the API objects for clusters, endpoints, gateways,
exports and imports) with the context they came from.`,
		Example: `  straitctl show clusters --kubeconfig c1.kubeconfig
  straitctl show gateways --kubeconfig c2.kubeconfig
  straitctl show connections --kubeconfig c1.kubeconfig
  straitctl show all --context c1,c2,c3
  straitctl show exports --context c1 --context c2 -o yaml
  straitctl show versions -o json`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: append([]string{"all"}, Nouns...),
		RunE: func(cmd *cobra.Command, args []string) error {
			nouns, err := Parse(args[0])
			if err != nil {
				return err
			}
			if err := out.Validate(); err != nil {
				return err
			}
			targets, err := kube.Targets()
			if err != nil {
				return err
			}
			return Run(cmd.Context(), targets, nouns, &out, cmd)
		},
	}
	kube.AddMultiFlags(cmd)
	out.AddFlag(cmd)
	return cmd
}

// Parse turns show's argument into the nouns to print. Errors: an unknown
// noun.
func Parse(arg string) ([]string, error) {
	if arg == "all" {
		return Nouns, nil
	}
	if slices.Contains(Nouns, arg) {
		return []string{arg}, nil
	}
	return nil, fmt.Errorf("show %q: want all, %s", arg, strings.Join(Nouns, ", "))
}

// Run reads nouns from every target and prints them. With one target and
// one noun a failure is the command's error; otherwise each failure is
// printed with its context and the command fails after printing the rest.
func Run(ctx context.Context, targets []cmdutil.Target, nouns []string, out *cmdutil.Output, cmd *cobra.Command) error {
	tables := make([]cmdutil.Table, len(nouns))
	for i, n := range nouns {
		tables[i] = cmdutil.Table{Noun: n, Headers: headers[n]}
	}
	failed := 0
	progress := cmdutil.NewProgress(cmd.ErrOrStderr())
	for _, t := range targets {
		r, err := newReader(t)
		if err != nil {
			return err
		}
		done := progress.Start(fmt.Sprintf("context %s: reading %s", cmdutil.Dash(t.Context), strings.Join(nouns, ", ")))
		for i, n := range nouns {
			rows, err := r.read(ctx, n)
			if err != nil {
				err = cmdutil.Explain(err)
				if len(targets) == 1 && len(nouns) == 1 {
					done()
					return err
				}
				failed++
				tables[i].Errors = append(tables[i].Errors, cmdutil.ContextError{Context: t.Context, Error: err.Error()})
				continue
			}
			for j := range rows {
				rows[j].Context = t.Context
			}
			tables[i].Rows = append(tables[i].Rows, rows...)
		}
		done()
	}
	if err := out.Print(cmd.OutOrStdout(), tables, len(targets) > 1); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d reads failed (see above)", failed, len(targets)*len(nouns))
	}
	return nil
}

// headers are each noun's table columns.
var headers = map[string][]string{
	"clusters":    {"CLUSTER", "POD CIDRS", "SERVICE CIDRS", "GLOBAL CIDRS", "REGION", "AGE"},
	"networks":    {"CLUSTER", "LOCAL", "POD CIDRS", "SERVICE CIDRS", "CABLE DRIVER", "GLOBALNET"},
	"endpoints":   {"CLUSTER", "ENDPOINT", "HOST", "DRIVER", "PRIVATE IP", "PUBLIC IP", "SUBNETS", "STANDBYS"},
	"gateways":    {"NODE", "HA", "ENDPOINT", "CONNECTIONS"},
	"connections": {"GATEWAY", "CLUSTER", "ENDPOINT", "STATUS", "USING IP", "NAT", "PATH MTU", "RTT LAST", "RTT MIN", "RTT AVG", "RTT MAX", "MESSAGE"},
	"brokers":     {"CLUSTER", "BROKER URL", "NAMESPACE", "CA SHA256", "CREDENTIAL"},
	"versions":    {"COMPONENT", "KIND", "CONTAINER", "IMAGE", "VERSION", "READY"},
	"exports":     {"NAMESPACE", "NAME", "VALID", "READY", "CONFLICT", "MESSAGE"},
	"imports":     {"NAMESPACE", "NAME", "TYPE", "IPS", "PORTS", "CLUSTERS"},
}

// reader reads the records of one cluster.
type reader struct {
	c  client.Client
	cs kubernetes.Interface
}

func newReader(t cmdutil.Target) (*reader, error) {
	c, err := client.New(t.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(t.Config)
	if err != nil {
		return nil, err
	}
	return &reader{c: c, cs: cs}, nil
}

var inComponents = client.InNamespace(v1.ComponentNamespace)

func (r *reader) read(ctx context.Context, noun string) ([]cmdutil.Row, error) {
	switch noun {
	case "clusters":
		var list v1.ClusterList
		if err := r.c.List(ctx, &list, inComponents); err != nil {
			return nil, err
		}
		return rowsOf(list.Items, ClusterCells), nil
	case "networks":
		var clusters v1.ClusterList
		if err := r.c.List(ctx, &clusters, inComponents); err != nil {
			return nil, err
		}
		var eps v1.EndpointList
		if err := r.c.List(ctx, &eps, inComponents); err != nil {
			return nil, err
		}
		return networkRows(clusters.Items, eps.Items, r.clusterID(ctx)), nil
	case "endpoints":
		var list v1.EndpointList
		if err := r.c.List(ctx, &list, inComponents); err != nil {
			return nil, err
		}
		return rowsOf(list.Items, EndpointCells), nil
	case "gateways":
		var list v1.GatewayList
		if err := r.c.List(ctx, &list, inComponents); err != nil {
			return nil, err
		}
		return rowsOf(list.Items, GatewayCells), nil
	case "connections":
		var list v1.GatewayList
		if err := r.c.List(ctx, &list, inComponents); err != nil {
			return nil, err
		}
		return connectionRows(list.Items), nil
	case "brokers":
		return r.brokers(ctx)
	case "versions":
		return r.versions(ctx)
	case "exports":
		var list mcsv1beta1.ServiceExportList
		if err := r.c.List(ctx, &list); err != nil {
			return nil, err
		}
		return rowsOf(list.Items, ExportCells), nil
	case "imports":
		var list mcsv1beta1.ServiceImportList
		if err := r.c.List(ctx, &list); err != nil {
			return nil, err
		}
		list.Items = slices.DeleteFunc(list.Items, func(si mcsv1beta1.ServiceImport) bool { return IsExportRecord(&si) })
		return rowsOf(list.Items, ImportCells), nil
	}
	return nil, fmt.Errorf("show %q: not a noun", noun)
}

// clusterID is the cluster's own ID (ClusterProperty
// cluster.clusterset.k8s.io), "" when it has none.
func (r *reader) clusterID(ctx context.Context) string {
	var p aboutv1beta1.ClusterProperty
	if err := r.c.Get(ctx, client.ObjectKey{Name: v1.ClusterIDPropertyName}, &p); err != nil {
		return ""
	}
	return p.Spec.Value
}

// rowsOf makes a row of each object, the object itself being the record
// JSON and YAML print (without managedFields, which only add noise).
func rowsOf[T any, P interface {
	*T
	metav1.Object
}](items []T, cells func(*T) []string) []cmdutil.Row {
	rows := make([]cmdutil.Row, 0, len(items))
	for i := range items {
		P(&items[i]).SetManagedFields(nil)
		rows = append(rows, cmdutil.Row{Cells: cells(&items[i]), Object: &items[i]})
	}
	return rows
}

// ClusterCells is a Cluster's row of "show clusters".
func ClusterCells(x *v1.Cluster) []string {
	return []string{string(x.Spec.ClusterID), cidrs(x.Spec.PodCIDRs), cidrs(x.Spec.ServiceCIDRs),
		cidrs(x.Spec.GlobalCIDRs), x.Spec.Topology.Region, age(x.CreationTimestamp.Time)}
}

// EndpointCells is an Endpoint's row of "show endpoints".
func EndpointCells(x *v1.Endpoint) []string {
	standbys := make([]string, 0, len(x.Spec.Candidates))
	for _, c := range x.Spec.Candidates {
		standbys = append(standbys, c.Hostname)
	}
	return []string{string(x.Spec.ClusterID), x.Name, x.Spec.Hostname, string(x.Spec.CableDriver),
		ips(x.Spec.PrivateIPs), ips(x.Spec.PublicIPs), cidrs(x.Spec.Subnets), strings.Join(standbys, ",")}
}

// GatewayCells is a Gateway's row of "show gateways".
func GatewayCells(x *v1.Gateway) []string {
	return []string{x.Name, string(x.Status.HAStatus), x.Status.LocalEndpoint, fmt.Sprint(len(x.Status.Connections))}
}

// Connection is a record of "show connections": one cable of a gateway.
type Connection struct {
	Gateway string `json:"gateway"`
	v1.Connection
}

// pathMTU is a connection's path MTU cell: the bytes, marked when they are
// an override rather than measured; empty without a figure.
func pathMTU(c v1.Connection) string {
	switch {
	case c.PathMTU <= 0:
		return ""
	case c.PathMTUSource == v1.PathMTUOverride:
		return fmt.Sprintf("%d (override)", c.PathMTU)
	}
	return fmt.Sprint(c.PathMTU)
}

func connectionRows(gws []v1.Gateway) []cmdutil.Row {
	var rows []cmdutil.Row
	for _, g := range gws {
		for _, x := range g.Status.Connections {
			last, lo, avg, hi := "", "", "", ""
			if r := x.LatencyRTT; r != nil {
				last, lo, avg, hi = rtt(r.Last.Duration), rtt(r.Min.Duration), rtt(r.Average.Duration), rtt(r.Max.Duration)
			}
			rows = append(rows, cmdutil.Row{
				Cells: []string{g.Name, string(x.ClusterID), x.Endpoint, string(x.Status), string(x.UsingIP),
					fmt.Sprint(x.UsingNAT), pathMTU(x), last, lo, avg, hi, x.StatusMessage},
				Object: Connection{Gateway: g.Name, Connection: x},
			})
		}
	}
	return rows
}

// Network is a record of "show networks": how one cluster's addresses
// reach the others.
type Network struct {
	ClusterID    string   `json:"clusterID"`
	Local        bool     `json:"local"`
	PodCIDRs     []string `json:"podCIDRs"`
	ServiceCIDRs []string `json:"serviceCIDRs"`
	// CableDrivers are the drivers of the cluster's gateway Endpoints
	// (one unless a change of driver is under way); empty when it has no
	// Endpoint.
	CableDrivers []string `json:"cableDrivers"`
	// GlobalCIDRs are globalnet's prefixes; empty without globalnet.
	GlobalCIDRs []string `json:"globalCIDRs"`
}

// networkRows makes a Network of each Cluster, with the cable drivers of
// its Endpoints; local is the ID of the cluster read from.
func networkRows(clusters []v1.Cluster, eps []v1.Endpoint, local string) []cmdutil.Row {
	rows := make([]cmdutil.Row, 0, len(clusters))
	for _, c := range clusters {
		n := Network{ClusterID: string(c.Spec.ClusterID), Local: local != "" && string(c.Spec.ClusterID) == local,
			PodCIDRs: strs(c.Spec.PodCIDRs), ServiceCIDRs: strs(c.Spec.ServiceCIDRs), GlobalCIDRs: strs(c.Spec.GlobalCIDRs),
			CableDrivers: []string{}}
		for _, e := range eps {
			if e.Spec.ClusterID == c.Spec.ClusterID && !slices.Contains(n.CableDrivers, string(e.Spec.CableDriver)) {
				n.CableDrivers = append(n.CableDrivers, string(e.Spec.CableDriver))
			}
		}
		slices.Sort(n.CableDrivers)
		globalnet := "none"
		if len(n.GlobalCIDRs) > 0 {
			globalnet = strings.Join(n.GlobalCIDRs, ",")
		}
		localCell := "no"
		if n.Local {
			localCell = "yes"
		}
		rows = append(rows, cmdutil.Row{
			Cells: []string{n.ClusterID, localCell, strings.Join(n.PodCIDRs, ","), strings.Join(n.ServiceCIDRs, ","),
				strings.Join(n.CableDrivers, ","), globalnet},
			Object: n,
		})
	}
	return rows
}

// Broker is a record of "show brokers": the broker a member is joined to.
// It never holds the credential's token.
type Broker struct {
	ClusterID string `json:"clusterID"`
	APIServer string `json:"apiServer"`
	Namespace string `json:"namespace"`
	// CASHA256 is the SHA-256 of the broker CA bundle, hex.
	CASHA256 string `json:"caSHA256"`
	// Credential says whether the member's credential is complete
	// ("present") or what is wrong with it.
	Credential string `json:"credential"`
}

func (r *reader) brokers(ctx context.Context) ([]cmdutil.Row, error) {
	creds, err := broker.ReadCredentials(ctx, r.cs, v1.ComponentNamespace, broker.SecretName)
	if err != nil {
		var s corev1.Secret
		if gerr := r.c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: broker.SecretName}, &s); gerr != nil {
			if client.IgnoreNotFound(gerr) == nil {
				return nil, nil // not joined: no broker
			}
			return nil, gerr
		}
		// The Secret exists but is incomplete: say so, print nothing of it.
		b := Broker{ClusterID: r.clusterID(ctx), Credential: "incomplete (run straitctl join again)"}
		return []cmdutil.Row{brokerRow(b)}, nil
	}
	sum := sha256.Sum256(creds.Info.CABundle)
	b := Broker{ClusterID: r.clusterID(ctx), APIServer: creds.Info.APIServer, Namespace: creds.Info.Namespace,
		CASHA256: hex.EncodeToString(sum[:]), Credential: "present"}
	return []cmdutil.Row{brokerRow(b)}, nil
}

func brokerRow(b Broker) cmdutil.Row {
	ca := b.CASHA256
	if len(ca) > 16 {
		ca = ca[:16]
	}
	return cmdutil.Row{Cells: []string{b.ClusterID, b.APIServer, b.Namespace, ca, b.Credential}, Object: b}
}

// Version is a record of "show versions": one container of a component.
type Version struct {
	Component string `json:"component"`
	Kind      string `json:"kind"`
	Container string `json:"container"`
	Image     string `json:"image"`
	// Version is the image's tag or digest ("" when the reference has
	// neither).
	Version string `json:"version"`
	// Ready and Desired count the workload's pods.
	Ready   int32 `json:"ready"`
	Desired int32 `json:"desired"`
}

func (r *reader) versions(ctx context.Context) ([]cmdutil.Row, error) {
	var deps appsv1.DeploymentList
	if err := r.c.List(ctx, &deps, inComponents); err != nil {
		return nil, err
	}
	var dss appsv1.DaemonSetList
	if err := r.c.List(ctx, &dss, inComponents); err != nil {
		return nil, err
	}
	var vs []Version
	for _, d := range deps.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		vs = append(vs, versionsOf(d.Name, "Deployment", d.Spec.Template.Spec, d.Status.ReadyReplicas, want)...)
	}
	for _, d := range dss.Items {
		vs = append(vs, versionsOf(d.Name, "DaemonSet", d.Spec.Template.Spec, d.Status.NumberReady, d.Status.DesiredNumberScheduled)...)
	}
	rows := make([]cmdutil.Row, 0, len(vs))
	for _, v := range vs {
		rows = append(rows, cmdutil.Row{Cells: []string{v.Component, v.Kind, v.Container, v.Image, v.Version, fmt.Sprintf("%d/%d", v.Ready, v.Desired)}, Object: v})
	}
	return rows, nil
}

func versionsOf(name, kind string, pod corev1.PodSpec, ready, desired int32) []Version {
	var vs []Version
	for _, c := range pod.Containers {
		vs = append(vs, Version{Component: name, Kind: kind, Container: c.Name, Image: c.Image, Version: ImageVersion(c.Image), Ready: ready, Desired: desired})
	}
	return vs
}

// ImageVersion is an image reference's tag ("v0.3.0" of
// "reg:5000/strait/gateway:v0.3.0") or digest; "" when it has neither
// (the runtime then pulls "latest").
func ImageVersion(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		return image[i+1:]
	}
	// A colon after the last slash separates the tag; one before it is a
	// registry's port.
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// ExportCells is a ServiceExport's row of "show exports": each condition
// as status (reason), and the message of the first condition that is not
// as it should be.
func ExportCells(se *mcsv1beta1.ServiceExport) []string {
	cell := func(t mcsv1beta1.ServiceExportConditionType) string {
		c := meta.FindStatusCondition(se.Status.Conditions, string(t))
		if c == nil {
			return ""
		}
		if c.Reason == "" {
			return string(c.Status)
		}
		return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
	}
	return []string{se.Namespace, se.Name, cell(mcsv1beta1.ServiceExportConditionValid), cell(mcsv1beta1.ServiceExportConditionReady),
		cell(mcsv1beta1.ServiceExportConditionConflict), ExportProblem(se.Status.Conditions)}
}

// ExportProblem is the message of the first of Valid, Ready and Conflict
// that is not as a healthy export has it (Valid and Ready True, Conflict
// False), "" when all are.
func ExportProblem(conds []metav1.Condition) string {
	for _, want := range []struct {
		t      mcsv1beta1.ServiceExportConditionType
		status metav1.ConditionStatus
	}{
		{mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue},
		{mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue},
		{mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse},
	} {
		if c := meta.FindStatusCondition(conds, string(want.t)); c != nil && c.Status != want.status {
			return c.Message
		}
	}
	return ""
}

// IsExportRecord reports whether si is one of Lighthouse's export records
// (in strait-system, or in the broker namespace of a cluster that hosts the
// broker), which carry the owner's strait.dev/cluster-id label, rather than
// an import in an application namespace.
func IsExportRecord(si *mcsv1beta1.ServiceImport) bool {
	_, owned := si.Labels[v1.ClusterIDLabel]
	return owned || si.Namespace == v1.ComponentNamespace
}

// ImportCells is a ServiceImport's row of "show imports".
func ImportCells(si *mcsv1beta1.ServiceImport) []string {
	ports := make([]string, len(si.Spec.Ports))
	for i, p := range si.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		ports[i] = fmt.Sprintf("%d/%s", p.Port, proto)
		if p.Name != "" {
			ports[i] = p.Name + ":" + ports[i]
		}
	}
	clusters := make([]string, len(si.Status.Clusters))
	for i, c := range si.Status.Clusters {
		clusters[i] = c.Cluster
	}
	slices.Sort(clusters)
	return []string{si.Namespace, si.Name, string(si.Spec.Type), strings.Join(si.Spec.IPs, ","), strings.Join(ports, ","), strings.Join(clusters, ",")}
}

func strs[S ~string](in []S) []string {
	s := make([]string, len(in))
	for i, c := range in {
		s[i] = string(c)
	}
	return s
}

func cidrs(in []v1.CIDR) string { return strings.Join(strs(in), ",") }

func ips(in v1.DualStackIPs) string {
	s := make([]string, len(in))
	for i, c := range in {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

func rtt(d time.Duration) string {
	return d.Round(time.Microsecond).String()
}

func age(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return time.Since(t).Round(time.Second).String()
}
