package kubeapply_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"strait.dev/strait/pkg/kubeapply"
)

// ParseObjects keeps the objects of a stream as helm template writes it:
// "# Source:" comments, a template that rendered nothing, a block scalar
// with an indented "---" line (not a separator), and names the document
// that is not YAML.
func TestParseObjects(t *testing.T) {
	stream := `---
# Source: strait/templates/globalnet.yaml
---
# Source: strait/templates/dns.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: corefile
data:
  Corefile: |
    a
    ---
    b
---
apiVersion: v1
kind: Service
metadata:
  name: strait-dns
`
	objs, err := kubeapply.ParseObjects(stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].GetKind() != "ConfigMap" || objs[1].GetName() != "strait-dns" {
		t.Fatalf("objects %v; want the ConfigMap and the Service strait-dns", objs)
	}
	if data, _, _ := unstructured.NestedString(objs[0].Object, "data", "Corefile"); data != "a\n---\nb\n" {
		t.Errorf("Corefile %q; want the block scalar whole", data)
	}
	_, err = kubeapply.ParseObjects("kind: A\n---\nkind: [\n")
	if err == nil || !strings.Contains(err.Error(), "document 2") {
		t.Errorf("error %v; want one naming document 2", err)
	}
}
