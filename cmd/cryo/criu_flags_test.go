package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// criuOptions are the criu options cryo accepts for compatibility.
var criuOptions = []string{"--file-locks", "--link-remap", "--tcp-established", "--tcp-close", "--ext-unix-sk"}

// TestCriuOptions dumps and restores the locks subject with criu's
// options, as a criu command line would: both accept them, the usage
// names them, and the restored process holds its locks again (its own
// check counts them every tick).
func TestCriuOptions(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	for _, cmd := range []string{"dump", "restore"} {
		_, errOut, _ := runBinary(t, bin, cmd, "-h")
		for _, o := range criuOptions {
			if !strings.Contains(errOut, o+"]") && !strings.Contains(errOut, o+" ") {
				t.Errorf("cryo %s -h does not name %s:\n%s", cmd, o, errOut)
			}
		}
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "locks.c"), t.TempDir())
	s.WaitTicks(t, 3)
	dir := filepath.Join(t.TempDir(), "images")
	// criu takes --manage-cgroups without a mode too.
	args := append([]string{"dump", "-t", strconv.Itoa(s.Pid), "-D", dir, "--manage-cgroups"}, criuOptions...)
	if _, errOut, code := runBinary(t, bin, args...); code != 0 {
		t.Fatalf("cryo %s: exit status %d\n%s", strings.Join(args, " "), code, errOut)
	}
	s.ReapDumped(t)
	// criu's --manage-cgroups modes that would make or change cgroups
	// are refused before anything is restored; without a mode it is
	// criu's soft.
	for _, o := range []string{"--manage-cgroups=soft", "--manage-cgroups"} {
		if _, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d", o); code != 2 || !strings.Contains(errOut, `--manage-cgroups must be ignore or strict`) || !strings.Contains(errOut, `not "soft"`) {
			t.Errorf("cryo restore %s: exit status %d, want 2 and the modes named\n%s", o, code, errOut)
		}
	}
	args = append([]string{"restore", "-D", dir, "-d", "--manage-cgroups=strict"}, criuOptions...)
	_, errOut, code := runBinary(t, bin, args...)
	s.Restored()
	if code != 0 {
		t.Fatalf("cryo %s: exit status %d\n%s", strings.Join(args, " "), code, errOut)
	}
	s.WaitTicks(t, 5)
}
