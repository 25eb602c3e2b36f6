package restore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
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
// the child's are the same open file descriptions again; with a child
// that made the raw pair the controlling terminal of a session of its
// own, it is again; with a child that stayed in the session, whose
// controlling terminal is the canonical pair, it takes it again from its
// parent, the session's leader. Shuffled, /dev/tty comes before the pair it is made
// with and each slave before its master, between holes, so that the
// restore moves them about; the raw pair is locked and its slave
// exclusive, set once /dev/tty is open again.
func TestRestorePty(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range []string{"", "child", "session-child", "ctty-child", "shuffled"} {
		t.Run("mode="+mode, func(t *testing.T) { testRestorePty(t, mode) })
	}
}

// controllingTerminal is the device of process pid's controlling
// terminal, 0 if none.
func controllingTerminal(t *testing.T, pid int) uint64 {
	t.Helper()
	st, err := proc.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(st.TtyNr)
}

func testRestorePty(t *testing.T, mode string) {
	var args []string
	if mode != "" {
		args = append(args, mode)
	}
	child := mode == "child"
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "pty.c"), args...)}
	s.WaitTicks(t, 3)
	cpid := int(s.ReadyUint(t, "child"))
	rawSlave := func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, s.ReadyUint(t, "rs")), &st); err != nil {
			t.Fatal(err)
		}
		return st.Rdev
	}
	slave := map[string]func() uint64{"ctty-child": rawSlave, "session-child": func() uint64 {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", s.Pid, s.ReadyUint(t, "cs")), &st); err != nil {
			t.Fatal(err)
		}
		return st.Rdev
	}}[mode]
	if slave != nil && controllingTerminal(t, cpid) != slave() {
		t.Fatalf("the child's controlling terminal is %#x, want %#x", controllingTerminal(t, cpid), slave())
	}
	c := dumpAndReap(t, s)
	if cpid != 0 {
		if err := testutil.WaitPidsFree(cpid); err != nil {
			t.Fatal(err)
		}
	}
	_, log := restoreSubject(t, s, c, restore.Options{})
	if slave != nil && controllingTerminal(t, cpid) != slave() {
		t.Errorf("the restored child's controlling terminal is %#x, want %#x\nlog:\n%s", controllingTerminal(t, cpid), slave(), log)
	}
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

// TestRestorePtyFull checkpoints test/subjects/ptyfull.c, whose
// pseudo-terminals hold more than their line disciplines do: a raw pair
// filled both ways until a write would block (its master non-blocking, as
// a terminal multiplexer's), and a canonical pair with echo whose line
// discipline holds 40 lines and a part, the rest waiting behind. A dump
// that leaves it running puts every byte back, with the counts and
// settings its checks see, tick after tick; a dump and restore brings
// every byte back, in order, and the lines that waited are echoed once,
// when read, not at the dump.
func TestRestorePtyFull(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "ptyfull.c"))}
	s.WaitTicks(t, 2)
	log, buf := newLog()
	if _, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "snapshot"), LeaveRunning: true, Log: log}); err != nil {
		t.Fatalf("dump, leaving it running: %v\nlog:\n%s", err, buf)
	}
	s.WaitTicks(t, 5)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
	if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	s.WaitLine(t, "flow ok")
	s.WaitTicks(t, 3)
}
