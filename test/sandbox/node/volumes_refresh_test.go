package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestVolumesFollowTheirObjects runs a pod that mounts a ConfigMap and a
// Secret whole, a projected volume of both, and one key of the ConfigMap
// with subPath, then changes both objects: as on a kubelet, the whole
// mounts show the new contents within a few seconds, and the subPath mount
// keeps the old. The test reads the files as the container sees them,
// through /proc/<pid>/root.
func TestVolumesFollowTheirObjects(t *testing.T) {
	f := newAgentFixture(t)
	ctx := context.Background()
	cms, secrets := f.client.CoreV1().ConfigMaps("default"), f.client.CoreV1().Secrets("default")
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"},
		Data: map[string]string{"Corefile": "version 1\n", "gone-later": "x"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cred"},
		Data: map[string][]byte{"token": []byte("old-token")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	confDir, credDir, projDir := filepath.Join(f.mnt, "conf"), filepath.Join(f.mnt, "cred"), filepath.Join(f.mnt, "proj")
	pinned := filepath.Join(f.mnt, "pinned-Corefile")
	f.create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}},
				{Name: "cred", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "cred"}}},
				{Name: "proj", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"},
						Items: []corev1.KeyToPath{{Key: "Corefile", Path: "etc/Corefile"}}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cred"}}},
				}}}},
			},
			Containers: []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"sleep", "600"},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "conf", MountPath: confDir, ReadOnly: true},
					{Name: "cred", MountPath: credDir, ReadOnly: true},
					{Name: "proj", MountPath: projDir, ReadOnly: true},
					{Name: "conf", MountPath: pinned, SubPath: "Corefile", ReadOnly: true},
				}}},
		},
	})
	p := f.waitPod(t, "reader", "Running", 30*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && p.Status.ContainerStatuses[0].State.Running != nil
	})
	var pid int
	if _, err := fmt.Sscanf(p.Status.ContainerStatuses[0].ContainerID, "strait-sandbox://%d", &pid); err != nil {
		t.Fatalf("container ID %q: %v", p.Status.ContainerStatuses[0].ContainerID, err)
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	// read returns a file as the container sees it ("" when it has none).
	read := func(path string) string {
		b, _ := os.ReadFile(root + path)
		return string(b)
	}
	// see waits until the container sees want, at most timeout, and says
	// what it saw instead.
	see := func(what string, want map[string]string, timeout time.Duration) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
			for path, w := range want {
				if read(path) != w {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			for path, w := range want {
				if got := read(path); got != w {
					t.Errorf("%s in the container: %q, want %q", path, got, w)
				}
			}
			t.Fatalf("%s: %v", what, err)
		}
	}
	// The container mounts its volumes as it starts, after it counts as
	// running.
	see("the container's volumes", map[string]string{
		confDir + "/Corefile":     "version 1\n",
		confDir + "/gone-later":   "x",
		credDir + "/token":        "old-token",
		projDir + "/etc/Corefile": "version 1\n",
		projDir + "/token":        "old-token",
		pinned:                    "version 1\n",
	}, 10*time.Second)

	cm.Data = map[string]string{"Corefile": "version 2\n", "added": "y"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret.Data = map[string][]byte{"token": []byte("new-token")}
	if _, err := secrets.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	updated := map[string]string{
		confDir + "/Corefile":     "version 2\n",
		confDir + "/gone-later":   "",
		confDir + "/added":        "y",
		credDir + "/token":        "new-token",
		projDir + "/etc/Corefile": "version 2\n",
		projDir + "/token":        "new-token",
	}
	start := time.Now()
	// The bound is generous: a kubelet takes up to a minute and more; the
	// agent refreshes every volumeRefreshPeriod.
	see("the volumes after their objects changed", updated, 15*time.Second)
	t.Logf("the container saw the new contents %s after the updates", time.Since(start).Round(time.Millisecond))
	if got := read(pinned); got != "version 1\n" {
		t.Errorf("the subPath mount shows %q: a subPath mount keeps what it had at the container's start", got)
	}
}

// TestWriteVolume lays a volume out, rewrites it with the same and with
// other contents, and takes over a directory of plain files.
func TestWriteVolume(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	// layout lists what a reader of dir sees: every file by path, through
	// the symlinks.
	layout := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..") {
				continue
			}
			if e.Type()&os.ModeSymlink == 0 {
				t.Errorf("%s is not a symlink through %s", e.Name(), dataLink)
			}
			_ = filepath.WalkDir(filepath.Join(dir, e.Name()), func(p string, d os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if st, err := os.Stat(p); err == nil && st.IsDir() {
					if p != filepath.Join(dir, e.Name()) || d.Type()&os.ModeSymlink == 0 {
						return nil
					}
					// A symlink to a directory: walk it.
					sub, _ := readVolumeData(p)
					for k, v := range sub {
						out[filepath.Join(e.Name(), k)] = string(v)
					}
					return nil
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Error(err)
				}
				rel, _ := filepath.Rel(dir, p)
				out[rel] = string(b)
				return nil
			})
		}
		return out
	}
	dataDirs := func() int {
		entries, _ := os.ReadDir(dir)
		n := 0
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..") && e.Name() != dataLink {
				n++
			}
		}
		return n
	}
	write := func(files map[string]string, wantChanged bool) {
		t.Helper()
		in := map[string][]byte{}
		for k, v := range files {
			in[k] = []byte(v)
		}
		changed, err := writeVolume(dir, in)
		if err != nil {
			t.Fatal(err)
		}
		if changed != wantChanged {
			t.Errorf("changed=%v, want %v", changed, wantChanged)
		}
		if got := layout(); fmt.Sprint(got) != fmt.Sprint(files) {
			t.Errorf("the volume shows %v, want %v", got, files)
		}
		if n := dataDirs(); n != 1 {
			t.Errorf("%d contents directories, want 1 (the old ones removed)", n)
		}
	}

	// An older layout: plain files, a directory, a name that goes.
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"Corefile": "old", "sub/a": "old a", "stale": "s"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v1 := map[string]string{"Corefile": "version 1", "sub/a": "a", "sub/deeper/b": "b"}
	write(v1, true)
	write(v1, false)
	// A reader holding the old file (as a subPath mount does) keeps it.
	held, err := os.Open(filepath.Join(dir, "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	write(map[string]string{"Corefile": "version 2", "sub/a": "a"}, true)
	write(map[string]string{"Corefile": "version 2", "new": "n"}, true)
	if b, err := io.ReadAll(held); err != nil || string(b) != "version 1" {
		t.Errorf("the file held open reads %q, %v; want the old contents", b, err)
	}
	write(map[string]string{}, true)
	write(map[string]string{}, false)
	// Names of the layout's own are refused (the API refuses keys that
	// start with ".."); a path is confined to the volume.
	if _, err := writeVolume(dir, map[string][]byte{dataLink: nil}); err == nil {
		t.Errorf("a file named %s: want an error", dataLink)
	}
	if _, err := writeVolume(dir, map[string][]byte{"../escape": []byte("e")}); err != nil {
		t.Fatal(err)
	}
	if got := layout(); fmt.Sprint(got) != "map[escape:e]" {
		t.Errorf("../escape written as %v, want confined to the volume", got)
	}
}

// TestTokenCache: a refresh reuses a projected token until most of its
// lifetime has passed.
func TestTokenCache(t *testing.T) {
	var c tokenCache
	n := 0
	request := func(lifetime time.Duration) func() (string, time.Time, error) {
		return func() (string, time.Time, error) {
			n++
			return fmt.Sprintf("token-%d", n), time.Now().Add(lifetime), nil
		}
	}
	for i, want := range []string{"token-1", "token-1"} {
		if got, err := c.get("v/token", request(time.Hour)); err != nil || got != want {
			t.Errorf("get %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if got, _ := c.get("other/token", request(time.Hour)); got != "token-2" {
		t.Errorf("another path: %q, want its own token", got)
	}
	// A token with no lifetime left is due at once.
	if got, _ := c.get("short/token", request(0)); got != "token-3" {
		t.Errorf("got %q", got)
	}
	if got, _ := c.get("short/token", request(time.Hour)); got != "token-4" {
		t.Errorf("a due token: %q, want a new one", got)
	}
}
