package member

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A CRD stuck in deletion says why in its Terminating condition; the
// error about it carries that.
func TestConditionsOf(t *testing.T) {
	crd := &unstructured.Unstructured{Object: map[string]any{
		"status": map[string]any{"conditions": []any{
			map[string]any{"type": "Established", "status": "True"},
			map[string]any{"type": "Terminating", "status": "True", "reason": "InstanceDeletionFailed", "message": "could not list instances"},
		}},
	}}
	want := "; Established=True; Terminating=True (InstanceDeletionFailed: could not list instances)"
	if got := conditionsOf(crd); got != want {
		t.Errorf("conditionsOf = %q, want %q", got, want)
	}
	if got := conditionsOf(&unstructured.Unstructured{Object: map[string]any{}}); got != "" {
		t.Errorf("conditionsOf of an object without status = %q, want \"\"", got)
	}
}
