// Package deploy holds what Strait installs into clusters: its Helm chart
// (charts/strait: the CRDs and the components of a member cluster, the one
// source of what straitctl join applies), the Go packages that read it
// (crds, manifests) and the tests of its monitoring files (monitoring).
package deploy
