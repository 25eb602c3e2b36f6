package files

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestOpenAs opens files as another user on a thread of its own: what
// that user may do is what the kernel tells, symbolic links are refused,
// and cryo's own credentials are untouched afterwards.
func TestOpenAs(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootOnly, public := file("root-only", 0o600), file("public", 0o644)
	closed := filepath.Join(dir, "closed")
	if err := os.Mkdir(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	inClosed := filepath.Join(closed, "f")
	if err := os.WriteFile(inClosed, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(public, link); err != nil {
		t.Fatal(err)
	}
	nobodyCreds := kernel.FsCreds{Fsuid: nobody, Fsgid: nobody}
	dacOverride := nobodyCreds
	dacOverride.Effective = 1 << unix.CAP_DAC_OVERRIDE
	for _, tc := range []struct {
		name    string
		creds   kernel.FsCreds
		path    string
		need    uint32
		allowed bool
		err     error
	}{
		{"nobody reads a public file", nobodyCreds, public, unix.R_OK, true, nil},
		{"nobody writes a public file", nobodyCreds, public, unix.W_OK, false, nil},
		{"nobody reads root's", nobodyCreds, rootOnly, unix.R_OK, false, nil},
		{"nobody cannot reach", nobodyCreds, inClosed, unix.R_OK, false, nil},
		{"nobody with CAP_DAC_OVERRIDE", dacOverride, rootOnly, unix.R_OK | unix.W_OK, true, nil},
		{"a symlink", nobodyCreds, link, unix.R_OK, false, ErrChanged},
		{"root", kernel.FsCreds{Effective: ^uint64(0)}, rootOnly, unix.R_OK | unix.W_OK, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, allowed, err := openAs(tc.creds, tc.path, tc.need, 0)
			if fd >= 0 {
				defer unix.Close(fd)
			}
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err == nil && allowed != tc.allowed {
				t.Errorf("allowed %v, want %v", allowed, tc.allowed)
			}
		})
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := kernel.ThreadFsCreds()
	if err != nil {
		t.Fatal(err)
	}
	if own.Fsuid != 0 || own.Fsgid != 0 || own.Effective&(1<<unix.CAP_DAC_OVERRIDE) == 0 {
		t.Errorf("cryo's credentials after: %+v", own)
	}
}
