// Package announce seals and opens a gateway's takeover announcement: the
// message with which a gateway that has just taken its cluster's gateway
// Lease tells the other clusters' gateways, directly over the NAT discovery
// port, that it now carries its cluster's traffic. Other clusters can then
// switch their cable to it without waiting for its Endpoint to travel
// through the broker (docs/failover-without-broker.md).
//
// Authentication uses the keys the cable already has. The MAC key is derived
// with HKDF-SHA256 (RFC 5869) from the X25519 (RFC 7748) shared secret of the
// sender's and the receiver's static cable keys, the "ss" pattern of the
// Noise protocol framework; the HKDF info names the sender's and then the
// receiver's public key, so a message sealed for B cannot be passed off to B
// as one from B, nor to anyone else. The MAC is HMAC-SHA256 over the whole
// message before it.
//
// Wire format (big endian): magic "STNA", version 1, kind (1 announcement,
// 2 acknowledgement), two reserved bytes, the Lease epoch (uint32), the send
// time (int64 Unix nanoseconds), the cluster ID and the node name (each a
// length byte and at most 63 bytes, the length of a DNS label), then the
// 32-byte MAC.
//
// What this package does not decide: whether the sender is a known
// candidate of its cluster, whether the epoch is newer than the one in use,
// and how old a message may be. Those are the receiver's state (Open returns
// what it needs to check them).
package announce

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/curve25519"
)

// Kind tells an announcement from its acknowledgement.
type Kind byte

const (
	// Takeover: "this gateway now holds its cluster's Lease in Epoch".
	Takeover Kind = 1
	// Ack: "this gateway has switched to the sender of Takeover in Epoch".
	Ack Kind = 2
)

const (
	magic   = "STNA"
	version = 1
	macSize = sha256.Size
	// maxName is the longest cluster ID or node name a message carries: a
	// DNS label (RFC 1035 section 2.3.4), as cluster IDs are.
	maxName = 63
	header  = 4 + 1 + 1 + 2 + 4 + 8
	info    = "strait takeover announcement v1"
)

// KeySize is the size of a cable key (X25519, RFC 7748), in bytes.
const KeySize = curve25519.ScalarSize

// Key is a cable's X25519 key: for WireGuard the raw 32 bytes its base64
// text form encodes (wgtypes.Key converts).
type Key [KeySize]byte

// Message is what an announcement or acknowledgement says.
type Message struct {
	Kind Kind
	// ClusterID is the sender's cluster (cluster.clusterset.k8s.io).
	ClusterID string
	// Node is the sender's node, the name its Endpoint is published under.
	Node string
	// Epoch is the Lease's transition count of the sender's term
	// (Takeover), or the epoch acknowledged (Ack).
	Epoch uint32
	// Sent is the sender's clock when it sealed the message (nanosecond
	// resolution, UTC).
	Sent time.Time
}

// Errors Open returns, for errors.Is.
var (
	// ErrMalformed: not an announcement of this version, or truncated.
	ErrMalformed = errors.New("not a well-formed takeover announcement")
	// ErrBadMAC: the MAC does not match the claimed sender's key: forged,
	// corrupted, or sealed for another receiver.
	ErrBadMAC = errors.New("takeover announcement fails authentication")
	// ErrUnknownSender: the claimed sender is not a candidate the receiver
	// knows.
	ErrUnknownSender = errors.New("takeover announcement from an unknown gateway")
)

// Seal encodes m and authenticates it from the holder of private to the
// holder of the public key peer. It fails for an unknown Kind, a cluster ID
// or node name that is empty or over 63 bytes, and a low-order peer key
// (whose shared secret is all zeros, RFC 7748 section 6.1).
func Seal(m Message, private, peer Key) ([]byte, error) {
	if m.Kind != Takeover && m.Kind != Ack {
		return nil, fmt.Errorf("announce: unknown kind %d", m.Kind)
	}
	for _, s := range []string{m.ClusterID, m.Node} {
		if s == "" || len(s) > maxName {
			return nil, fmt.Errorf("announce: name %q is empty or over %d bytes", s, maxName)
		}
	}
	pub, err := curve25519.X25519(private[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("announce: own key: %w", err)
	}
	key, err := macKey(private, peer, pub, peer[:])
	if err != nil {
		return nil, err
	}
	b := make([]byte, header, header+2+len(m.ClusterID)+len(m.Node)+macSize)
	copy(b, magic)
	b[4], b[5] = version, byte(m.Kind)
	binary.BigEndian.PutUint32(b[8:], m.Epoch)
	binary.BigEndian.PutUint64(b[12:], uint64(m.Sent.UnixNano()))
	b = append(b, byte(len(m.ClusterID)))
	b = append(b, m.ClusterID...)
	b = append(b, byte(len(m.Node)))
	b = append(b, m.Node...)
	return append(b, mac(key, b)...), nil
}

// Open decodes b and checks its MAC against the public key sender returns
// for the cluster and node b claims, as the holder of private. It returns
// ErrMalformed, ErrUnknownSender (sender said no) or ErrBadMAC, each
// wrapped with what b claimed where it could be read.
func Open(b []byte, private Key, sender func(clusterID, node string) (Key, bool)) (Message, error) {
	m, body, err := decode(b)
	if err != nil {
		return Message{}, err
	}
	peer, ok := sender(m.ClusterID, m.Node)
	if !ok {
		return Message{}, fmt.Errorf("%w: %s/%s", ErrUnknownSender, m.ClusterID, m.Node)
	}
	pub, err := curve25519.X25519(private[:], curve25519.Basepoint)
	if err != nil {
		return Message{}, fmt.Errorf("announce: own key: %w", err)
	}
	key, err := macKey(private, peer, peer[:], pub)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %s/%s: %v", ErrBadMAC, m.ClusterID, m.Node, err)
	}
	if !hmac.Equal(mac(key, body), b[len(body):]) {
		return Message{}, fmt.Errorf("%w: %s/%s", ErrBadMAC, m.ClusterID, m.Node)
	}
	return m, nil
}

// decode parses b's fields; body is b without its MAC.
func decode(b []byte) (m Message, body []byte, err error) {
	if len(b) < header+2+macSize || string(b[:4]) != magic || b[4] != version {
		return Message{}, nil, ErrMalformed
	}
	m.Kind = Kind(b[5])
	if m.Kind != Takeover && m.Kind != Ack {
		return Message{}, nil, fmt.Errorf("%w: kind %d", ErrMalformed, b[5])
	}
	m.Epoch = binary.BigEndian.Uint32(b[8:])
	m.Sent = time.Unix(0, int64(binary.BigEndian.Uint64(b[12:]))).UTC()
	rest := b[header : len(b)-macSize]
	var names [2]string
	for i := range names {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 || rest[0] == 0 || rest[0] > maxName {
			return Message{}, nil, fmt.Errorf("%w: bad name field", ErrMalformed)
		}
		names[i], rest = string(rest[1:1+rest[0]]), rest[1+rest[0]:]
	}
	if len(rest) != 0 {
		return Message{}, nil, fmt.Errorf("%w: %d stray bytes", ErrMalformed, len(rest))
	}
	m.ClusterID, m.Node = names[0], names[1]
	return m, b[:len(b)-macSize], nil
}

// macKey derives the MAC key of messages from the holder of senderPub to
// the holder of receiverPub; private is this side's key, peer the other's.
func macKey(private, peer Key, senderPub, receiverPub []byte) ([]byte, error) {
	secret, err := curve25519.X25519(private[:], peer[:])
	if err != nil { // a low-order peer key: an all-zero secret
		return nil, fmt.Errorf("announce: peer key: %w", err)
	}
	return hkdf.Key(sha256.New, secret, nil, string(bytes.Join([][]byte{[]byte(info), senderPub, receiverPub}, nil)), macSize)
}

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}
