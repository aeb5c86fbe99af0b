// Package deploy holds what Strait installs into clusters: the CRDs (package
// crds, generated) and the component manifests that straitctl applies.
package deploy
