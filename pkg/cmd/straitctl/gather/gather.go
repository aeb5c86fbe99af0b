// Package gather is "straitctl gather": one tar.gz with what a bug report
// about Strait needs (Strait's objects, its components' workloads, events
// and logs, and each node's routing state and Strait's iptables chains),
// with every credential redacted.
package gather

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"sigs.k8s.io/yaml"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
	"strait.dev/strait/pkg/cmd/straitctl/cmdutil"
)

const (
	// execTimeout bounds one command run in a node's route agent pod: `ip`
	// and iptables-save answer in milliseconds; a node that does not answer
	// in this time gets a note instead.
	execTimeout = 20 * time.Second
	// logLimitBytes caps each container's log in the archive (the newest
	// part is kept by the kubelet's limit from the start; 10 MiB holds
	// days of Strait's logs at the default level).
	logLimitBytes = 10 << 20
	// chainPrefix starts the name of every iptables chain Strait owns
	// (pkg/nodenet.ChainPrefix; straitctl links no data-plane package).
	chainPrefix = "STRAIT-"
	// routeAgentSelector selects the route agent pods: one per node, on
	// the host network, with ip and iptables in their image.
	routeAgentSelector = "app.kubernetes.io/component=routeagent"
)

// groups are the API groups whose every object is gathered: Strait's own,
// the MCS API and ClusterProperty.
var groups = []string{v1.GroupName, "multicluster.x-k8s.io", "about.k8s.io"}

// namespaced are the kinds gathered from each Strait namespace (besides
// Secrets, which are redacted).
var namespaced = []schema.GroupVersionResource{
	{Version: "v1", Resource: "pods"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "serviceaccounts"},
	{Version: "v1", Resource: "events"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
	{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// NodeCommands are what is run on each node, by file name in the archive.
var NodeCommands = []struct {
	File string
	Argv []string
	// Chains keeps only Strait's chains of iptables-save's output.
	Chains bool
}{
	{"ip-rule.txt", []string{"ip", "rule", "show"}, false},
	{"ip6-rule.txt", []string{"ip", "-6", "rule", "show"}, false},
	{"ip-route.txt", []string{"ip", "-d", "route", "show", "table", "all"}, false},
	{"ip6-route.txt", []string{"ip", "-6", "-d", "route", "show", "table", "all"}, false},
	{"ip-link.txt", []string{"ip", "-d", "link", "show"}, false},
	{"iptables.txt", []string{"iptables-save"}, true},
	{"ip6tables.txt", []string{"ip6tables-save"}, true},
}

// NewCommand returns the gather command.
func NewCommand() *cobra.Command {
	var (
		kube cmdutil.Kube
		file string
	)
	cmd := &cobra.Command{
		Use:   "gather",
		Short: "Write one tar.gz of Strait's objects, logs and node state for a bug report",
		Long: `gather writes one tar.gz for a bug report. From each cluster (--context, one or
several) it takes:

  - every object of strait.dev, multicluster.x-k8s.io and about.k8s.io
  - the nodes, and from strait-system (and any namespace holding strait.dev
    objects, such as the broker's) the pods, workloads, ConfigMaps, Services,
    Leases, RBAC and events, and the Secrets with their values redacted
  - the logs of every container in strait-system (the previous run's too
    after a restart), through the API server
  - each node's ip rules, routes and links and Strait's iptables chains, run in
    the node's route agent pod through the API server's exec; a node where
    that is impossible gets a note saying why

Credentials never enter the archive: Secret values, the same values anywhere
else (logs, annotations), private keys, tokens and bearer headers are
replaced by <redacted>. No kubeconfig is included. gather.txt in each
cluster's folder lists what was taken and what failed.`,
		Example: `  straitctl gather --kubeconfig c1.kubeconfig
  straitctl gather --context c1,c2,c3 --file /tmp/fabric.tar.gz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			targets, err := kube.Targets()
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			if file == "" {
				file = DefaultFile(now)
			}
			p := cmdutil.NewProgress(cmd.ErrOrStderr())
			if err := Write(cmd.Context(), file, targets, now, p); err != nil {
				return cmdutil.Explain(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", file)
			return nil
		},
	}
	kube.AddMultiFlags(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "the archive to write (default ./strait-gather-<UTC time>.tar.gz)")
	return cmd
}

// DefaultFile is the archive's name when --file is not given.
func DefaultFile(now time.Time) string {
	return "strait-gather-" + now.Format("20060102-150405") + ".tar.gz"
}

// Write gathers from each target into the tar.gz file (mode 0600, written
// whole or not at all). A cluster that cannot be reached at all is an
// error; what fails inside a cluster is listed in its gather.txt.
func Write(ctx context.Context, file string, targets []cmdutil.Target, now time.Time, p *cmdutil.Progress) (err error) {
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, ".strait-gather-*")
	if err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	gz := gzip.NewWriter(tmp)
	tw := tar.NewWriter(gz)
	root := strings.TrimSuffix(filepath.Base(file), ".tar.gz")
	var failed []string
	for _, t := range targets {
		name := t.Context
		if name == "" {
			name = "cluster"
		}
		g := &gatherer{cfg: t.Config, tw: tw, dir: path.Join(root, safeName(name)), now: now, p: p, ctxName: name}
		if err := g.run(ctx); err != nil {
			err = cmdutil.Explain(err)
			if len(targets) == 1 || ctx.Err() != nil {
				return fmt.Errorf("context %s: %w", name, err)
			}
			// One cluster out of several: the others still make a report.
			failed = append(failed, fmt.Sprintf("context %s: %v", name, err))
			p.Printf("context %s: %v", name, err)
			g.note("gather failed: %v", err)
			if werr := g.write("gather.txt", []byte(strings.Join(g.report, "\n")+"\n")); werr != nil {
				return werr
			}
		}
	}
	if len(failed) == len(targets) {
		return fmt.Errorf("nothing gathered: %s", strings.Join(failed, "; "))
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	if len(failed) > 0 {
		return &PartialError{File: file, Failed: failed}
	}
	return nil
}

// PartialError is a gather that wrote its archive without some of the
// clusters it was asked for.
type PartialError struct {
	File   string
	Failed []string // "context <name>: <error>"
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("wrote %s without %d cluster(s): %s", e.File, len(e.Failed), strings.Join(e.Failed, "; "))
}

// gatherer gathers one cluster into the archive.
type gatherer struct {
	cfg     *rest.Config
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	tw      *tar.Writer
	dir     string
	ctxName string
	now     time.Time
	p       *cmdutil.Progress
	red     Redactor
	report  []string // gather.txt: one line per item
}

func (g *gatherer) note(format string, a ...any) {
	g.report = append(g.report, fmt.Sprintf(format, a...))
}

func (g *gatherer) run(ctx context.Context) error {
	var err error
	if g.cs, err = kubernetes.NewForConfig(g.cfg); err != nil {
		return err
	}
	if g.dyn, err = dynamic.NewForConfig(g.cfg); err != nil {
		return err
	}
	// The one call that must work: without the API server there is
	// nothing to gather.
	ver, err := g.cs.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	g.note("gathered %s from context %s (Kubernetes %s) by straitctl", g.now.Format(time.RFC3339), g.ctxName, ver.GitVersion)

	// Everything is read before anything is written, so that the Secrets'
	// values are known to the Redactor before the first file.
	done := g.p.Start(fmt.Sprintf("context %s: reading Strait's objects", g.ctxName))
	files := map[string][]byte{}
	namespaces := []string{v1.ComponentNamespace}
	for _, list := range g.apiObjects(ctx) {
		files[path.Join("objects", list.file)] = list.data
		if list.group != v1.GroupName {
			continue // MCS objects live in applications' namespaces
		}
		for _, ns := range list.namespaces {
			if !slices.Contains(namespaces, ns) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	if data, err := g.list(ctx, schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, ""); err != nil {
		g.note("nodes: %v", err)
	} else {
		files["nodes.yaml"] = data
	}
	for _, ns := range namespaces {
		g.secrets(ctx, ns, files)
		for _, gvr := range namespaced {
			data, err := g.list(ctx, gvr, ns)
			if err != nil {
				g.note("%s in %s: %v", gvr.Resource, ns, err)
				continue
			}
			files[path.Join("namespaces", ns, gvr.Resource+".yaml")] = data
		}
	}
	done()

	for _, name := range sortedKeys(files) {
		if err := g.write(name, files[name]); err != nil {
			return err
		}
	}
	if err := g.logs(ctx); err != nil {
		return err
	}
	if err := g.nodes(ctx); err != nil {
		return err
	}
	return g.write("gather.txt", []byte(strings.Join(g.report, "\n")+"\n"))
}

// write adds one redacted file to the archive.
func (g *gatherer) write(name string, data []byte) error {
	data = g.red.Redact(data)
	hdr := &tar.Header{Name: path.Join(g.dir, name), Mode: 0o600, Size: int64(len(data)), ModTime: g.now, Typeflag: tar.TypeReg}
	if err := g.tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := g.tw.Write(data)
	return err
}

type objectList struct {
	group      string
	file       string
	data       []byte
	namespaces []string // the namespaces the objects are in
}

// apiObjects lists every resource of groups, all namespaces.
func (g *gatherer) apiObjects(ctx context.Context) []objectList {
	_, lists, err := g.cs.Discovery().ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		g.note("discovery: %v", err)
	}
	var out []objectList
	for _, rl := range lists {
		gv, err := schema.ParseGroupVersion(rl.GroupVersion)
		if err != nil || !slices.Contains(groups, gv.Group) {
			continue
		}
		for _, r := range rl.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue // a subresource
			}
			gvr := gv.WithResource(r.Name)
			l, err := g.dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
			if err != nil {
				g.note("%s: %v", gvr, err)
				continue
			}
			ol := objectList{group: gv.Group, file: path.Join(gv.Group, gv.Version, r.Name+".yaml")}
			for i := range l.Items {
				if ns := l.Items[i].GetNamespace(); ns != "" && !slices.Contains(ol.namespaces, ns) {
					ol.namespaces = append(ol.namespaces, ns)
				}
			}
			if ol.data, err = marshal(l); err != nil {
				g.note("%s: %v", gvr, err)
				continue
			}
			g.note("%s: %d objects", gvr, len(l.Items))
			out = append(out, ol)
		}
	}
	return out
}

// list reads every object of gvr in ns ("" for cluster-scoped) as YAML.
func (g *gatherer) list(ctx context.Context, gvr schema.GroupVersionResource, ns string) ([]byte, error) {
	var (
		l   *unstructured.UnstructuredList
		err error
	)
	if ns == "" {
		l, err = g.dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
	} else {
		l, err = g.dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	}
	if err != nil {
		return nil, err
	}
	return marshal(l)
}

// secrets learns the values of ns's Secrets and writes them redacted.
func (g *gatherer) secrets(ctx context.Context, ns string, files map[string][]byte) {
	l, err := g.cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		g.note("secrets in %s: %v (their values cannot be searched for in logs; tokens and private keys still are)", ns, err)
		return
	}
	items := make([]any, 0, len(l.Items))
	for i := range l.Items {
		g.red.Learn(&l.Items[i])
		s := RedactSecret(&l.Items[i])
		s.APIVersion, s.Kind = "v1", "Secret"
		items = append(items, s)
	}
	data, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		g.note("secrets in %s: %v", ns, err)
		return
	}
	files[path.Join("namespaces", ns, "secrets.yaml")] = data
}

// marshal writes l as YAML without managedFields and last-applied
// annotations, which repeat the object.
func marshal(l *unstructured.UnstructuredList) ([]byte, error) {
	items := make([]any, 0, len(l.Items))
	for i := range l.Items {
		o := l.Items[i].Object
		unstructured.RemoveNestedField(o, "metadata", "managedFields")
		unstructured.RemoveNestedField(o, "metadata", "annotations", corev1.LastAppliedConfigAnnotation)
		items = append(items, o)
	}
	return yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}

// logs writes the log of each container in strait-system.
func (g *gatherer) logs(ctx context.Context) error {
	pods, err := g.cs.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		g.note("logs: %v", err)
		return nil
	}
	done := g.p.Start(fmt.Sprintf("context %s: reading the logs of %d pods", g.ctxName, len(pods.Items)))
	defer done()
	for _, pod := range pods.Items {
		statuses := append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...)
		restarts := map[string]int32{}
		for _, s := range statuses {
			restarts[s.Name] = s.RestartCount
		}
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			for _, previous := range []bool{false, true} {
				if previous && restarts[c.Name] == 0 {
					continue
				}
				name := path.Join("logs", pod.Name, c.Name+".log")
				if previous {
					name = path.Join("logs", pod.Name, c.Name+".previous.log")
				}
				limit := int64(logLimitBytes)
				data, err := g.cs.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
					Container: c.Name, Previous: previous, LimitBytes: &limit, Timestamps: true,
				}).DoRaw(ctx)
				if err != nil {
					g.note("log of %s/%s: %v", pod.Name, c.Name, err)
					continue
				}
				if err := g.write(name, data); err != nil {
					return err
				}
				g.note("log of %s/%s: %d bytes", pod.Name, c.Name, len(data))
			}
		}
	}
	return nil
}

// nodes runs NodeCommands in each node's route agent pod. A node without a
// running one, or where exec fails, gets a NOTE.txt saying so.
func (g *gatherer) nodes(ctx context.Context) error {
	nodes, err := g.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		g.note("node state: cannot list nodes: %v", err)
		return nil
	}
	pods, err := g.cs.CoreV1().Pods(v1.ComponentNamespace).List(ctx, metav1.ListOptions{LabelSelector: routeAgentSelector})
	if err != nil {
		g.note("node state: cannot list the route agent pods: %v", err)
		pods = &corev1.PodList{}
	}
	agent := map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			agent[p.Spec.NodeName] = p
		}
	}
	done := g.p.Start(fmt.Sprintf("context %s: reading the network state of %d nodes", g.ctxName, len(nodes.Items)))
	defer done()
	for _, n := range nodes.Items {
		dir := path.Join("nodes", safeName(n.Name))
		pod := agent[n.Name]
		if pod == nil {
			msg := fmt.Sprintf("node %s: no running strait-routeagent pod (selector %s in %s), so its ip rules, routes, links and iptables chains were not gathered; run the NodeCommands of gather.txt on the node by hand if needed", n.Name, routeAgentSelector, v1.ComponentNamespace)
			g.note("%s", msg)
			if err := g.write(path.Join(dir, "NOTE.txt"), []byte(msg+"\n")); err != nil {
				return err
			}
			continue
		}
		var failures []string
		for _, c := range NodeCommands {
			out, err := g.exec(ctx, pod, c.Argv)
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", strings.Join(c.Argv, " "), err))
				continue
			}
			if c.Chains {
				out = FilterChains(out, chainPrefix)
			}
			if err := g.write(path.Join(dir, c.File), append([]byte("# "+strings.Join(c.Argv, " ")+" (in pod "+pod.Name+")\n"), out...)); err != nil {
				return err
			}
		}
		if len(failures) > 0 {
			msg := fmt.Sprintf("node %s: exec in %s/%s failed:\n  %s\n", n.Name, pod.Namespace, pod.Name, strings.Join(failures, "\n  "))
			g.note("%s", strings.TrimSpace(msg))
			if err := g.write(path.Join(dir, "NOTE.txt"), []byte(msg)); err != nil {
				return err
			}
		} else {
			g.note("node %s: network state from pod %s", n.Name, pod.Name)
		}
	}
	return nil
}

// exec runs argv in pod's first container through the API server's exec
// subresource (WebSocket, falling back to SPDY as kubectl does).
func (g *gatherer) exec(ctx context.Context, pod *corev1.Pod, argv []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	req := g.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: pod.Spec.Containers[0].Name, Command: argv, Stdout: true, Stderr: true},
			clientgoscheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(g.cfg, "GET", req.URL().String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(g.cfg, "POST", req.URL())
	if err != nil {
		return nil, err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return nil, fmt.Errorf("%w: %s", err, firstLine(s))
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

// FilterChains keeps of iptables-save's output the tables' headers and
// COMMITs, the chains whose names start with prefix, their rules, and the
// rules elsewhere that jump to them: Strait's part of the packet filter,
// not the rest of the node's.
func FilterChains(save []byte, prefix string) []byte {
	var out bytes.Buffer
	jump := regexp.MustCompile(`\s-[jg]\s+` + regexp.QuoteMeta(prefix))
	for _, line := range strings.Split(string(save), "\n") {
		switch {
		case strings.HasPrefix(line, "*"), line == "COMMIT",
			strings.HasPrefix(line, ":"+prefix),
			strings.HasPrefix(line, "-A "+prefix),
			strings.HasPrefix(line, "-A ") && jump.MatchString(line):
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// safeName makes s a single path element.
func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
