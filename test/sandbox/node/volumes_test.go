package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1",
			Labels:      map[string]string{"b": "two", "a": "one"},
			Annotations: map[string]string{"note": `say "hi"`}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
		Status: corev1.PodStatus{
			PodIP: "10.1.0.5", PodIPs: []corev1.PodIP{{IP: "10.1.0.5"}, {IP: "fd00::5"}},
			HostIP: "192.168.1.2", HostIPs: []corev1.HostIP{{IP: "192.168.1.2"}, {IP: "fd01::2"}},
		},
	}
	for path, want := range map[string]string{
		"metadata.name":                "p",
		"metadata.namespace":           "ns",
		"metadata.uid":                 "u-1",
		"metadata.labels":              "a=\"one\"\nb=\"two\"",
		"metadata.labels['b']":         "two",
		"metadata.labels['missing']":   "",
		"metadata.annotations":         `note="say \"hi\""`,
		"metadata.annotations['note']": `say "hi"`,
		"spec.nodeName":                "n1",
		"spec.serviceAccountName":      "sa",
		"status.podIP":                 "10.1.0.5",
		"status.podIPs":                "10.1.0.5,fd00::5",
		"status.hostIP":                "192.168.1.2",
		"status.hostIPs":               "192.168.1.2,fd01::2",
	} {
		if got, err := fieldValue(pod, path); err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", path, got, err, want)
		}
	}
	for _, bad := range []string{"metadata.generateName", "metadata.labelsx", "status.phase"} {
		if _, err := fieldValue(pod, bad); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestResourceValue(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "app", Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		}},
		{Name: "bare"},
	}}}
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}
	for _, tc := range []struct {
		container, res, divisor, want string
	}{
		{"app", "limits.cpu", "", "2"}, // 1.5 cores rounded up
		{"app", "limits.cpu", "1m", "1500"},
		{"app", "requests.cpu", "1m", "250"},
		{"app", "limits.memory", "", "67108864"},
		{"app", "limits.memory", "1Mi", "64"},
		{"bare", "limits.cpu", "", "4"}, // unset limits are the node's allocatable
		{"bare", "limits.memory", "1Gi", "8"},
		{"bare", "requests.memory", "", "0"},
		{"", "limits.cpu", "1m", "1500"}, // the first container
	} {
		ref := &corev1.ResourceFieldSelector{Resource: tc.res}
		if tc.divisor != "" {
			ref.Divisor = resource.MustParse(tc.divisor)
		}
		if got, err := resourceValue(pod, tc.container, ref, alloc); err != nil || got != tc.want {
			t.Errorf("%s %s/%s: got %q, %v; want %q", tc.container, tc.res, tc.divisor, got, err, tc.want)
		}
	}
	if _, err := resourceValue(pod, "nope", &corev1.ResourceFieldSelector{Resource: "limits.cpu"}, alloc); err == nil {
		t.Error("unknown container: want an error")
	}
}
