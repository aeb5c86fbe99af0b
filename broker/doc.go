// Package broker holds the broker side of Strait: installing the broker
// namespace with its RBAC and write-isolation policy, and the syncer that
// copies label-selected objects between a member's strait-system namespace and
// the broker, with exactly one owning cluster writing each object.
package broker
