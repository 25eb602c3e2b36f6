package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestCheckCommand builds cryo and runs `cryo check`: the probes run in
// re-executed copies of the binary, which only the real main dispatches.
func TestCheckCommand(t *testing.T) {
	testutil.RequireRoot(t)
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building cryo needs the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cryo")
	if out, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "check")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cryo check: %v\n%s", err, out)
	}
	if !strings.HasSuffix(string(out), "\nLooks good.\n") {
		t.Errorf("cryo check did not end with Looks good.:\n%s", out)
	}
}
