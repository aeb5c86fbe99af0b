// Package cabledriver describes Strait's cable drivers to every part of
// Strait that does not run them: their names, what their encapsulation costs
// per address family, their tunables, how a gateway publishes its driver
// settings in its Endpoint and how it reads a remote gateway's into a Peer.
//
// It is pure (no netlink, no WireGuard, no packet filter), so that straitctl
// and the route agent can import it without linking the data plane. The
// kernel drivers in gateway/cable/<driver> register their Factory against a
// descriptor's Name (cable.Register refuses a name without a descriptor).
// Code outside a driver asks the descriptor and never switches on a name.
package cabledriver

import (
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// Header sizes in bytes, declared once for every MTU computation in Strait
// (pkg/mtu re-exports them).
const (
	IPv4Header = 20
	IPv6Header = 40
	UDPHeader  = 8
)

// Family is an IP address family of the underlay a cable runs over.
type Family int

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf is the family of addr (an IPv4-mapped IPv6 address is IPv4).
func FamilyOf(addr netip.Addr) Family {
	if addr.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// IPHeader is the size in bytes of the family's IP header (without options
// or extension headers).
func (f Family) IPHeader() int {
	if f == IPv4 {
		return IPv4Header
	}
	return IPv6Header
}

// Peer is one remote gateway as a cable driver needs it. gateway/cable
// aliases it as cable.Peer.
type Peer struct {
	// Name identifies the peer (the remote Endpoint's name).
	Name string
	// Endpoint is where the remote gateway listens.
	Endpoint netip.AddrPort
	// Subnets are routed to the peer through the cable.
	Subnets []netip.Prefix
	// PublicKey is the peer's public key (keyed drivers; WireGuard).
	PublicKey string
	// Keepalive, when set, keeps a NAT mapping open (drivers that can).
	Keepalive time.Duration
	// NextHops are the remote gateway's addresses on its own cable device
	// (its Endpoint's health-check IPs, one per family), for drivers whose
	// device resolves neighbours: the VXLAN cable routes the peer's IPv6
	// subnets via the IPv6 one, since IPv6 has no proxy neighbour
	// discovery for a whole subnet as IPv4 has proxy ARP.
	NextHops []netip.Addr
}

// Settings are a gateway's own cable settings: what its Endpoint publishes
// and its driver is opened with, besides the device name, MTU and route
// table. Each driver reads the fields it has use for.
type Settings struct {
	// Port is the UDP port the cable listens on (1..65535).
	Port int32
	// VNI is the VXLAN network identifier (drivers that use one).
	VNI int32
	// PrivateKey is the node's private key, base64 (keyed drivers). It is
	// never logged: String redacts it.
	PrivateKey string
}

// String renders the settings for logs and golden texts, with the private
// key redacted (only whether there is one shows).
func (s Settings) String() string {
	key := "none"
	if s.PrivateKey != "" {
		key = "(redacted)"
	}
	return fmt.Sprintf("port %d vni %d private-key %s", s.Port, s.VNI, key)
}

// Param is one of a driver's tunables, offered as a gateway flag.
type Param struct {
	// Flag is the flag's name without dashes ("wireguard-port").
	Flag string
	// Default is the value without the flag.
	Default int32
	// Usage is the flag's help text.
	Usage string
	// Field is the Settings field the flag sets.
	Field func(*Settings) *int32
}

// KeyScheme is how a keyed driver's per-node private key is made and what
// of it is published. The gateway keeps the private key in a Secret of its
// namespace named SecretPrefix+node; it never leaves the cluster.
type KeyScheme struct {
	// SecretPrefix starts the name of the Secret holding a node's key.
	SecretPrefix string
	// Generate makes a new private key, base64.
	Generate func() (string, error)
	// Public derives the public key, base64, from a private key; the error
	// never carries key material.
	Public func(private string) (string, error)
}

// Descriptor is what Strait knows of a cable driver outside the driver.
type Descriptor struct {
	// Name is the driver's name, as in EndpointSpec.CableDriver and the
	// --cable-driver flags.
	Name v1.CableDriver
	// Summary says in a few words what the driver is, for help texts.
	Summary string
	// Encapsulation is what the driver adds to a packet beyond the outer IP
	// header, in bytes: the UDP header and the driver's own header, inner
	// headers and trailer.
	Encapsulation int
	// Params are the driver's tunables (its port, a VNI), each a flag.
	Params []Param
	// Key is the driver's key scheme; nil for a driver without keys.
	Key *KeyScheme
	// Validate checks a gateway's own settings before the driver is
	// opened with them or they are published.
	Validate func(s Settings) error
	// Fill writes the driver's part of a local Endpoint's spec (its
	// spec.wireguard or spec.vxlan) from the settings; publicKey is the
	// key scheme's public key ("" for a driver without keys).
	Fill func(spec *v1.EndpointSpec, s Settings, publicKey string)
	// ReadPeer reads the driver's part of a remote gateway's Endpoint
	// (remote) into p, which arrives with its Name, Subnets, Keepalive and
	// the address of its Endpoint: it sets the Endpoint's port and the
	// driver's own fields (PublicKey). It returns an error saying why when
	// the remote gateway cannot be a peer of this one (local): no
	// configuration for the driver, a VNI that differs.
	ReadPeer func(local, remote *v1.EndpointSpec, p *Peer) error
}

// Overhead is what the driver adds to a packet over an underlay of the
// given family, in bytes, outer IP header included.
func (d Descriptor) Overhead(f Family) int { return f.IPHeader() + d.Encapsulation }

// Defaults are the settings every Param's default gives.
func (d Descriptor) Defaults() Settings {
	var s Settings
	for _, p := range d.Params {
		*p.Field(&s) = p.Default
	}
	return s
}

// AddFlags defines the driver's Params as flags of fs that set s.
func (d Descriptor) AddFlags(fs *flag.FlagSet, s *Settings) {
	for _, p := range d.Params {
		v := p.Field(s)
		*v = p.Default
		fs.Var((*int32Value)(v), p.Flag, p.Usage+" ("+string(d.Name)+" only)")
	}
}

// int32Value is an int32 flag.
type int32Value int32

func (v *int32Value) String() string { return strconv.Itoa(int(*v)) }

func (v *int32Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 32)
	if err != nil {
		return fmt.Errorf("not a 32-bit integer: %w", err)
	}
	*v = int32Value(n)
	return nil
}

var (
	mu       sync.Mutex
	registry = map[v1.CableDriver]Descriptor{}
)

// Register makes a descriptor known. It panics on a second descriptor of
// the same name, or one missing its functions: both are programming errors
// found at start.
func Register(d Descriptor) {
	mu.Lock()
	defer mu.Unlock()
	if d.Name == "" || d.Validate == nil || d.Fill == nil || d.ReadPeer == nil {
		panic(fmt.Sprintf("cabledriver: incomplete descriptor %q", d.Name))
	}
	if _, dup := registry[d.Name]; dup {
		panic("cabledriver: driver " + string(d.Name) + " described twice")
	}
	registry[d.Name] = d
}

// Lookup returns the descriptor of the named driver.
func Lookup(name v1.CableDriver) (Descriptor, bool) {
	mu.Lock()
	defer mu.Unlock()
	d, ok := registry[name]
	return d, ok
}

// UnknownDriverError is Get's error for a name no descriptor has.
type UnknownDriverError struct {
	Name  v1.CableDriver
	Known []string
}

func (e *UnknownDriverError) Error() string {
	return fmt.Sprintf("unknown cable driver %q: use %s", e.Name, strings.Join(e.Known, " or "))
}

// Get returns the descriptor of the named driver, or an
// *UnknownDriverError that lists the known ones.
func Get(name v1.CableDriver) (Descriptor, error) {
	if d, ok := Lookup(name); ok {
		return d, nil
	}
	return Descriptor{}, &UnknownDriverError{Name: name, Known: Names()}
}

// Names lists the described drivers, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range registry {
		out = append(out, string(n))
	}
	slices.Sort(out)
	return out
}

// All returns every descriptor, sorted by name.
func All() []Descriptor {
	var out []Descriptor
	for _, n := range Names() {
		d, _ := Lookup(v1.CableDriver(n))
		out = append(out, d)
	}
	return out
}

// MaxOverhead is the largest overhead of any described driver over the
// family: the safe figure when the driver is not known.
func MaxOverhead(f Family) int {
	m := 0
	for _, d := range All() {
		m = max(m, d.Overhead(f))
	}
	return m
}

// validPort checks a UDP port.
func validPort(what string, p int32) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%s %d out of range 1..65535", what, p)
	}
	return nil
}
