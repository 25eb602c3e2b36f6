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

// TestByteSize parses sizes as criu's --ghost-limit takes them.
func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"4096", 4096, true},
		{"8M", 8 << 20, true},
		{"1k", 1 << 10, true},
		{"2G", 2 << 30, true},
		{"", 0, false},
		{"M", 0, false},
		{"-1", 0, false},
		{"1x", 0, false},
		{"9000000000000G", 0, false},
	} {
		var b byteSize
		err := b.Set(tc.in)
		if (err == nil) != tc.ok || tc.ok && int64(b) != tc.want {
			t.Errorf("Set(%q) = %d, %v; want %d, ok %v", tc.in, b, err, tc.want, tc.ok)
		}
	}
}
