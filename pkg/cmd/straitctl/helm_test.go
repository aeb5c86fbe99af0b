package straitctl

// straitctl join --dry-run -o yaml against helm template of the chart, on a
// real kube-apiserver (test/kubetest) that has never been joined.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"strait.dev/strait/broker"
	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/scheme"
	"strait.dev/strait/test/helmtest"
	"strait.dev/strait/test/kubetest"
)

// testCA is a syntactically complete broker CA for the join file: a dry run
// never connects to the broker.
const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// join --dry-run -o yaml prints what helm template prints with the same
// values (as parsed objects, in any order), plus what join makes that the
// chart does not: the namespace and the broker credential Secret, without
// its token. It writes nothing to the cluster.
func TestJoinDryRunIsHelmTemplate(t *testing.T) {
	ctx := context.Background()
	env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	infoFile := filepath.Join(t.TempDir(), "broker-info.strait")
	info := &broker.Info{APIServer: "https://broker.example:6443", CABundle: []byte(testCA), Namespace: "strait-broker", Token: "enrol"}
	if err := broker.WriteInfo(infoFile, info); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", "")

	for _, tc := range []struct {
		name      string
		joinArgs  []string
		helmFlags []string
	}{{
		name:      "defaults",
		joinArgs:  []string{"--clusterid", "c1", "--pod-cidr", "10.1.0.0/16", "--service-cidr", "10.101.0.0/16"},
		helmFlags: []string{"--set", "clusterID=c1", "--set", "podCIDRs={10.1.0.0/16}", "--set", "serviceCIDRs={10.101.0.0/16}"},
	}, {
		name: "globalnet",
		joinArgs: []string{"--clusterid", "c3", "--pod-cidr", "10.1.0.0/16", "--service-cidr", "10.101.0.0/16",
			"--globalnet-cidr", "242.1.0.0/16", "--underlay-mtu", "1400"},
		helmFlags: []string{"--set", "clusterID=c3", "--set", "podCIDRs={10.1.0.0/16}", "--set", "serviceCIDRs={10.101.0.0/16}",
			"--set", "globalCIDR=242.1.0.0/16", "--set", "underlayMTU=1400"},
	}, {
		name: "vxlan",
		joinArgs: []string{"--clusterid", "c2", "--pod-cidr", "10.2.0.0/16", "--service-cidr", "10.102.0.0/16", "--cable-driver", "vxlan",
			"--image-repository", "registry.example:5000/strait"},
		helmFlags: []string{"--set", "clusterID=c2", "--set", "podCIDRs={10.2.0.0/16}", "--set", "serviceCIDRs={10.102.0.0/16}",
			"--set", "cableDriver=vxlan", "--set", "image.repository=registry.example:5000/strait"},
	}, {
		name:      "dual-stack",
		joinArgs:  []string{"--clusterid", "c4", "--pod-cidr", "10.4.0.0/16,fd00:4::/48", "--service-cidr", "10.104.0.0/16,fd00:104::/112"},
		helmFlags: []string{"--set", "clusterID=c4", "--set", "podCIDRs={10.4.0.0/16,fd00:4::/48}", "--set", "serviceCIDRs={10.104.0.0/16,fd00:104::/112}"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"join", infoFile, "--kubeconfig", env.Kubeconfig, "--gateway-nodes", "n1,n2",
				"--image-tag", "t1", "--dry-run", "-o", "yaml"}, tc.joinArgs...)
			code, stdout, stderr := run(args...)
			if code != 0 {
				t.Fatalf("straitctl %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
			}
			joined := helmtest.ByKey(t, helmtest.Parse(t, stdout))

			// What join makes beside the chart.
			ns := joined["Namespace /"+v1.ComponentNamespace]
			secret := joined["Secret "+v1.ComponentNamespace+"/"+broker.SecretName]
			if ns == nil || secret == nil {
				t.Fatalf("the dry run lacks the namespace or the broker Secret:\n%s", stdout)
			}
			data, _, _ := unstructured.NestedStringMap(secret.Object, "data")
			if _, ok := data[broker.SecretKeyToken]; ok || len(data) != 3 {
				t.Errorf("broker Secret data keys %v, want the broker's address, CA and namespace, no token", keys(data))
			}
			delete(joined, helmtest.Key(ns))
			delete(joined, helmtest.Key(secret))

			helmArgs := append([]string{"template", "strait", helmtest.ChartDir(), "--namespace", v1.ComponentNamespace,
				"--include-crds", "--set", "image.tag=t1"}, tc.helmFlags...)
			templated := helmtest.ByKey(t, helmtest.Parse(t, helmtest.Run(t, helmArgs...)))
			helmtest.Compare(t, "straitctl join --dry-run", joined, "helm template", templated)
		})
	}

	// Nothing was written: no namespace, no CRD, no node label.
	if err := c.Get(ctx, client.ObjectKey{Name: v1.ComponentNamespace}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s after the dry runs: %v, want not found", v1.ComponentNamespace, err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(apiextv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	if err := c.Get(ctx, client.ObjectKey{Name: "clusters.strait.dev"}, crd); !apierrors.IsNotFound(err) {
		t.Errorf("CRD clusters.strait.dev after the dry runs: %v, want not found", err)
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes, client.HasLabels{v1.GatewayNodeLabel}); err != nil || len(nodes.Items) != 0 {
		t.Errorf("gateway-labelled nodes after the dry runs: %d (%v), want none", len(nodes.Items), err)
	}

	// A Globalnet dry run of a cluster without a global CIDR needs one named:
	// the broker allots it, and a dry run does not ask the broker.
	code, _, stderr := run("join", infoFile, "--kubeconfig", env.Kubeconfig, "--clusterid", "c5", "--gateway-nodes", "n1",
		"--pod-cidr", "10.5.0.0/16", "--service-cidr", "10.105.0.0/16", "--globalnet", "--dry-run")
	if code == 0 || !strings.Contains(stderr, "--globalnet-cidr") {
		t.Errorf("join --globalnet --dry-run without a global CIDR: exit %d, stderr %q; want a failure naming --globalnet-cidr", code, stderr)
	}
	// -o only with --dry-run.
	if code, _, stderr := run("join", infoFile, "--kubeconfig", env.Kubeconfig, "--clusterid", "c5", "-o", "yaml"); code == 0 || !strings.Contains(stderr, "--dry-run") {
		t.Errorf("join -o yaml without --dry-run: exit %d, stderr %q", code, stderr)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// join --enrol-only prints the Helm values join renders the chart with:
// helm template with that values file gives the objects join --dry-run -o
// yaml prints with the same flags (less the namespace and the Secret, which
// enrol-only writes itself), the global CIDR the broker allotted among
// them. The values hold no token. Flags that make no sense with
// --enrol-only are refused before anything is done.
func TestJoinEnrolOnlyValuesAreHelmTemplate(t *testing.T) {
	ctx := context.Background()
	brokerEnv := kubetest.New(t, kubetest.Options{SkipCRDs: true})
	info, err := broker.Deploy(ctx, brokerEnv.Config, broker.DeployOptions{})
	if err != nil {
		t.Fatalf("deploy the broker: %v", err)
	}
	infoFile := filepath.Join(t.TempDir(), "broker-info.strait")
	if err := broker.WriteInfo(infoFile, info); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", "")

	for _, tc := range []struct {
		name     string
		joinArgs []string
	}{{
		name:     "defaults",
		joinArgs: []string{"--clusterid", "c1", "--pod-cidr", "10.1.0.0/16", "--service-cidr", "10.101.0.0/16"},
	}, {
		name: "globalnet vxlan mtu image",
		joinArgs: []string{"--clusterid", "c3", "--pod-cidr", "10.3.0.0/16", "--service-cidr", "10.103.0.0/16",
			"--globalnet", "--globalnet-cidr-size", "4096", "--underlay-mtu", "1400", "--cable-driver", "vxlan",
			"--image-repository", "registry.example:5000/strait"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			// A cluster of its own: one cluster is one member of the broker.
			env := kubetest.New(t, kubetest.Options{SkipCRDs: true})
			c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"n1", "n2"} {
				if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
					t.Fatal(err)
				}
			}
			common := append([]string{infoFile, "--kubeconfig", env.Kubeconfig, "--gateway-nodes", "n1,n2", "--image-tag", "t1"}, tc.joinArgs...)
			args := append([]string{"join", "--enrol-only"}, common...)
			code, values, stderr := run(args...)
			if code != 0 {
				t.Fatalf("straitctl %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
			}
			secret := &corev1.Secret{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: v1.ComponentNamespace, Name: broker.SecretName}, secret); err != nil {
				t.Fatalf("the broker Secret after join --enrol-only: %v", err)
			}
			if token := string(secret.Data[broker.SecretKeyToken]); token == "" || strings.Contains(values, token) {
				t.Errorf("token set %v, printed in the values %v: want a token in the Secret and not in the values", token != "", token != "" && strings.Contains(values, token))
			}
			valuesFile := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(valuesFile, []byte(values), 0o600); err != nil {
				t.Fatal(err)
			}
			templated := helmtest.ByKey(t, helmtest.Parse(t, helmtest.Run(t, "template", "strait", helmtest.ChartDir(),
				"--namespace", v1.ComponentNamespace, "--include-crds", "-f", valuesFile)))

			// The dry run renders with the global CIDR the cluster holds:
			// the one in the values.
			dryArgs := append([]string{"join", "--dry-run", "-o", "yaml"}, common...)
			var vals struct {
				GlobalCIDR string `json:"globalCIDR"`
			}
			if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
				t.Fatalf("the values: %v\n%s", err, values)
			}
			if slices.Contains(tc.joinArgs, "--globalnet") {
				if vals.GlobalCIDR == "" {
					t.Fatalf("no globalCIDR in the values of a Globalnet enrolment:\n%s", values)
				}
				dryArgs = append(dryArgs, "--globalnet-cidr", vals.GlobalCIDR)
			}
			code, stdout, stderr := run(dryArgs...)
			if code != 0 {
				t.Fatalf("straitctl %s: exit %d\n%s", strings.Join(dryArgs, " "), code, stderr)
			}
			joined := helmtest.ByKey(t, helmtest.Parse(t, stdout))
			delete(joined, "Namespace /"+v1.ComponentNamespace)
			delete(joined, "Secret "+v1.ComponentNamespace+"/"+broker.SecretName)
			helmtest.Compare(t, "straitctl join --dry-run", joined, "helm template -f <join --enrol-only's values>", templated)

			// Enrol-only again prints the same values (the same global CIDR).
			code, again, stderr := run(args...)
			if code != 0 || again != values {
				t.Errorf("join --enrol-only again: exit %d, values\n%s\nthe first time\n%s\n%s", code, again, values, stderr)
			}
		})
	}

	// Refused flags, before anything is done.
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--enrol-only", "--dry-run"}, "--enrol-only and --dry-run"},
		{[]string{"--enrol-only", "-o", "yaml"}, "-o needs --dry-run"},
	} {
		args := append([]string{"join", infoFile, "--kubeconfig", "/nonexistent", "--clusterid", "c9"}, tc.flags...)
		if code, stdout, stderr := run(args...); code != 1 || stdout != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("straitctl %s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", strings.Join(args, " "), code, stdout, stderr, tc.want)
		}
	}
}
