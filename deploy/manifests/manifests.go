// Package manifests renders the objects of Strait's components in a member
// cluster from Strait's Helm chart (deploy/charts/strait), through Helm's Go
// SDK, as helm template would: join applies what it renders, and leave
// deletes the same objects, rendered again with the values read back from
// the cluster (ReadValues). The chart is the one source of these objects;
// this package holds no manifests of its own.
package manifests

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	straitchart "strait.dev/strait/deploy/charts/strait"
	"strait.dev/strait/pkg/kubeapply"
)

// MemberFiles are the chart's templates (under templates/), in the order
// join applies what they render. globalnet.yaml renders nothing for a member
// without a global CIDR, monitoring.yaml nothing unless its values enable
// it. Every template of the chart is in the list (RenderMember fails on one
// that is not), so that nothing the chart renders escapes join and leave.
var MemberFiles = []string{"gateway.yaml", "routeagent.yaml", "lighthouse.yaml", "dns.yaml", "globalnet.yaml", "clusterproperty.yaml", "monitoring.yaml"}

// ReleaseName is the Helm release name join renders the chart as, and the
// one docs/helm.md's helm install uses. No template uses it: objects are
// named strait-<component> whatever the release.
const ReleaseName = "strait"

// DNSServiceName names the Service of strait-dns in the component namespace
// (templates/dns.yaml), whose cluster IPs the cluster's own DNS forwards
// clusterset.local to.
const DNSServiceName = "strait-dns"

// GatewayValues are the values join renders the chart with; Values turns
// them into the chart's values. Empty fields leave the chart's defaults
// (values.yaml), except those the chart requires (ClusterID, PodCIDRs,
// ServiceCIDRs).
type GatewayValues struct {
	// Namespace is the release namespace, strait-system for join.
	Namespace    string
	ClusterID    string
	PodCIDRs     string // comma-separated
	ServiceCIDRs string // comma-separated
	CableDriver  string
	// GlobalCIDR is the cluster's global CIDR from the broker's Globalnet
	// pool (docs/globalnet.md); empty without Globalnet. The gateway and
	// strait-globalnet (globalnet.yaml, rendered only then) get it as
	// --global-cidr=.
	GlobalCIDR string
	// UnderlayMTU is the MTU of the node network the cables run over, in
	// bytes, decimal ("1400"); empty leaves the components' default
	// (1500). The gateway and the route agent get it as --underlay-mtu=.
	UnderlayMTU     string
	ImageRepository string
	ImageTag        string
	// BrokerSecretName names the Secret in Namespace with the member's
	// broker credential (broker.secretName); empty leaves the chart's
	// default, strait-broker, the name join writes. ReadValues leaves it
	// empty: only the gateway and Lighthouse carry it, and join always
	// renders the default.
	BrokerSecretName string
}

// Values returns v as the chart's values (values.yaml's keys): what
// helm template --set, or -f with them as YAML, would give for the same
// objects. Join renders the chart with them; "straitctl join --enrol-only"
// prints them as the values file for helm install.
func (v GatewayValues) Values() (map[string]any, error) {
	vals := map[string]any{
		"clusterID":    v.ClusterID,
		"podCIDRs":     splitList(v.PodCIDRs),
		"serviceCIDRs": splitList(v.ServiceCIDRs),
		"globalCIDR":   v.GlobalCIDR,
	}
	if v.CableDriver != "" {
		vals["cableDriver"] = v.CableDriver
	}
	if v.UnderlayMTU != "" {
		mtu, err := strconv.Atoi(v.UnderlayMTU)
		if err != nil {
			return nil, fmt.Errorf("underlay MTU %q: %w", v.UnderlayMTU, err)
		}
		vals["underlayMTU"] = mtu
	}
	image := map[string]any{}
	if v.ImageRepository != "" {
		image["repository"] = v.ImageRepository
	}
	if v.ImageTag != "" {
		image["tag"] = v.ImageTag
	}
	vals["image"] = image
	if v.BrokerSecretName != "" {
		vals["broker"] = map[string]any{"secretName": v.BrokerSecretName}
	}
	return vals, nil
}

// splitList splits a comma-separated list; "" is the empty list.
func splitList(s string) []any {
	out := []any{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// Chart loads the embedded chart.
func Chart() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(straitchart.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(straitchart.FS, path)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: path, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded chart: %w", err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load the embedded chart: %w", err)
	}
	return ch, nil
}

// RenderChart renders the chart, as helm template --namespace namespace
// with the values vals (merged over values.yaml) would, into each
// template's objects, keyed by the template's name under templates/
// ("gateway.yaml"). Errors are the chart's (a required value missing, an
// invalid one) or the YAML's.
func RenderChart(namespace string, vals map[string]any) (map[string][]*unstructured.Unstructured, error) {
	ch, err := Chart()
	if err != nil {
		return nil, err
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: ReleaseName, Namespace: namespace, IsInstall: true,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("values of the chart: %w", err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("render the chart: %w", err)
	}
	prefix := ch.Name() + "/templates/"
	objs := map[string][]*unstructured.Unstructured{}
	for path, text := range out {
		name, ok := strings.CutPrefix(path, prefix)
		if !ok || strings.HasPrefix(name, "_") || strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		o, err := kubeapply.ParseObjects(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		objs[name] = o
	}
	return objs, nil
}

// RenderMember renders the chart with values into its objects, in the order
// join applies them (leave deletes them in reverse): MemberFiles' order, in
// each the template's own. The release namespace is not among them (the
// chart does not make it; join does).
func RenderMember(values GatewayValues) ([]*unstructured.Unstructured, error) {
	byFile, err := values.render()
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range MemberFiles {
		objs = append(objs, byFile[f]...)
		delete(byFile, f)
	}
	for f := range byFile {
		return nil, fmt.Errorf("template %s of the chart is not in manifests.MemberFiles", f)
	}
	return objs, nil
}

// render renders the chart with v's values in v's namespace, by template
// (RenderChart).
func (v GatewayValues) render() (map[string][]*unstructured.Unstructured, error) {
	vals, err := v.Values()
	if err != nil {
		return nil, err
	}
	return RenderChart(v.Namespace, vals)
}

// Render renders the chart with values and returns the objects of one of
// its templates (name under templates/, "lighthouse.yaml"), in file order.
func Render(name string, values GatewayValues) ([]*unstructured.Unstructured, error) {
	byFile, err := values.render()
	if err != nil {
		return nil, err
	}
	objs, ok := byFile[name]
	if !ok {
		return nil, fmt.Errorf("the chart has no template %s", name)
	}
	return objs, nil
}

// Flags of the components' command lines that carry GatewayValues; ReadValues
// reads them back.
const (
	flagClusterID    = "--cluster-id="
	flagNamespace    = "--namespace="
	flagPodCIDRs     = "--pod-cidrs="
	flagServiceCIDRs = "--service-cidrs="
	flagCableDriver  = "--cable-driver="
	flagGlobalCIDR   = "--global-cidr="
	flagUnderlayMTU  = "--underlay-mtu="
)

// ErrNotRendered says a DaemonSet does not look like one these manifests
// render: it has no container, or its image is not <repository>/<name>:<tag>.
var ErrNotRendered = errors.New("not a DaemonSet rendered from Strait's manifests")

// ReadValues reads back the values a rendered DaemonSet (the gateway's or the
// route agent's, as they are in the cluster) was rendered with: the flags of
// its first container and its image, <ImageRepository>/<name>:<ImageTag>.
// Rendering MemberFiles with them gives the objects join applied. A flag the
// DaemonSet lacks leaves its value empty; an image of another shape is
// ErrNotRendered.
func ReadValues(ds *appsv1.DaemonSet) (GatewayValues, error) {
	var v GatewayValues
	ctrs := ds.Spec.Template.Spec.Containers
	if len(ctrs) == 0 {
		return v, fmt.Errorf("DaemonSet %s/%s: %w", ds.Namespace, ds.Name, ErrNotRendered)
	}
	for _, a := range ctrs[0].Args {
		for flag, dst := range map[string]*string{
			flagClusterID: &v.ClusterID, flagNamespace: &v.Namespace, flagPodCIDRs: &v.PodCIDRs,
			flagServiceCIDRs: &v.ServiceCIDRs, flagCableDriver: &v.CableDriver, flagGlobalCIDR: &v.GlobalCIDR,
			flagUnderlayMTU: &v.UnderlayMTU,
		} {
			if val, ok := strings.CutPrefix(a, flag); ok {
				*dst = val
			}
		}
	}
	// The image is <repository>/<name>:<tag>; the repository may hold a
	// registry with a port (host:5000/strait), so the tag follows the last
	// colon after the last slash.
	image := ctrs[0].Image
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if slash <= 0 || colon < slash {
		return v, fmt.Errorf("DaemonSet %s/%s, image %q: %w", ds.Namespace, ds.Name, image, ErrNotRendered)
	}
	v.ImageRepository, v.ImageTag = image[:slash], image[colon+1:]
	return v, nil
}
