package coredns

// Directives is the plugin chain's order in strait-dns (cmd/strait-dns sets
// dnsserver.Directives to it): CoreDNS's plugin.cfg order for the stock
// plugins compiled in, with lighthouse where CoreDNS puts kubernetes, after
// every plugin that observes or shapes a request.
var Directives = []string{
	"reload",
	"bind",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	pluginName,
}
