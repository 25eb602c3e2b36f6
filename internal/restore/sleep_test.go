package restore_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreSleepLeft checkpoints test/subjects/sleeper.c well into its
// threads' 2 s sleeps (sleep(), nanosleep and clock_nanosleep given a
// buffer for the time left, select and ppoll) and restores it: each sleep
// goes on for what was left, so that it ends when it would have without
// the checkpoint, on the process's clock; the subject fails if one lasts
// 400 ms longer than asked, as a sleep started again with its full length
// would, or ends early, as sleep() does when it gets EINTR. A first
// checkpoint, with --leave-running, cuts the same sleeps: they must go on
// so that the second still sees which call each is in.
func TestRestoreSleepLeft(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sleeper.c", "-pthread"))}
	s.WaitTicks(t, 30)
	if _, err := dumpLeaveRunning(s.Pid, filepath.Join(t.TempDir(), "images")); err != nil {
		t.Fatal(err)
	}
	// 1.2 s into the first sleeps: 0.8 s left of each.
	s.WaitTicks(t, 60)
	c := dumpAndReap(t, s)
	_, log := restoreSubject(t, s, c, restore.Options{})
	woke := func() map[string]bool {
		out := map[string]bool{}
		for _, l := range strings.Split(s.Output(), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "woke" {
				out[f[1]] = true
			}
		}
		return out
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(woke()) < 6 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s.WaitTicks(t, 2)
	if got := woke(); len(got) < 6 {
		t.Errorf("sleepers woken after the restore: %v, want sleep, same, own, clock, select and ppoll\nlog:\n%s", got, log)
	}
}
