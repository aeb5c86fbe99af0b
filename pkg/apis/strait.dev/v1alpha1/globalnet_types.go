package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Globalnet's objects (docs/globalnet.md). A cluster that joined with
// Globalnet has a global CIDR (ClusterSpec.GlobalCIDRs, allotted by the
// broker from its pool); every address below comes from it, and every
// cross-cluster flow to or from the cluster uses these addresses instead of
// its pod and Service addresses, which may overlap other clusters'.
//
// Which egress object applies to a pod: a GlobalEgressIP with a podSelector
// that selects it, else one without a podSelector in its namespace, else
// the cluster's ClusterGlobalEgressIP. Among several of one kind, the
// oldest (then the first by name) wins.

// ClusterEgressName is the name of the one ClusterGlobalEgressIP Globalnet
// uses.
const ClusterEgressName = "cluster-egress"

// Globalnet condition types and reasons.
const (
	// ConditionAllocated is True when the object has its global IPs.
	ConditionAllocated = "Allocated"
	// ReasonSuccess: the addresses are allotted.
	ReasonSuccess = "Success"
	// ReasonIPPoolExhausted: the cluster's global CIDR has fewer free
	// addresses than the object asks for; it gets none, and the others
	// keep theirs.
	ReasonIPPoolExhausted = "IPPoolExhausted"
	// ReasonNoGlobalCIDR: the cluster has no global CIDR (it joined
	// without Globalnet).
	ReasonNoGlobalCIDR = "NoGlobalCIDR"
	// ReasonSuperseded: another object of the same kind selects the same
	// pods and is older; this one gets no addresses.
	ReasonSuperseded = "Superseded"
)

// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=strait
// +kubebuilder:printcolumn:name="IPs",type=string,JSONPath=`.status.allocatedIPs`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'cluster-egress'",message="the ClusterGlobalEgressIP is named cluster-egress"

// ClusterGlobalEgressIP is the cluster's default egress: the global IPs
// that traffic from its pods, and from its nodes' host network, to other
// clusters leaves with, when no GlobalEgressIP selects the pod. There is
// one, named cluster-egress; Globalnet makes it when the cluster has a
// global CIDR.
type ClusterGlobalEgressIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ClusterGlobalEgressIPSpec `json:"spec"`
	// +optional
	Status GlobalEgressIPStatus `json:"status,omitempty"`
}

// ClusterGlobalEgressIPSpec asks for the cluster's egress addresses.
type ClusterGlobalEgressIPSpec struct {
	// NumberOfIPs is how many global IPs the cluster's traffic leaves
	// with; flows are spread over them (SNAT to a range), so more
	// addresses give more source ports to remote Services.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	// +kubebuilder:default=8
	// +optional
	NumberOfIPs *int32 `json:"numberOfIPs,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterGlobalEgressIPList is a list of ClusterGlobalEgressIPs.
type ClusterGlobalEgressIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterGlobalEgressIP `json:"items"`
}

// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories=strait
// +kubebuilder:printcolumn:name="IPs",type=string,JSONPath=`.status.allocatedIPs`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// GlobalEgressIP gives the pods it selects, in its namespace, global IPs of
// their own to leave the cluster with: a remote Service then sees these
// pods' traffic come from addresses no other workload uses (for a firewall
// or an allow list on the other side).
type GlobalEgressIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GlobalEgressIPSpec `json:"spec"`
	// +optional
	Status GlobalEgressIPStatus `json:"status,omitempty"`
}

// GlobalEgressIPSpec selects pods and asks for addresses.
type GlobalEgressIPSpec struct {
	// NumberOfIPs is how many global IPs the selected pods' traffic leaves
	// with.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	// +kubebuilder:default=1
	// +optional
	NumberOfIPs *int32 `json:"numberOfIPs,omitempty"`

	// PodSelector selects pods of the object's namespace; without it,
	// every pod of the namespace.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// GlobalEgressIPStatus is what Globalnet allotted.
type GlobalEgressIPStatus struct {
	// Conditions: Allocated.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// AllocatedIPs are the object's global IPs, consecutive, from the
	// cluster's global CIDR.
	// +kubebuilder:validation:MaxItems=20
	// +listType=atomic
	// +optional
	AllocatedIPs []IP `json:"allocatedIPs,omitempty"`
}

// +kubebuilder:object:root=true

// GlobalEgressIPList is a list of GlobalEgressIPs.
type GlobalEgressIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalEgressIP `json:"items"`
}

// GlobalIngressTarget is what a GlobalIngressIP stands for.
//
// +kubebuilder:validation:Enum=ClusterIPService;HeadlessServicePod
type GlobalIngressTarget string

const (
	// ClusterIPService: an exported Service with a ClusterIP; traffic to
	// the global IP goes to the Service (kube-proxy balances it).
	ClusterIPService GlobalIngressTarget = "ClusterIPService"
	// HeadlessServicePod: one ready pod behind an exported headless
	// Service; traffic to the global IP goes to the pod, and the pod's
	// own traffic to other clusters leaves with it.
	HeadlessServicePod GlobalIngressTarget = "HeadlessServicePod"
)

// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories=strait
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target`
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.serviceRef.name`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.podRef.name`
// +kubebuilder:printcolumn:name="IP",type=string,JSONPath=`.status.allocatedIP`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.spec.target != 'HeadlessServicePod' || has(self.spec.podRef)",message="a HeadlessServicePod GlobalIngressIP names its pod"

// GlobalIngressIP is one global IP at which other clusters reach an
// exported Service or one pod of an exported headless Service. Globalnet
// makes and deletes them, in the Service's namespace, as Services are
// exported and pods come and go; users read them.
type GlobalIngressIP struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GlobalIngressIPSpec `json:"spec"`
	// +optional
	Status GlobalIngressIPStatus `json:"status,omitempty"`
}

// GlobalIngressIPSpec names the target.
type GlobalIngressIPSpec struct {
	// Target is what the global IP stands for.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="target is immutable"
	Target GlobalIngressTarget `json:"target"`

	// ServiceRef is the exported Service, in the object's namespace.
	ServiceRef ObjectRef `json:"serviceRef"`

	// PodRef is the pod, in the object's namespace, for
	// HeadlessServicePod.
	// +optional
	PodRef *ObjectRef `json:"podRef,omitempty"`
}

// ObjectRef names an object in the referring object's namespace.
type ObjectRef struct {
	// Name is the object's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// GlobalIngressIPStatus is what Globalnet allotted.
type GlobalIngressIPStatus struct {
	// Conditions: Allocated.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// AllocatedIP is the global IP, from the cluster's global CIDR.
	// +optional
	AllocatedIP IP `json:"allocatedIP,omitempty"`
}

// +kubebuilder:object:root=true

// GlobalIngressIPList is a list of GlobalIngressIPs.
type GlobalIngressIPList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GlobalIngressIP `json:"items"`
}
