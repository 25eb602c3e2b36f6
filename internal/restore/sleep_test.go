package restore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreSleepLeft checkpoints test/subjects/sleeper.c well into its
// threads' 2 s sleeps (nanosleep and clock_nanosleep given a buffer for
// the time left, select and ppoll) and restores it: each sleep goes on for what was left,
// so that it ends when it would have without the checkpoint, on the
// process's clock; the subject fails if one lasts 400 ms longer than
// asked, as a sleep started again with its full length would.
func TestRestoreSleepLeft(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "sleeper.c", "-pthread"))}
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
	for len(woke()) < 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s.WaitTicks(t, 2)
	if got := woke(); len(got) < 5 {
		t.Errorf("sleepers woken after the restore: %v, want same, own, clock, select and ppoll\nlog:\n%s", got, log)
	}
}
