package cabledriver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/curve25519"

	v1 "strait.dev/strait/pkg/apis/strait.dev/v1alpha1"
)

// WireGuard's figures.
const (
	// WireGuardHeader is WireGuard's data message header (16 bytes) and
	// authentication tag (16).
	WireGuardHeader = 32
	// DefaultWireGuardPort is the customary 4500-range port, as Submariner
	// uses it: open in most gateway firewalls already.
	DefaultWireGuardPort = 4500
)

// WireGuard describes the encrypted WireGuard cable.
var WireGuard = Descriptor{
	Name:          v1.CableDriverWireGuard,
	Summary:       "encrypted WireGuard tunnel",
	Encapsulation: UDPHeader + WireGuardHeader,
	Params: []Param{{Flag: "wireguard-port", Default: DefaultWireGuardPort, Usage: "WireGuard UDP `port`",
		Field: func(s *Settings) *int32 { return &s.Port }}},
	Key: &KeyScheme{SecretPrefix: "strait-wireguard-", Generate: generateCurve25519, Public: publicCurve25519},
	Validate: func(s Settings) error {
		return validPort("WireGuard port", s.Port)
	},
	Fill: func(spec *v1.EndpointSpec, s Settings, publicKey string) {
		spec.WireGuard = &v1.WireGuardConfig{PublicKey: publicKey, Port: s.Port}
	},
	ReadPeer: func(_, remote *v1.EndpointSpec, p *Peer) error {
		if remote.WireGuard == nil {
			return errors.New("no WireGuard configuration")
		}
		if _, err := decodeKey(remote.WireGuard.PublicKey); err != nil {
			return fmt.Errorf("WireGuard public key: %w", err)
		}
		if err := validPort("WireGuard port", remote.WireGuard.Port); err != nil {
			return err
		}
		p.PublicKey = remote.WireGuard.PublicKey
		p.Endpoint = withPort(p, remote.WireGuard.Port)
		return nil
	},
}

func init() { Register(WireGuard) }

// generateCurve25519 makes a Curve25519 private key, clamped as wg genkey
// does.
func generateCurve25519() (string, error) {
	var k [curve25519.ScalarSize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return base64.StdEncoding.EncodeToString(k[:]), nil
}

// publicCurve25519 is wg pubkey.
func publicCurve25519(private string) (string, error) {
	k, err := decodeKey(private)
	if err != nil {
		return "", err
	}
	pub, err := curve25519.X25519(k, curve25519.Basepoint)
	if err != nil {
		return "", errors.New("not a usable Curve25519 private key")
	}
	return base64.StdEncoding.EncodeToString(pub), nil
}

// decodeKey decodes a base64 32-byte key; its error never echoes the key.
func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != curve25519.ScalarSize {
		return nil, errors.New("not 32 bytes in base64")
	}
	return k, nil
}
