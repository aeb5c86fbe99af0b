package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"strait.dev/strait/test/kubetest"
	"strait.dev/strait/test/proc"
	"strait.dev/strait/test/sandbox/node"
)

// Client returns a clientset for a cluster of the running sandbox.
func (l Layout) Client(cluster string) (kubernetes.Interface, error) {
	if _, err := os.Stat(l.Kubeconfig(cluster)); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cluster, errNotUp)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig(cluster))
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// PodRef is cluster/namespace/pod.
type PodRef struct{ Cluster, Namespace, Name string }

// ParsePodRef parses "cluster/namespace/pod".
func ParsePodRef(s string) (PodRef, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return PodRef{}, fmt.Errorf("%q: want <cluster>/<namespace>/<pod>, for example c1/default/web-0", s)
	}
	return PodRef{parts[0], parts[1], parts[2]}, nil
}

// Runtime finds where a pod runs: its node and the agent's record of its processes.
func (l Layout) Runtime(ctx context.Context, ref PodRef) (*corev1.Pod, *node.RuntimeInfo, error) {
	cs, err := l.Client(ref.Cluster)
	if err != nil {
		return nil, nil, err
	}
	pod, err := cs.CoreV1().Pods(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	if pod.Spec.NodeName == "" {
		return pod, nil, fmt.Errorf("pod %s/%s is not scheduled yet", ref.Namespace, ref.Name)
	}
	data, err := os.ReadFile(filepath.Join(l.NodeDir(pod.Spec.NodeName), "pods", pod.Namespace+"_"+pod.Name, "runtime.json"))
	if err != nil {
		return pod, nil, fmt.Errorf("pod %s/%s on %s has not started: %w", ref.Namespace, ref.Name, pod.Spec.NodeName, err)
	}
	info := &node.RuntimeInfo{}
	return pod, info, json.Unmarshal(data, info)
}

// ExecCommand returns a command that runs argv inside a pod's namespaces
// (network, mount and UTS of its first running container, or of its sandbox).
func (l Layout) ExecCommand(ctx context.Context, ref PodRef, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command given")
	}
	pod, info, err := l.Runtime(ctx, ref)
	if err != nil {
		return nil, err
	}
	pid := info.SandboxPID
	for _, c := range pod.Spec.Containers {
		if p := info.Containers[c.Name]; p > 0 && proc.Alive(p) {
			pid = p
			break
		}
	}
	if pid == 0 || !proc.Alive(pid) {
		return nil, fmt.Errorf("pod %s/%s/%s has no running process", ref.Cluster, ref.Namespace, ref.Name)
	}
	args := []string{"--target", strconv.Itoa(pid), "--net", "--mount", "--uts", "--"}
	cmd := exec.CommandContext(ctx, "nsenter", append(args, argv...)...)
	// Like kubectl exec, the command sees the container's environment.
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
		cmd.Env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	}
	return cmd, nil
}

// Logs prints the content of a container's latest CRI log (the first
// container's when none is named), as "kubectl logs" does.
func (l Layout) Logs(ctx context.Context, ref PodRef, container string, w io.Writer) error {
	pod, info, err := l.Runtime(ctx, ref)
	if err != nil && info == nil {
		if pod == nil || pod.Spec.NodeName == "" {
			return err
		}
		info = &node.RuntimeInfo{LogDir: filepath.Join(l.NodeDir(pod.Spec.NodeName), "pods", pod.Namespace+"_"+pod.Name)}
	}
	if container == "" {
		container = pod.Spec.Containers[0].Name
	}
	return node.WriteContainerLog(ctx, w, info.LogDir, container, node.LogOptions{TailLines: -1})
}

// Status prints the sandbox's clusters, their kubeconfigs, nodes and processes.
func Status(ctx context.Context, l Layout, w io.Writer) error {
	s, err := l.ReadState()
	if errors.Is(err, os.ErrNotExist) {
		return errNotUp
	} else if err != nil {
		return err
	}
	alive := proc.Alive(s.SupervisorPID) && markedBy(s.SupervisorPID, l.Dir)
	state := "up"
	switch {
	case s.Error != "":
		state = "failed: " + s.Error
	case !alive:
		state = "supervisor is gone (run 'strait-sandbox down')"
	case !s.Ready:
		state = "starting"
	}
	fmt.Fprintf(w, "sandbox %s, started %s, supervisor pid %d, %d processes\n\n", state, s.StartedAt.Format("15:04:05"), s.SupervisorPID, len(MarkedProcesses(l.Dir)))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tNODE\tIP\tPUBLIC IP\tPOD CIDR\tREADY\tPODS")
	for _, c := range s.Clusters {
		cs, err := l.Client(c.Name)
		var nodes map[string]corev1.Node
		pods := map[string]int{}
		if err == nil && alive {
			if list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
				nodes = map[string]corev1.Node{}
				for _, n := range list.Items {
					nodes[n.Name] = n
				}
			}
			if list, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
				for _, p := range list.Items {
					pods[p.Spec.NodeName]++
				}
			}
		}
		for _, n := range c.Nodes {
			obj, ok := nodes[n.Name]
			// Every family's, comma-separated, primary first.
			ips, public, podCIDRs := joinAddrs(n.IPs), joinAddrs(n.PublicIPs), strings.Join(obj.Spec.PodCIDRs, ",")
			if len(n.IPs) == 0 { // a state written before --ip-family
				ips = n.IP.String()
			}
			if public == "" && n.PublicIP.IsValid() {
				public = n.PublicIP.String()
			}
			if public == "" {
				public = "-"
			}
			if podCIDRs == "" {
				podCIDRs = obj.Spec.PodCIDR
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d\n", c.Name, n.Name, ips, public, podCIDRs, ok && nodeReady(&obj), pods[n.Name])
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	names := make([]string, 0, len(s.APIServers))
	for name := range s.APIServers {
		names = append(names, name)
	}
	sort.Strings(names)
	// The kubectl built with the sandbox's Kubernetes binaries, which need
	// not be on PATH.
	kubectl := "kubectl"
	if dir, err := kubetest.BinDir(); err == nil {
		kubectl = filepath.Join(dir, "kubectl")
	}
	for _, name := range names {
		fmt.Fprintf(w, "%s --kubeconfig %s get nodes   # %s, %s\n", kubectl, l.Kubeconfig(name), name, s.APIServers[name])
	}
	return nil
}

// joinAddrs writes addresses comma-separated.
func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
