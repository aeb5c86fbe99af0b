// Package v1alpha1 holds Strait's API types in the strait.dev group: the
// Cluster and Endpoint records that member clusters exchange through the
// broker, and the status-only Gateway that each gateway node reports.
//
// Addresses and prefixes are strings in the forms net/netip parses and prints
// (canonical text, either family); the CRD schema rejects anything else, so a
// controller that reads these objects can parse them without surprises.
//
// +kubebuilder:object:generate=true
// +groupName=strait.dev
package v1alpha1
