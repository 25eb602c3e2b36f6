package restore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreCgroups dumps test/subjects/sleeper.c in a cgroup of its
// own, beside the test's: while that cgroup is gone, the restore fails
// naming it and leaves nothing behind; with IgnoreCgroups the process
// comes back in the test's (the restoring cryo's) cgroups; dumped there
// again after being moved back, it comes back in its own cgroup, its
// other hierarchies the test's.
func TestRestoreCgroups(t *testing.T) {
	testutil.RequireRoot(t)
	dir, path := testutil.MakeCgroup(t, false)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sleeper.c"))}
	own := testutil.CgroupPaths(t, os.Getpid(), 0)
	testutil.EnterCgroup(t, dir, s.Pid, false)
	want := testutil.CgroupPaths(t, s.Pid, 0)
	if want == own || !strings.Contains(want, path) {
		t.Fatalf("the subject's cgroups are %q, the test's %q: not moved into %s", want, own, path)
	}
	c := dumpAndReap(t, s)

	if err := os.Rename(dir, dir+"-away"); err != nil {
		t.Fatal(err)
	}
	before := testutil.Children(t)
	log, buf := newLog()
	_, err := restore.Restore(context.Background(), restore.Options{Dir: c.dir, Log: log})
	if err == nil {
		s.Restored()
		t.Fatal("restore succeeded with the process's cgroup gone")
	}
	if !errors.Is(err, restore.ErrUnsupported) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "clone") {
		t.Errorf("error %q does not name the clone step and cgroup %s\nlog:\n%s", err, path, buf)
	}
	checkNothingLeft(t, before, s.Pid)

	// Not where it was, on purpose: the state oracle would say so.
	c.before = nil
	restoreSubject(t, s, c, restore.Options{IgnoreCgroups: true})
	if got := testutil.CgroupPaths(t, s.Pid, 0); got != own {
		t.Errorf("restored with IgnoreCgroups in cgroups %q, want the test's %q", got, own)
	}
	if err := os.Rename(dir+"-away", dir); err != nil {
		t.Fatal(err)
	}
	testutil.EnterCgroup(t, dir, s.Pid, false)
	c = dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 1)
	if got := testutil.CgroupPaths(t, s.Pid, 0); got != want {
		t.Errorf("restored in cgroups %q, want %q", got, want)
	}
}
