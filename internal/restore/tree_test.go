package restore_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// links is what ties a process to the others of its tree.
type links struct {
	PPid, Pgrp, Session int
	State               byte
	Comm                string
	ExitCode            int
}

func readLinks(t *testing.T, pids map[string]int) map[string]links {
	t.Helper()
	out := map[string]links{}
	for name, pid := range pids {
		st, err := proc.ReadStat(pid)
		if err != nil {
			t.Fatalf("%s (pid %d): %v", name, pid, err)
		}
		// A sleeping process may be seen running.
		state := st.State
		if state == 'R' {
			state = 'S'
		}
		out[name] = links{PPid: st.PPid, Pgrp: st.Pgrp, Session: st.Session, State: state, Comm: st.Comm, ExitCode: st.ExitCode}
	}
	return out
}

// startTree starts test/subjects/tree.c (testutil.StartTree).
func startTree(t *testing.T) (*subject, map[string]int) {
	t.Helper()
	s, dir, pids := testutil.StartTree(t)
	return &subject{Subject: s, dir: dir}, pids
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// TestRestoreTree checkpoints test/subjects/tree.c, a root with six
// children (two of them zombies, one in a process group whose leader has
// exited) and a grandchild, and restores it: every process comes back
// with its PID, parent, process group and session;
// the zombies are zombies again, waitable with their exit status; the
// numbers going from the writer through the reader to the root go on with
// none skipped or repeated (the subject checks); and the file the root
// shares with its children is one open file description again.
func TestRestoreTree(t *testing.T) {
	testutil.RequireRoot(t)
	s, pids := startTree(t)
	s.WaitTicks(t, 3)
	before := readLinks(t, pids)
	// The state oracle, for every live process but the root, which
	// dumpAndReap and restoreSubject compare.
	var live []int
	for _, name := range []string{"writer", "reader", "group", "grandchild", "orphan", "twin"} {
		live = append(live, pids[name])
	}
	states := map[int]testutil.State{}
	c := dumpAndReapWith(t, s, dump.Options{Frozen: func() {
		for _, pid := range live {
			states[pid] = testutil.RecordState(t, pid)
		}
	}})
	var all []int
	for _, pid := range pids {
		all = append(all, pid)
	}
	if err := testutil.WaitPidsFree(all...); err != nil {
		t.Fatal(err)
	}
	st, log := restoreSubject(t, s, c, restore.Options{Restored: func(pid int, scratchStart, scratchEnd uint64) {
		if want, ok := states[pid]; ok {
			t.Logf("state oracle of pid %d", pid)
			testutil.CompareStates(t, want, testutil.RecordState(t, pid, scratchStart, scratchEnd))
		}
	}})
	if st.Processes != len(pids) {
		t.Errorf("restored %d processes, want %d", st.Processes, len(pids))
	}
	s.WaitTicks(t, 10)
	// The helper that made the orphan's group again is gone.
	if leader := s.Ready["leader"]; testutil.WaitPidsFree(atoi(leader)) != nil {
		t.Errorf("the helper %s that made a process group is still there", leader)
	}
	if diff := cmp.Diff(before, readLinks(t, pids)); diff != "" {
		t.Errorf("process links (-dumped +restored):\n%s\nlog:\n%s", diff, log)
	}
	// The subject fails itself if a number is skipped or repeated, and if
	// they stop coming; the writer appends each to the shared file.
	lines := func() int {
		b, err := os.ReadFile(filepath.Join(s.dir, "shared"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n")
	}
	n := lines()
	s.WaitTicks(t, 10)
	if lines() <= n {
		t.Errorf("the writer wrote no number in 10 ticks after the restore")
	}
	fd, err := strconv.Atoi(s.Ready["file"])
	if err != nil {
		t.Fatalf("ready line: file=%q", s.Ready["file"])
	}
	for _, name := range []string{"writer", "reader", "group"} {
		same, err := kernel.SameFile(pids["root"], fd, pids[name], fd)
		if err != nil || !same {
			t.Errorf("fd %d of the root and of the %s: same open file description %v (%v), want true", fd, name, same, err)
		}
	}
	for _, typ := range []kernel.KcmpType{kernel.KcmpFiles, kernel.KcmpFS} {
		if r, err := kernel.Kcmp(pids["root"], pids["twin"], typ, 0, 0); err != nil || r != 0 {
			t.Errorf("the root and the twin share their %s: kcmp %d (%v), want 0", typ, r, err)
		}
	}
}

// TestRestoreTreeProxy restores a tree with its vDSO proxied: every child
// is cloned from a parent whose vDSO the restore has already proxied and
// marked, and proxies its own.
func TestRestoreTreeProxy(t *testing.T) {
	testutil.RequireRoot(t)
	s, pids := startTree(t)
	s.WaitTicks(t, 3)
	c := dumpAndReapWith(t, s, dump.Options{})
	var all []int
	for _, pid := range pids {
		all = append(all, pid)
	}
	if err := testutil.WaitPidsFree(all...); err != nil {
		t.Fatal(err)
	}
	st, log := restoreSubject(t, s, c, restore.Options{VDSO: restore.VDSOProxy})
	if st.Processes != len(pids) || st.VDSO != vdso.ModeProxy {
		t.Errorf("restored %d processes with vDSO %v, want %d with the proxy\nlog:\n%s", st.Processes, st.VDSO, len(pids), log)
	}
	s.WaitTicks(t, 10)
}
