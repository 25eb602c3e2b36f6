package restore_test

import (
	"testing"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreProcFiles checkpoints test/subjects/procfd.c, which holds its
// namespaces (/proc/self/ns/NAME) and its /proc status file open, and
// restores it: every namespace descriptor comes back as the namespace the
// restored process runs in (a new time namespace, the others cryo's), the
// status file as its own, at its position, and the stat file of its child
// as the child's, restored before the files are opened; the subject
// checks them tick after tick.
func TestRestoreProcFiles(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "procfd.c"))}
	pids := []int{s.Pid, int(s.ReadyUint(t, "child"))}
	testutil.KillPidsAtCleanup(t, pids...)
	c := dumpAndReap(t, s)
	if err := testutil.WaitPidsFree(pids...); err != nil {
		t.Fatal(err)
	}
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 10)
}
