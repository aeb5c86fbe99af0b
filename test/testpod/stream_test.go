package testpod

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
)

// TestStreamGolden pins the stream's definition: clients outside this
// package (other languages, older binaries) regenerate it from the seed.
func TestStreamGolden(t *testing.T) {
	for _, tc := range []struct {
		seed uint64
		want string // first 16 bytes, hex
	}{
		{seed: 1, want: "6ae6783f4fbde91b6eb88b73a48ed247"},
		{seed: 2, want: "1490066b778935b0bb4925e3db151c5b"},
	} {
		b := make([]byte, 16)
		if _, err := io.ReadFull(NewStream(tc.seed), b); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != tc.want {
			t.Errorf("NewStream(%d) starts %s, want %s", tc.seed, got, tc.want)
		}
	}
}

// TestStreamSHA256 checks that the announced checksum is that of the bytes
// sent, however they are read.
func TestStreamSHA256(t *testing.T) {
	const n = 3*streamChunk + 12345 // not a multiple of any buffer size
	for _, seed := range []uint64{0, 1, 1 << 63} {
		h := sha256.New()
		src := NewStream(seed)
		buf := make([]byte, 999)
		for left := int64(n); left > 0; {
			b := buf[:min(left, int64(len(buf)))]
			if _, err := io.ReadFull(src, b); err != nil {
				t.Fatal(err)
			}
			h.Write(b)
			left -= int64(len(b))
		}
		if got, want := StreamSHA256(n, seed), hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("StreamSHA256(%d, %d) = %s, want %s", n, seed, got, want)
		}
	}
	if StreamSHA256(n, 1) == StreamSHA256(n, 2) {
		t.Error("seeds 1 and 2 give the same stream")
	}
	if StreamSHA256(n, 1) == StreamSHA256(n-1, 1) {
		t.Error("the checksum ignores the length")
	}
	empty := sha256.Sum256(nil)
	if got := StreamSHA256(0, 1); got != hex.EncodeToString(empty[:]) {
		t.Errorf("StreamSHA256(0, 1) = %s, want the hash of nothing", got)
	}
}

func TestStreamDeterministic(t *testing.T) {
	a, b := make([]byte, 4096), make([]byte, 4096)
	_, _ = io.ReadFull(NewStream(42), a)
	_, _ = io.ReadFull(NewStream(42), b)
	if !bytes.Equal(a, b) {
		t.Fatal("two streams of seed 42 differ")
	}
}
