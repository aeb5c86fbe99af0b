// Package dnsref holds the reference test of stock CoreDNS's kubernetes
// plugin with its multicluster option (docs/dns-reference.md): the
// clusterset.local answer list of issue 13, run against stock CoreDNS on a
// real kube-apiserver with the objects Lighthouse writes, expecting what
// stock really answers, with a note on every case where that differs from
// KEP-1645's DNS specification.
package dnsref
