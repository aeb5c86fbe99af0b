package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// volumeRefreshPeriod is how often a pod worker writes the pod's secret,
// configMap, projected and downwardAPI volumes again from the objects they
// come from, as the kubelet does (it takes up to its sync period, a minute,
// plus its cache's TTL): a few seconds, so that a program that reloads its
// configuration from a mounted ConfigMap (CoreDNS's reload plugin) sees an
// update soon in the sandbox's tests. Each refresh reads each object once
// and writes only what changed.
const volumeRefreshPeriod = 2 * time.Second

// tokenRefreshFraction is the part of a projected service account token's
// lifetime after which a refresh asks for a new one, as the kubelet rotates
// them (at 80 %).
const tokenRefreshFraction = 0.8

// prepareVolumes materializes the pod's volumes under dir and returns the
// host path of each by name. Secrets, ConfigMaps and tokens are read with the
// node's own credentials, which the Node authorizer allows only for pods bound
// to this node. Secret, configMap, projected and downwardAPI volumes are
// written as writeVolume lays them out, so that refreshVolumes can update
// them in place.
func (a *Agent) prepareVolumes(ctx context.Context, pod *corev1.Pod, dir string, tokens *tokenCache) (map[string]string, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
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
		}
		files, err := a.volumeFiles(ctx, pod, v, tokens)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if _, err := writeVolume(vdir, files); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		paths[v.Name] = vdir
	}
	return paths, nil
}

// refreshVolumes writes the pod's secret, configMap, projected and
// downwardAPI volumes again from the current objects (and pod), changing
// only the volumes whose contents changed: their containers see the new
// files at once where they mount the volume whole, and keep the old ones
// where they mount a part of it with subPath (the mount holds the file it
// was made from). A volume that cannot be read now keeps what it has, and
// the error is returned in errs by volume name.
func (a *Agent) refreshVolumes(ctx context.Context, pod *corev1.Pod, dir string, tokens *tokenCache) (changed []string, errs map[string]error) {
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil || v.EmptyDir != nil {
			continue
		}
		files, err := a.volumeFiles(ctx, pod, v, tokens)
		if err == nil {
			var c bool
			if c, err = writeVolume(filepath.Join(dir, "volumes", v.Name), files); c {
				changed = append(changed, v.Name)
			}
		}
		if err != nil {
			if errs == nil {
				errs = map[string]error{}
			}
			errs[v.Name] = err
		}
	}
	return changed, errs
}

// volumeFiles are the files of a secret, configMap, projected or downwardAPI
// volume, by path in the volume.
func (a *Agent) volumeFiles(ctx context.Context, pod *corev1.Pod, v corev1.Volume, tokens *tokenCache) (map[string][]byte, error) {
	switch {
	case v.Secret != nil:
		return a.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, ptr.Deref(v.Secret.Optional, false))
	case v.ConfigMap != nil:
		return a.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, ptr.Deref(v.ConfigMap.Optional, false))
	case v.Projected != nil:
		return a.projectedFiles(ctx, pod, v.Name, v.Projected, tokens)
	case v.DownwardAPI != nil:
		return a.downwardAPIFiles(pod, v.DownwardAPI.Items)
	}
	return nil, fmt.Errorf("only secret, configMap, projected, downwardAPI, emptyDir and hostPath volumes run in the sandbox")
}

// dataLink is the symlink of a volume directory that names the directory
// holding the current contents, as on a kubelet: every file the pod sees is
// a symlink through it, so that swapping this one link changes all of them
// at once.
const dataLink = "..data"

// writeVolume lays files out in dir as the kubelet's atomic writer does,
// and reports whether it changed anything. The contents live in a
// directory of their own, dir/..<time>.<random>; dir/..data is a symlink to
// it; each top-level name of files is a symlink dir/<name> → ..data/<name>.
// New contents go into a new directory, ..data is swapped to it with one
// rename, so a reader sees either the old files or the new, never a mix;
// then top-level names that are gone and the old directory are removed.
// When dir already holds exactly files, nothing is written. A dir of an
// older layout (plain files) is taken over.
func writeVolume(dir string, files map[string][]byte) (bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	clean := make(map[string][]byte, len(files))
	top := map[string]bool{}
	for name, data := range files {
		rel := strings.TrimPrefix(filepath.Clean("/"+name), "/")
		if rel == "" || strings.HasPrefix(rel, "..") {
			return false, fmt.Errorf("file %q: not a path inside the volume", name)
		}
		clean[rel] = data
		top[strings.SplitN(rel, "/", 2)[0]] = true
	}
	current, err := readVolumeData(filepath.Join(dir, dataLink))
	if err == nil && sameFiles(current, clean) && linksInPlace(dir, top) {
		return false, nil
	}

	// The new contents, in a directory of their own.
	data, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(data, 0o755); err != nil {
		return false, err
	}
	for rel, b := range clean {
		p := filepath.Join(data, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return false, err
		}
	}
	// Swap ..data to them.
	tmp := filepath.Join(dir, dataLink+"_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return false, fmt.Errorf("swap %s: %w", dataLink, err)
	}
	// The names the pod sees, each through ..data.
	for name := range top {
		if err := linkThroughData(dir, name); err != nil {
			return false, err
		}
	}
	// What is no longer there: top-level names, older contents.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == dataLink || name == filepath.Base(data):
		case strings.HasPrefix(name, ".."), !top[name]:
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// linkThroughData makes dir/name the symlink ..data/name, replacing
// whatever is there (a file or directory of an older layout).
func linkThroughData(dir, name string) error {
	target := filepath.Join(dataLink, name)
	p := filepath.Join(dir, name)
	if t, err := os.Readlink(p); err == nil && t == target {
		return nil
	}
	tmp := filepath.Join(dir, dataLink+"_link_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		// A directory of an older layout: rename cannot replace it.
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		return os.Rename(tmp, p)
	}
	return nil
}

// readVolumeData reads the files under dir (following the ..data link), by
// path relative to it.
func readVolumeData(dir string) (map[string][]byte, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = b
		return nil
	})
	return out, err
}

// sameFiles reports whether a and b hold the same paths with the same
// contents.
func sameFiles(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

// linksInPlace reports whether every name of top is dir/<name> → ..data/<name>
// and dir holds no other name the pod would see.
func linksInPlace(dir string, top map[string]bool) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	seen := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		if t, err := os.Readlink(filepath.Join(dir, name)); err != nil || !top[name] || t != filepath.Join(dataLink, name) {
			return false
		}
		seen++
	}
	return seen == len(top)
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

// projectedFiles are the files of the projected volume named volume.
// Service account tokens come from tokens, which asks for a new one only
// when the one it has is due.
func (a *Agent) projectedFiles(ctx context.Context, pod *corev1.Pod, volume string, p *corev1.ProjectedVolumeSource, tokens *tokenCache) (map[string][]byte, error) {
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
			tok, err = tokens.get(volume+"/"+src.ServiceAccountToken.Path, func() (string, time.Time, error) {
				return a.serviceAccountToken(ctx, pod, src.ServiceAccountToken)
			})
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

// tokenCache keeps the service account tokens of a pod's projected
// volumes between refreshes, by volume and path. Only the pod's worker uses
// it.
type tokenCache struct {
	tokens map[string]cachedToken
}

type cachedToken struct {
	token string
	due   time.Time // when to ask for a new one
}

// get returns the token cached under key, or one from request when there is
// none or it is due (tokenRefreshFraction of its lifetime has passed).
// request returns the token and its expiry.
func (c *tokenCache) get(key string, request func() (string, time.Time, error)) (string, error) {
	now := time.Now()
	if t, ok := c.tokens[key]; ok && now.Before(t.due) {
		return t.token, nil
	}
	tok, expiry, err := request()
	if err != nil {
		return "", err
	}
	if c.tokens == nil {
		c.tokens = map[string]cachedToken{}
	}
	c.tokens[key] = cachedToken{token: tok, due: now.Add(time.Duration(tokenRefreshFraction * float64(expiry.Sub(now))))}
	return tok, nil
}

// serviceAccountToken requests a token bound to the pod through the
// TokenRequest API, as the kubelet does for projected token volumes, and
// returns it with its expiry.
func (a *Agent) serviceAccountToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, time.Time, error) {
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
		return "", time.Time{}, fmt.Errorf("token for service account %s: %w", sa, err)
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
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
