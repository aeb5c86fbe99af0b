// Package manifests holds the Kubernetes manifests of Strait's components,
// as Go templates that straitctl renders and applies.
package manifests

import (
	"bytes"
	"embed"
	"fmt"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// GatewayValues fill gateway.yaml.
type GatewayValues struct {
	Namespace       string
	ClusterID       string
	PodCIDRs        string // comma-separated
	ServiceCIDRs    string // comma-separated
	CableDriver     string
	ImageRepository string
	ImageTag        string
}

// Render renders a manifest file into its objects, in file order.
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
