package lighthouse

import (
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// What the external tests (package lighthouse_test, globalnet_test.go)
// use of this package's harness: they run the DNS plugin too, and
// lighthouse/coredns imports this package.

// TestFabric is the integration harness (newFabric) for external tests.
type TestFabric struct{ f *fabric }

// NewTestFabric is newFabric.
func NewTestFabric(t *testing.T, ids ...string) *TestFabric { return &TestFabric{newFabric(t, ids...)} }

// Client is an admin client of member id.
func (tf *TestFabric) Client(id string) client.Client { return tf.f.members[id].c }

// Config is member id's admin rest.Config.
func (tf *TestFabric) Config(id string) *rest.Config { return tf.f.members[id].env.Config }

// Helpers of lighthouse_test.go.
var (
	Eventually  = eventually
	ImportState = importState
	Conditions  = conditions
	MustCreate  = mustCreate
)
