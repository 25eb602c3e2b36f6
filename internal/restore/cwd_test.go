package restore_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreRemovedCwd restores a process whose working directory was
// removed: it comes back in a removed directory of the same path, owner
// and mode, and nothing is left at that path.
func TestRestoreRemovedCwd(t *testing.T) {
	testutil.RequireRoot(t)
	parent, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "gone")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Not the umask's: the restore must set the mode itself.
	if err := unix.Chmod(dir, 0o1751); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	bin := testutil.BuildC(t, "vdsospin.c")
	s := &subject{Subject: testutil.StartSubject(t, "/bin/sh", "-c", `cd "$1" && exec "$2"`, "sh", dir, bin)}
	s.WaitTicks(t, 2)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	var before unix.Stat_t
	if err := unix.Stat(proc.Path(s.Pid, "cwd"), &before); err != nil {
		t.Fatal(err)
	}

	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, c.ticks+3)
	cwd, err := proc.ReadCwd(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := dir + " (deleted)"; cwd != want {
		t.Errorf("restored cwd %q, want %q", cwd, want)
	}
	var after unix.Stat_t
	if err := unix.Stat(proc.Path(s.Pid, "cwd"), &after); err != nil {
		t.Fatal(err)
	}
	if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid || after.Nlink != 0 {
		t.Errorf("restored cwd mode %#o uid %d gid %d links %d, want %#o %d %d 0", after.Mode, after.Uid, after.Gid, after.Nlink, before.Mode, before.Uid, before.Gid)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is left behind after the restore: %v", dir, err)
	}
}
