package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestWorkloads runs the public tool images the way users and the public
// test suites do, and checks the kubelet behaviours they rely on: containers
// of a pod share its network namespace, init containers run first and in
// order, image entrypoints and commands follow Kubernetes' override rules,
// the downward API fills in the pod's addresses and metadata, an unknown
// image says so, and deleting a namespace finishes.
func TestWorkloads(t *testing.T) {
	need(t)
	cs := kubeClient(t, "c1")
	ctx := context.Background()
	ns := testNamespace(t, cs)
	grace := ptr.To(int64(1))

	duo := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "duo"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: grace,
			Containers: []corev1.Container{
				{Name: "echo", Image: "alpine/socat", Args: []string{"TCP-LISTEN:9000,bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"}},
				{Name: "client", Image: "nicolaka/netshoot:latest", Command: []string{"sleep", "86400"}},
			},
		},
	}
	socatLabels := map[string]string{"app": "socat"}
	socat := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "socat", Labels: socatLabels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: grace,
			Containers: []corev1.Container{
				{Name: "tcp", Image: "docker.io/alpine/socat:1.8.0.3", Args: []string{"TCP-LISTEN:7000,fork,reuseaddr", "EXEC:cat"}},
				{Name: "udp", Image: "docker.io/alpine/socat:1.8.0.3", Args: []string{"UDP-LISTEN:7001,fork,reuseaddr", "EXEC:cat"}},
			},
		},
	}
	initPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "init", Labels: map[string]string{"tier": "demo"}, Annotations: map[string]string{"note": "hello"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: grace,
			InitContainers: []corev1.Container{
				{Name: "first", Image: "busybox", Command: []string{"sh", "-c", "sleep 1; echo first >> /work/order"}, VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}},
				{Name: "second", Image: "busybox", Command: []string{"sh", "-c", "echo second >> /work/order"}, VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}},
			},
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "busybox:1.36",
				Args:  []string{"sh", "-c", `cat /work/order; echo "ips=$POD_IPS host=$HOST_IP sa=$SA"; cat /etc/podinfo/labels /etc/podinfo/annotations; echo; sleep 86400`},
				Env: []corev1.EnvVar{
					{Name: "POD_IPS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIPs"}}},
					{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
					{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: "/work"}, {Name: "podinfo", MountPath: "/etc/podinfo"}},
			}},
			Volumes: []corev1.Volume{
				{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
				}}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "socat"},
		Spec: corev1.ServiceSpec{
			Selector: socatLabels,
			Ports: []corev1.ServicePort{
				{Name: "tcp", Port: 7000, TargetPort: intstr.FromInt32(7000), Protocol: corev1.ProtocolTCP},
				{Name: "udp", Port: 7001, TargetPort: intstr.FromInt32(7001), Protocol: corev1.ProtocolUDP},
			},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createRunning(t, "c1", cs, ns, duo, socat, initPod, toolPod("tools"))

	t.Run("containers share localhost", func(t *testing.T) {
		r := kubectl(t, "c1", "exec", "-n", ns, "duo", "-c", "client", "--", "sh", "-c", "echo via-localhost | nc -N -w 3 127.0.0.1 9000")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "via-localhost" {
			t.Fatalf("client to echo on 127.0.0.1:9000 in one pod: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("socat through a service", func(t *testing.T) {
		r := kubectl(t, "c1", "exec", "-n", ns, "tools", "--", "sh", "-c", "echo hello-tcp | nc -N -w 3 socat 7000")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "hello-tcp" {
			t.Fatalf("TCP to socat:7000: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
		r = kubectl(t, "c1", "exec", "-n", ns, "tools", "--", "sh", "-c", "echo hello-udp | nc -u -w 2 socat."+ns+".svc.cluster.local 7001")
		if strings.TrimSpace(r.stdout) != "hello-udp" {
			t.Fatalf("UDP to socat:7001: exit %d, %q %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("init containers and downward API", func(t *testing.T) {
		out := mustKubectl(t, "c1", "logs", "-n", ns, "init")
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, "init", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"first\nsecond\n",
			"ips=" + pod.Status.PodIP + " host=" + pod.Status.HostIP + " sa=default",
			`tier="demo"`,
			`note="hello"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("init pod's log lacks %q:\n%s", want, out)
			}
		}
		if n := len(pod.Status.InitContainerStatuses); n != 2 {
			t.Fatalf("%d init container statuses, want 2", n)
		}
		for _, s := range pod.Status.InitContainerStatuses {
			if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
				t.Errorf("init container %s: %+v, want terminated with 0", s.Name, s.State)
			}
		}
	})

	t.Run("command overrides the entrypoint", func(t *testing.T) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "once"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "c", Image: "alpine/socat", Command: []string{"sh", "-c", "echo $((6*7))"}}},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "pod once Succeeded", func(ctx context.Context) (bool, error) {
			got, err := cs.CoreV1().Pods(ns).Get(ctx, "once", metav1.GetOptions{})
			if err == nil && got.Status.Phase == corev1.PodFailed {
				t.Fatalf("pod once failed: %+v", got.Status.ContainerStatuses)
			}
			return err == nil && got.Status.Phase == corev1.PodSucceeded, nil
		})
		if out := strings.TrimSpace(mustKubectl(t, "c1", "logs", "-n", ns, "once")); out != "42" {
			t.Fatalf("sh -c 'echo $((6*7))' printed %q", out)
		}
	})

	t.Run("unknown image", func(t *testing.T) {
		image := "registry.example/no-such-image:1.0"
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "unknown"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "ErrImagePull naming the image", func(ctx context.Context) (bool, error) {
			got, err := cs.CoreV1().Pods(ns).Get(ctx, "unknown", metav1.GetOptions{})
			if err != nil || len(got.Status.ContainerStatuses) == 0 {
				return false, nil
			}
			w := got.Status.ContainerStatuses[0].State.Waiting
			return w != nil && w.Reason == "ErrImagePull" && strings.Contains(w.Message, image), nil
		})
	})

	t.Run("namespace deletion finishes", func(t *testing.T) {
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 2*time.Minute, "namespace "+ns+" gone", func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		t.Logf("namespace %s gone %s after its deletion", ns, time.Since(start).Round(100*time.Millisecond))
		// No pod of any namespace is stuck terminating.
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil && time.Since(p.DeletionTimestamp.Time) > time.Minute {
				t.Errorf("pod %s/%s has been terminating since %s", p.Namespace, p.Name, p.DeletionTimestamp)
			}
		}
	})
}
