package restore_test

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
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
//
// With a child that inherited the descriptors (in a session of its own),
// the child's are the same open file descriptions again.
func TestRestorePty(t *testing.T) {
	testutil.RequireRoot(t)
	for _, child := range []bool{false, true} {
		name := "alone"
		if child {
			name = "with a child"
		}
		t.Run(name, func(t *testing.T) { testRestorePty(t, child) })
	}
}

func testRestorePty(t *testing.T, child bool) {
	args := []string{}
	if child {
		args = append(args, "child")
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pty.c"), args...)}
	s.WaitTicks(t, 3)
	cpid := int(s.ReadyUint(t, "child"))
	c := dumpAndReap(t, s)
	if child {
		if err := testutil.WaitPidsFree(cpid); err != nil {
			t.Fatal(err)
		}
	}
	_, log := restoreSubject(t, s, c, restore.Options{})
	for _, k := range []string{"cm", "cs", "tty", "rm", "rs"} {
		if !child {
			break
		}
		fd := int(s.ReadyUint(t, k))
		if same, err := kernel.SameFile(s.Pid, fd, cpid, fd); err != nil || !same {
			t.Errorf("%s (fd %d) of the child: the parent's open file description %v (%v), want true", k, fd, same, err)
		}
	}
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
