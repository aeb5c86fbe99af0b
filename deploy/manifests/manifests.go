// Package manifests holds the Kubernetes manifests of Strait's components,
// as Go templates that straitctl renders: join applies what they render, and
// leave deletes the same objects, rendered again with the values read back
// from the cluster (ReadValues).
package manifests

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"strings"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// MemberFiles are the manifests of a member cluster, in the order join
// applies them: gateway.yaml makes the namespace the others live in.
// globalnet.yaml renders nothing for a member without a global CIDR.
var MemberFiles = []string{"gateway.yaml", "routeagent.yaml", "lighthouse.yaml", "dns.yaml", "globalnet.yaml"}

// DNSServiceName names the Service of strait-dns in the component namespace
// (dns.yaml), whose cluster IPs the cluster's own DNS forwards
// clusterset.local to.
const DNSServiceName = "strait-dns"

// GatewayValues fill MemberFiles (lighthouse.yaml and dns.yaml use only the
// namespace, the cluster ID and the image).
type GatewayValues struct {
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
}

// RenderMember renders MemberFiles with values into their objects, in the
// order join applies them (leave deletes them in reverse).
func RenderMember(values GatewayValues) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, f := range MemberFiles {
		o, err := Render(f, values)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

// Render renders a manifest file into its objects, in file order. Errors are
// the template's (a value the file uses and values lacks) or the YAML's.
func Render(name string, values any) ([]*unstructured.Unstructured, error) {
	tmpl, err := template.New(name).Option("missingkey=error").ParseFS(files, name)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, values); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	var objs []*unstructured.Unstructured
	for i, doc := range strings.Split(buf.String(), "\n---\n") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return nil, fmt.Errorf("%s, document %d: %w", name, i+1, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
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
