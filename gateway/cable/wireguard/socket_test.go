package wireguard

import (
	"os"
	"path/filepath"
	"testing"
)

// Only a socket nothing listens on is removed; a file of another kind
// under the name, and no file, are left as they are.
func TestRemoveStaleSocketLeavesOthersAlone(t *testing.T) {
	dir := t.TempDir()
	if removed, err := RemoveStaleSocket(dir, "stwg0"); removed || err != nil {
		t.Errorf("no socket: removed %v, %v", removed, err)
	}
	plain := filepath.Join(dir, "stwg0.sock")
	if err := os.WriteFile(plain, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemoveStaleSocket(dir, "stwg0"); removed || err != nil {
		t.Errorf("a plain file: removed %v, %v", removed, err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Errorf("the plain file is gone: %v", err)
	}
}
