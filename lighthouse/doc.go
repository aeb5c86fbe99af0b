// Package lighthouse implements multi-cluster service discovery (the MCS API):
// it turns ServiceExports into ServiceImports and EndpointSlices in every
// member cluster, and its CoreDNS plugin answers
// <service>.<namespace>.svc.clusterset.local as KEP-1645 specifies.
package lighthouse
