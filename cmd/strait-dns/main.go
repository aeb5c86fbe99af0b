// Command strait-dns is Strait's DNS server for the clusterset zone: a
// CoreDNS build with Lighthouse's plugin (lighthouse/coredns) and only the
// plugins its Corefile uses. Flags are CoreDNS's (-conf FILE, -dns.port,
// -version ...); deploy/charts/strait/templates/dns.yaml runs it with
// -conf /etc/strait-dns/Corefile.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins compiled in; each registers itself with CoreDNS.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"strait.dev/strait/lighthouse/coredns"
)

func main() {
	dnsserver.Directives = coredns.Directives
	coremain.Run()
}
