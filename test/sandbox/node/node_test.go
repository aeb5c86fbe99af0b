package node

import (
	"strings"
	"testing"
)

func TestHostVethName(t *testing.T) {
	a, b := hostVethName("5b8e7c1a-0000-4000-8000-000000000001"), hostVethName("5b8e7c1a-0000-4000-8000-000000000002")
	if len(a) > 15 || a == b || !strings.HasPrefix(a, "veth") {
		t.Errorf("names %q %q: want distinct, veth-prefixed, at most 15 characters", a, b)
	}
}
