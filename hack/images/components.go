package main

// component is one image: a Strait binary, the user it runs as and whether
// it carries iptables.
type component struct {
	// Name is the binary's and the image's name (strait-gateway); the image
	// is <repository>/<Name>:<version>, the name the chart (deploy/charts/strait) renders.
	Name string
	// Package is the Go package of the binary, relative to the module.
	Package string
	// User is the image config's User, uid:gid. Root only where the
	// component needs it (docs/images.md says why per component).
	User string
	// Iptables says the component runs iptables-save/iptables-restore and
	// their ip6 twins (pkg/nodenet's host kernel), so the image carries
	// Debian's iptables and the libraries it loads.
	Iptables bool
	// Ping says the image also carries iputils' ping (pingProgram), in a
	// layer over the iptables one, whose libraries it shares: only with
	// Iptables.
	Ping bool
	// OnPATH says commands exec'd in the image's containers run the binary
	// by name (straitctl verify and benchmark: kubectl exec <pod> --
	// strait-testpod connect ...; pkg/probe.TestpodBinary), so the image
	// links <pathDir>/<Name> to /<Name>, on the image's PATH.
	OnPATH bool
}

// pathDir is where an OnPATH binary is linked: a directory of the images'
// PATH (envPATH), for programs not from a package in Debian's layout.
const pathDir = "usr/local/bin"

// Users of the images. nonroot is the conventional unprivileged uid/gid of
// minimal images (distroless uses the same number), above any system range.
const (
	rootUser    = "0:0"
	nonrootUser = "65532:65532"
)

// components are the images "make images" builds: every DaemonSet that
// straitctl join applies (the chart deploy/charts/strait: gateway, route agent, Globalnet,
// lighthouse agent, DNS) and the sandbox's test workload (strait/testpod,
// which the e2e tests run). straitctl runs outside the cluster and has no
// image.
var components = []component{
	{Name: "strait-gateway", Package: "./cmd/strait-gateway", User: rootUser, Iptables: true},
	{Name: "strait-routeagent", Package: "./cmd/strait-routeagent", User: rootUser, Iptables: true},
	{Name: "strait-globalnet", Package: "./cmd/strait-globalnet", User: rootUser, Iptables: true},
	{Name: "strait-lighthouse", Package: "./cmd/strait-lighthouse", User: nonrootUser},
	{Name: "strait-dns", Package: "./cmd/strait-dns", User: nonrootUser},
	// The test workload's nodestate command reads a node's chains with
	// iptables-save (pkg/nodenet), and its ping needs raw sockets. straitctl
	// and the e2e exec it by name in its pods, and ip and ping (an
	// interface's addresses; ICMP echoes of 3000 bytes, fragmented, across
	// the cables), which the sandbox's OCI runtime finds in the image alone.
	{Name: "strait-testpod", Package: "./test/cmd/strait-testpod", User: rootUser, Iptables: true, Ping: true, OnPATH: true},
}

// iptablesPackages are the Debian packages whose files make the iptables
// programs (and iproute2's ip) work: the programs and their extensions (iptables), the libraries
// they and the extensions link (ldd of /usr/sbin/xtables-nft-multi and of
// /usr/lib/<triplet>/xtables/*.so on Debian 12), and the C library with the
// dynamic loader. Only the files the programs reach are taken from them
// (debian.go), and each package's copyright file.
var iptablesPackages = []string{
	"iptables",
	"libxtables12",
	"libnftnl11",
	"libmnl0",
	"libnetfilter-conntrack3", // libxt_connlabel.so
	"libnfnetlink0",           // libnetfilter_conntrack.so.3
	"libc6",
	// ip, which straitctl gather runs in the route agent's pod (ip rule,
	// route and link), and the libraries it links (ldd /bin/ip on Debian 12).
	"iproute2",
	"libbpf1",
	"libelf1",
	"libbsd0",
	"libmd0", // libbsd.so.0
	"libcap2",
	"zlib1g", // libbpf.so.1, libelf.so.1
}

// ipProgram is iproute2's ip, taken with the iptables programs.
const ipProgram = "/bin/ip"

// pingPackages are the Debian packages of iputils' ping beyond
// iptablesPackages, which hold the rest of what it links (ldd /bin/ping on
// Debian 12: libcap.so.2, libidn2.so.0, libunistring.so.2 and the C
// library). About 2 MB, libunistring's most of it.
var pingPackages = []string{
	"iputils-ping",
	"libidn2-0",
	"libunistring2", // libidn2.so.0
}

// pingProgram is iputils' ping. Debian's postinst gives it cap_net_raw,
// which unpacking does not: the test workload runs it as root, with
// CAP_NET_RAW among a container's default capabilities.
const pingProgram = "/bin/ping"

// iptablesPrograms are the names pkg/nodenet runs (and iptables/ip6tables for
// people looking at a node); each is a link to xtables-nft-multi, the
// nf_tables backend that Debian's iptables selects by default. The links are
// ours: Debian makes them with update-alternatives when it installs the
// package, which unpacking does not run.
var iptablesPrograms = []string{
	"iptables", "iptables-save", "iptables-restore",
	"ip6tables", "ip6tables-save", "ip6tables-restore",
}

// iptablesMulti is the program behind iptablesPrograms, in /usr/sbin.
const iptablesMulti = "xtables-nft-multi"
