package lighthouse

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Export is one cluster's export of a Service, as its export record says.
type Export struct {
	// Cluster is the exporting cluster's ID.
	Cluster string
	// Stored is when the broker first stored the record (the broker copy's
	// creationTimestamp, carried by syncer.BrokerCreatedAtAnnotation); zero
	// while the record has not reached the broker.
	Stored time.Time
	// Spec is the Service's properties: type, ports, session affinity and
	// its config, internalTrafficPolicy, trafficDistribution, IP families.
	// IPs are unused.
	Spec mcsv1beta1.ServiceImportSpec
	// Labels and Annotations are the ServiceExport's exportedLabels and
	// exportedAnnotations.
	Labels, Annotations map[string]string
	// Policy is the ServiceExport's TrafficPolicyAnnotation ("" is the
	// default).
	Policy TrafficPolicy
}

// Conflict is one property on which exports of a service disagree.
type Conflict struct {
	// Reason is the MCS API's reason for it (mcsv1beta1
	// ServiceExportReason*Conflict).
	Reason mcsv1beta1.ServiceExportConditionReason
	// Message names the property and the clusters.
	Message string
}

// Merged is the service the exports of one Service make together, as
// KEP-1645 ("Constraints and Conflict Resolution") says: the oldest export
// decides every property they disagree on, the ports are the union.
type Merged struct {
	// Spec is the ServiceImport's spec, without IPs.
	Spec mcsv1beta1.ServiceImportSpec
	// Labels and Annotations are the oldest export's exported ones.
	Labels, Annotations map[string]string
	// Policy is the oldest export's traffic policy.
	Policy TrafficPolicy
	// Clusters are the exporting clusters, sorted by ID.
	Clusters []string
	// Conflicts are the properties the exports disagree on, in the order
	// of conflictOrder; empty when they agree.
	Conflicts []Conflict
}

// Oldest orders exports by Stored, oldest first; an export not yet stored
// at the broker comes after every stored one; equal times go by cluster ID.
// The broker's clock stamps every record, so a member whose clock runs
// ahead gains nothing (KEP-1645 says the oldest export wins; it leaves how
// to tell the age to the implementation).
func Oldest(a, b Export) int {
	switch {
	case a.Stored.IsZero() != b.Stored.IsZero():
		if a.Stored.IsZero() {
			return 1
		}
		return -1
	case !a.Stored.Equal(b.Stored):
		return a.Stored.Compare(b.Stored)
	}
	return cmp.Compare(a.Cluster, b.Cluster)
}

// Merge merges the exports of one Service (at least one). It does not
// change exports.
func Merge(exports []Export) Merged {
	ex := slices.Clone(exports)
	slices.SortStableFunc(ex, Oldest)
	oldest := ex[0]
	m := Merged{
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:                  oldest.Spec.Type,
			SessionAffinity:       oldest.Spec.SessionAffinity,
			SessionAffinityConfig: oldest.Spec.SessionAffinityConfig.DeepCopy(),
			IPFamilies:            slices.Clone(oldest.Spec.IPFamilies),
			InternalTrafficPolicy: oldest.Spec.InternalTrafficPolicy,
			TrafficDistribution:   oldest.Spec.TrafficDistribution,
			Ports:                 []mcsv1beta1.ServicePort{},
		},
		Labels:      maps.Clone(oldest.Labels),
		Annotations: maps.Clone(oldest.Annotations),
		Policy:      oldest.Policy,
	}
	for _, e := range ex {
		m.Clusters = append(m.Clusters, e.Cluster)
	}
	slices.Sort(m.Clusters)
	m.Clusters = slices.Compact(m.Clusters)
	m.Spec.Ports = unionPorts(ex)

	differ := map[mcsv1beta1.ServiceExportConditionReason][]string{}
	for _, e := range ex[1:] {
		for _, p := range properties {
			if !p.same(oldest, e) {
				differ[p.reason] = append(differ[p.reason], e.Cluster)
			}
		}
	}
	for _, p := range properties {
		if cs := differ[p.reason]; len(cs) > 0 {
			m.Conflicts = append(m.Conflicts, Conflict{
				Reason: p.reason,
				Message: fmt.Sprintf("%s of the export%s from %s differ%s from cluster %s's, the oldest export, which wins",
					p.what, plural(len(cs)), strings.Join(cs, ", "), verbS(len(cs)), oldest.Cluster),
			})
		}
	}
	return m
}

// ConflictCondition is the Conflict condition's status, reason and message
// for m: True with the first conflict's reason and every conflict's
// message, or False with NoConflicts.
func (m Merged) ConflictCondition() (corev1.ConditionStatus, mcsv1beta1.ServiceExportConditionReason, string) {
	if len(m.Conflicts) == 0 {
		return corev1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts, "the exports of this service from clusters " + strings.Join(m.Clusters, ", ") + " agree"
	}
	var msgs []string
	for _, c := range m.Conflicts {
		msgs = append(msgs, c.Message)
	}
	return corev1.ConditionTrue, m.Conflicts[0].Reason, strings.Join(msgs, "; ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func verbS(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}

// properties are what exports must agree on, in the order their conflicts
// are reported (the first is the Conflict condition's reason).
var properties = []struct {
	reason mcsv1beta1.ServiceExportConditionReason
	what   string
	same   func(a, b Export) bool
}{
	{mcsv1beta1.ServiceExportReasonTypeConflict, "the type (ClusterSetIP or Headless)", func(a, b Export) bool { return a.Spec.Type == b.Spec.Type }},
	{mcsv1beta1.ServiceExportReasonPortConflict, "the ports", func(a, b Export) bool { return samePorts(a.Spec.Ports, b.Spec.Ports) }},
	{mcsv1beta1.ServiceExportReasonSessionAffinityConflict, "the session affinity", func(a, b Export) bool {
		return orNone(a.Spec.SessionAffinity) == orNone(b.Spec.SessionAffinity)
	}},
	{mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict, "the session affinity config", func(a, b Export) bool {
		return equality.Semantic.DeepEqual(affinityConfig(a.Spec), affinityConfig(b.Spec))
	}},
	{mcsv1beta1.ServiceExportReasonLabelsConflict, "the exported labels", func(a, b Export) bool { return maps.Equal(a.Labels, b.Labels) }},
	{mcsv1beta1.ServiceExportReasonAnnotationsConflict, "the exported annotations", func(a, b Export) bool { return maps.Equal(a.Annotations, b.Annotations) }},
	{mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict, "the internalTrafficPolicy", func(a, b Export) bool {
		return orDefault(a.Spec.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster) == orDefault(b.Spec.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster)
	}},
	{mcsv1beta1.ServiceExportReasonTrafficDistributionConflict, "the trafficDistribution", func(a, b Export) bool {
		return orDefault(a.Spec.TrafficDistribution, "") == orDefault(b.Spec.TrafficDistribution, "")
	}},
	{mcsv1beta1.ServiceExportReasonIPFamilyConflict, "the IP families", func(a, b Export) bool { return slices.Equal(a.Spec.IPFamilies, b.Spec.IPFamilies) }},
}

func orNone(a corev1.ServiceAffinity) corev1.ServiceAffinity {
	if a == "" {
		return corev1.ServiceAffinityNone
	}
	return a
}

// affinityConfig is the session affinity config that matters: none unless
// the affinity is ClientIP.
func affinityConfig(s mcsv1beta1.ServiceImportSpec) *corev1.SessionAffinityConfig {
	if s.SessionAffinity != corev1.ServiceAffinityClientIP {
		return nil
	}
	return s.SessionAffinityConfig
}

func orDefault[T comparable](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// portKey identifies a port by protocol and number; TCP when unset, as
// the Service API defaults it.
func portKey(p mcsv1beta1.ServicePort) string {
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return fmt.Sprintf("%s/%d", proto, p.Port)
}

func samePorts(a, b []mcsv1beta1.ServicePort) bool {
	norm := func(ps []mcsv1beta1.ServicePort) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name+"="+portKey(p)+"="+orDefault(p.AppProtocol, ""))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(norm(a), norm(b))
}

// unionPorts is the union of the exports' ports (oldest first): a port
// joins unless an older one has its name (a same-named port with another
// number or protocol loses to the oldest) or its protocol and number
// (under another name). The result is sorted by name, then protocol and
// number.
func unionPorts(oldestFirst []Export) []mcsv1beta1.ServicePort {
	out := []mcsv1beta1.ServicePort{}
	names, keys := map[string]bool{}, map[string]bool{}
	for _, e := range oldestFirst {
		for _, p := range e.Spec.Ports {
			if names[p.Name] || keys[portKey(p)] {
				continue
			}
			names[p.Name], keys[portKey(p)] = true, true
			if p.Protocol == "" {
				p.Protocol = corev1.ProtocolTCP
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b mcsv1beta1.ServicePort) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(portKey(a), portKey(b)))
	})
	return out
}
