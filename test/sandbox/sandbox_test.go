package sandbox

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCleanLeftoversRefusesAnotherLiveSandbox: with a supervisor of another
// state directory alive, CleanLeftovers (what Up and the e2e TestMain do
// first) returns an error naming that directory and removes nothing, not
// even its own state directory: namespaces are machine-wide, and the other
// sandbox's are not its to delete.
func TestCleanLeftoversRefusesAnotherLiveSandbox(t *testing.T) {
	if up := otherSandbox(""); up != "" {
		t.Skipf("a real sandbox is up (state directory %s): CleanLeftovers would name it, not the stand-in", up)
	}
	other := filepath.Join(t.TempDir(), "other")
	// A stand-in supervisor: its command line has the "supervise" argument
	// and its environment the marker of the other state directory. The
	// "exit" keeps the shell from exec'ing sleep, which would drop the
	// argument from the command line.
	cmd := exec.Command("sh", "-c", "sleep 60; exit 0", "supervise", "--state-dir", other)
	cmd.Env = append(os.Environ(), MarkerEnv+"="+other)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// /proc shows the new environment once the child has exec'd.
	deadline := time.Now().Add(5 * time.Second)
	for !markedBy(cmd.Process.Pid, other) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	mine := Layout{Dir: filepath.Join(t.TempDir(), "mine")}
	if err := os.MkdirAll(mine.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := CleanLeftovers(mine, io.Discard)
	if err == nil || !strings.Contains(err.Error(), other) {
		t.Fatalf("CleanLeftovers with another sandbox up: %v, want an error naming %s", err, other)
	}
	if _, err := os.Stat(mine.Dir); err != nil {
		t.Errorf("CleanLeftovers removed its state directory though it refused: %v", err)
	}
}
