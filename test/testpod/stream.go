package testpod

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
)

// MaxStreamBytes is the largest n /bytes serves: 1 GiB is enough to fill
// any tunnel for seconds, while the checksum (the stream is generated once
// to hash it, once to send it) still takes only a second or two.
const MaxStreamBytes = 1 << 30

// DefaultSeed is the seed /bytes uses when the request names none.
const DefaultSeed = 1

// streamChunk is how much of the stream is generated per step: large enough
// that per-call overhead vanishes, small enough to stay in cache.
const streamChunk = 64 << 10

// NewStream returns the deterministic pseudo-random byte stream /bytes
// serves for seed: the output of math/rand/v2's ChaCha8 keyed with seed as
// 8 little-endian bytes followed by 24 zero bytes. It never ends; the
// reader never fails. Anyone with the seed can regenerate the bytes, so a
// client can verify a transfer without the server buffering it.
func NewStream(seed uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	return rand.NewChaCha8(key)
}

// StreamSHA256 returns the hex SHA-256 of the first n bytes of the stream
// for seed, the value /bytes sends as X-Sha256.
func StreamSHA256(n int64, seed uint64) string {
	sum, _ := streamSHA256(context.Background(), n, seed)
	return sum
}

// streamSHA256 is StreamSHA256 that gives up when ctx ends, so a client
// that hangs up does not leave the server hashing a gigabyte for nobody.
func streamSHA256(ctx context.Context, n int64, seed uint64) (string, error) {
	h := sha256.New()
	src := NewStream(seed)
	buf := make([]byte, streamChunk)
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		b := buf[:min(n, int64(len(buf)))]
		_, _ = src.Read(b) // ChaCha8 always fills b
		h.Write(b)
		n -= int64(len(b))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
