package announce

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
)

type party struct{ private, public Key }

func newParty(t testing.TB) party {
	t.Helper()
	var p party
	if _, err := rand.Read(p.private[:]); err != nil {
		t.Fatal(err)
	}
	pub, err := curve25519.X25519(p.private[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(p.public[:], pub)
	return p
}

// knows is a receiver's candidates: cluster/node → public key.
func knows(m map[string]Key) func(string, string) (Key, bool) {
	return func(c, n string) (Key, bool) { k, ok := m[c+"/"+n]; return k, ok }
}

func TestSealOpen(t *testing.T) {
	a, b, c := newParty(t), newParty(t), newParty(t)
	sent := time.Date(2026, 12, 2, 1, 2, 3, 456789, time.UTC)
	m := Message{Kind: Takeover, ClusterID: "c1", Node: "c1-n2", Epoch: 7, Sent: sent}
	sealed, err := Seal(m, a.private, b.public)
	if err != nil {
		t.Fatal(err)
	}
	candidates := knows(map[string]Key{"c1/c1-n2": a.public})

	got, err := Open(sealed, b.private, candidates)
	if err != nil || got != m {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, m)
	}

	// The acknowledgement goes the other way under the same scheme.
	ack, err := Seal(Message{Kind: Ack, ClusterID: "c2", Node: "c2-n1", Epoch: 7, Sent: sent}, b.private, a.public)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(ack, a.private, knows(map[string]Key{"c2/c2-n1": b.public})); err != nil || got.Kind != Ack || got.Epoch != 7 {
		t.Fatalf("Open(ack) = %+v, %v", got, err)
	}

	for name, tc := range map[string]struct {
		b       []byte
		private Key
		sender  func(string, string) (Key, bool)
		want    error
	}{
		"a flipped epoch bit":           {flip(sealed, 11), b.private, candidates, ErrBadMAC},
		"a flipped MAC bit":             {flip(sealed, len(sealed)-1), b.private, candidates, ErrBadMAC},
		"another receiver":              {sealed, c.private, candidates, ErrBadMAC},
		"the sender's key is another's": {sealed, b.private, knows(map[string]Key{"c1/c1-n2": c.public}), ErrBadMAC},
		"an unknown sender":             {sealed, b.private, knows(nil), ErrUnknownSender},
		"reflected back to its sender":  {sealed, a.private, knows(map[string]Key{"c1/c1-n2": b.public}), ErrBadMAC},
		"truncated":                     {sealed[:len(sealed)-1], b.private, candidates, ErrMalformed},
		"only a header":                 {sealed[:header], b.private, candidates, ErrMalformed},
		"another magic":                 {append([]byte("STND"), sealed[4:]...), b.private, candidates, ErrMalformed},
		"a name length past the end":    {setByte(sealed, header, 200), b.private, candidates, ErrMalformed},
		"an unknown kind":               {setByte(sealed, 5, 9), b.private, candidates, ErrMalformed},
		"a NAT discovery request":       {[]byte("STND\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"), b.private, candidates, ErrMalformed},
		"an empty datagram":             {nil, b.private, candidates, ErrMalformed},
		"shorter than any message":      {sealed[:header+1+2], b.private, candidates, ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Open(tc.b, tc.private, tc.sender); !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSealRefuses(t *testing.T) {
	a, b := newParty(t), newParty(t)
	long := string(make([]byte, 64))
	for name, m := range map[string]Message{
		"unknown kind":      {Kind: 3, ClusterID: "c1", Node: "n"},
		"empty cluster":     {Kind: Takeover, Node: "n"},
		"node over a label": {Kind: Takeover, ClusterID: "c1", Node: long},
	} {
		if _, err := Seal(m, a.private, b.public); err == nil {
			t.Errorf("%s: Seal succeeded", name)
		}
	}
	// A low-order point (here zero) gives an all-zero shared secret.
	if _, err := Seal(Message{Kind: Takeover, ClusterID: "c1", Node: "n"}, a.private, Key{}); err == nil {
		t.Error("Seal to the zero key succeeded")
	}
}

func FuzzOpen(f *testing.F) {
	a, b := newParty(f), newParty(f)
	sealed, err := Seal(Message{Kind: Takeover, ClusterID: "c1", Node: "n1", Epoch: 1, Sent: time.Now()}, a.private, b.public)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add([]byte("STNA"))
	candidates := knows(map[string]Key{"c1/n1": a.public})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Open(data, b.private, candidates)
		if err == nil && (m.ClusterID != "c1" || m.Node != "n1") {
			t.Fatalf("opened a message from an unknown sender: %+v", m)
		}
	})
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

func setByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}
