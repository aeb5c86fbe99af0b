package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// prepareVolumes materializes the pod's volumes under dir and returns the
// host path of each by name. Secrets, ConfigMaps and tokens are read with the
// node's own credentials, which the Node authorizer allows only for pods bound
// to this node.
func (a *Agent) prepareVolumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
		var files map[string][]byte
		var err error
		switch {
		case v.HostPath != nil:
			if v.HostPath.Type != nil && (*v.HostPath.Type == corev1.HostPathDirectoryOrCreate) {
				if err := os.MkdirAll(v.HostPath.Path, 0o755); err != nil {
					return nil, err
				}
			}
			paths[v.Name] = v.HostPath.Path
			continue
		case v.EmptyDir != nil:
			if err := os.MkdirAll(vdir, 0o777); err != nil {
				return nil, err
			}
			paths[v.Name] = vdir
			continue
		case v.Secret != nil:
			files, err = a.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, ptr.Deref(v.Secret.Optional, false))
		case v.ConfigMap != nil:
			files, err = a.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, ptr.Deref(v.ConfigMap.Optional, false))
		case v.Projected != nil:
			files, err = a.projectedFiles(ctx, pod, v.Projected)
		case v.DownwardAPI != nil:
			files, err = a.downwardAPIFiles(pod, v.DownwardAPI.Items)
		default:
			return nil, fmt.Errorf("volume %s: only secret, configMap, projected, downwardAPI, emptyDir and hostPath volumes run in the sandbox", v.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := writeFiles(vdir, files); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		paths[v.Name] = vdir
	}
	return paths, nil
}

func writeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.Clean("/"+name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func pick(data map[string][]byte, items []corev1.KeyToPath) (map[string][]byte, error) {
	if len(items) == 0 {
		return data, nil
	}
	out := map[string][]byte{}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("key %q not found", it.Key)
		}
		out[it.Path] = v
	}
	return out, nil
}

func (a *Agent) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional bool) (map[string][]byte, error) {
	s, err := a.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return pick(s.Data, items)
}

func (a *Agent) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional bool) (map[string][]byte, error) {
	cm, err := a.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("configmap %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return pick(data, items)
}

func (a *Agent) projectedFiles(ctx context.Context, pod *corev1.Pod, p *corev1.ProjectedVolumeSource) (map[string][]byte, error) {
	out := map[string][]byte{}
	merge := func(files map[string][]byte, err error) error {
		for k, v := range files {
			out[k] = v
		}
		return err
	}
	for _, src := range p.Sources {
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = a.serviceAccountToken(ctx, pod, src.ServiceAccountToken)
			out[src.ServiceAccountToken.Path] = []byte(tok)
		case src.ConfigMap != nil:
			err = merge(a.configMapFiles(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, ptr.Deref(src.ConfigMap.Optional, false)))
		case src.Secret != nil:
			err = merge(a.secretFiles(ctx, pod.Namespace, src.Secret.Name, src.Secret.Items, ptr.Deref(src.Secret.Optional, false)))
		case src.DownwardAPI != nil:
			err = merge(a.downwardAPIFiles(pod, src.DownwardAPI.Items))
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// downwardAPIFiles renders downward API items: fieldRef and resourceFieldRef
// values, one file each.
func (a *Agent) downwardAPIFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = resourceValue(pod, it.ResourceFieldRef.ContainerName, it.ResourceFieldRef, a.allocatable())
		default:
			err = errors.New("neither fieldRef nor resourceFieldRef")
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI %s: %w", it.Path, err)
		}
		out[it.Path] = []byte(v)
	}
	return out, nil
}

// serviceAccountToken requests a token bound to the pod through the
// TokenRequest API, as the kubelet does for projected token volumes.
func (a *Agent) serviceAccountToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s: %w", sa, err)
	}
	return tr.Status.Token, nil
}

// fieldValue resolves a downward-API field path of the pod, as the kubelet
// does: status.podIPs and status.hostIPs are comma-joined, and the whole
// metadata.labels or metadata.annotations are key="value" lines sorted by key
// (the value quoted as Go quotes strings), without a final newline.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		var ips []string
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		var ips []string
		for _, ip := range pod.Status.HostIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	}
	for _, kind := range []struct {
		prefix string
		m      map[string]string
	}{{"metadata.labels", pod.Labels}, {"metadata.annotations", pod.Annotations}} {
		rest, ok := strings.CutPrefix(path, kind.prefix)
		if !ok {
			continue
		}
		if rest == "" {
			keys := make([]string, 0, len(kind.m))
			for k := range kind.m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			lines := make([]string, 0, len(keys))
			for _, k := range keys {
				lines = append(lines, k+"="+strconv.Quote(kind.m[k]))
			}
			return strings.Join(lines, "\n"), nil
		}
		if key, ok := strings.CutPrefix(rest, "['"); ok && strings.HasSuffix(key, "']") {
			return kind.m[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("field path %q is not supported", path)
}

// allocatable is what the node reports as allocatable, which stands in for a
// container's unset limits in resourceFieldRef, as on a kubelet.
func (a *Agent) allocatable() corev1.ResourceList { return a.nodeStatus(true).Allocatable }

// resourceValue resolves a resourceFieldRef (limits.cpu, requests.memory,
// limits.ephemeral-storage ...) of the named container (the first when name
// is empty): the quantity divided by the divisor (default 1) and rounded up,
// as the kubelet does. An unset limit is the node's allocatable; an unset
// request is 0.
func resourceValue(pod *corev1.Pod, name string, ref *corev1.ResourceFieldSelector, allocatable corev1.ResourceList) (string, error) {
	if ref.ContainerName != "" {
		name = ref.ContainerName
	}
	var c *corev1.Container
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if c == nil && (list[i].Name == name || name == "") {
				c = &list[i]
			}
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef %s: no container %q", ref.Resource, name)
	}
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %q is not supported", ref.Resource)
	}
	var q resource.Quantity
	if kind == "limits" {
		if v, ok := c.Resources.Limits[corev1.ResourceName(res)]; ok {
			q = v
		} else {
			q = allocatable[corev1.ResourceName(res)]
		}
	} else {
		q = c.Resources.Requests[corev1.ResourceName(res)]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var n, d int64
	if res == string(corev1.ResourceCPU) {
		n, d = q.MilliValue(), divisor.MilliValue()
	} else {
		n, d = q.Value(), divisor.Value()
	}
	if d <= 0 {
		return "", fmt.Errorf("resourceFieldRef %s: divisor %s", ref.Resource, divisor.String())
	}
	return strconv.FormatInt((n+d-1)/d, 10), nil
}

// containerEnv resolves a container's environment: the image's PATH, the
// variables every container gets (HOSTNAME, the kubernetes Service's), envFrom
// and env in order, a later definition of a name replacing an earlier one.
// pod.Status.PodIP(s) and HostIP(s) must hold the addresses the pod has.
func (a *Agent) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, path string) ([]string, error) {
	hostname, _ := PodHostname(pod, a.cfg.ClusterDomain)
	if pod.Spec.HostNetwork {
		hostname, _ = os.Hostname()
	}
	env := []string{
		"PATH=" + path,
		"HOSTNAME=" + hostname,
		"KUBERNETES_SERVICE_HOST=" + a.cfg.KubernetesServiceIP.String(),
		"KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_SERVICE_PORT_HTTPS=443",
		a.cfg.MarkerEnv,
	}
	for _, from := range c.EnvFrom {
		var data map[string][]byte
		var err error
		switch {
		case from.ConfigMapRef != nil:
			data, err = a.configMapFiles(ctx, pod.Namespace, from.ConfigMapRef.Name, nil, ptr.Deref(from.ConfigMapRef.Optional, false))
		case from.SecretRef != nil:
			data, err = a.secretFiles(ctx, pod.Namespace, from.SecretRef.Name, nil, ptr.Deref(from.SecretRef.Optional, false))
		}
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			env = setEnv(env, from.Prefix+k, string(data[k]))
		}
	}
	for _, e := range c.Env {
		v := e.Value
		if src := e.ValueFrom; src != nil {
			var err error
			switch {
			case src.FieldRef != nil:
				v, err = fieldValue(pod, src.FieldRef.FieldPath)
			case src.SecretKeyRef != nil:
				var data map[string][]byte
				data, err = a.secretFiles(ctx, pod.Namespace, src.SecretKeyRef.Name, nil, ptr.Deref(src.SecretKeyRef.Optional, false))
				v = string(data[src.SecretKeyRef.Key])
			case src.ConfigMapKeyRef != nil:
				var data map[string][]byte
				data, err = a.configMapFiles(ctx, pod.Namespace, src.ConfigMapKeyRef.Name, nil, ptr.Deref(src.ConfigMapKeyRef.Optional, false))
				v = string(data[src.ConfigMapKeyRef.Key])
			case src.ResourceFieldRef != nil:
				v, err = resourceValue(pod, c.Name, src.ResourceFieldRef, a.allocatable())
			}
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		} else {
			v = expand(v, env)
		}
		env = setEnv(env, e.Name, v)
	}
	return env, nil
}

// setEnv sets name=value in env, replacing an earlier definition in place
// (a process's getenv would otherwise find the first).
func setEnv(env []string, name, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			env[i] = name + "=" + value
			return env
		}
	}
	return append(env, name+"="+value)
}

// expand replaces $(VAR) references with the values env defines, as
// Kubernetes does in env values, command and args: $$ is a literal $, a
// reference to an undefined variable stays as written, and so does an
// unterminated "$(".
func expand(s string, env []string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	vals := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := vals[ref[2:len(ref)-1]]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
