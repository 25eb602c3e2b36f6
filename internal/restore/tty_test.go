package restore_test

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestorePty checkpoints test/subjects/pty.c and restores it: its own
// checks pass tick after tick (both pseudo-terminals with their settings,
// window sizes, flags and queued byte counts, each master paired with the
// slave held, the canonical one the controlling terminal of the
// process's session with its group in the foreground); then it reads
// every queued byte, the lines as they were written, and sends data both
// ways through both, and through /dev/tty.
func TestRestorePty(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pty.c"))}
	s.WaitTicks(t, 3)
	c := dumpAndReap(t, s)
	_, log := restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 5)
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for !strings.Contains(s.Output(), "flow ok\n") {
		if time.Now().After(deadline) || !s.Alive() {
			t.Fatalf("no data flowed through the restored pseudo-terminals:\n%s\nlog:\n%s", s.Output(), log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.WaitTicks(t, 3)
}
