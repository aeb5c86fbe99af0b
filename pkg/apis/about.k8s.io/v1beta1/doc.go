// Package v1beta1 defines the ClusterProperty type of the about.k8s.io group
// (KEP-2149, "ClusterId for ClusterSet identification"). Strait stores a
// cluster's ID in the ClusterProperty named cluster.clusterset.k8s.io.
//
// The upstream module sigs.k8s.io/about-api is not served by the Go module
// proxy, so Strait defines the same small, standard schema here and generates
// the CRD from it with controller-gen like its own types.
//
// +kubebuilder:object:generate=true
// +groupName=about.k8s.io
package v1beta1
