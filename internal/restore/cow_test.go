package restore_test

import (
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreCopyOnWrite checkpoints test/subjects/cow.c, a parent with
// 256 MiB of private memory and eight children that only read it and one
// that writes part of it, and restores it: the memory the processes
// shared copy-on-write is shared again, the tree's summed Pss within 10%
// of what it was, and every process has exactly its own contents (the
// subject checks every word of each, the writer's writes, the parent's
// writes after the forks, the regions the children were not born with
// or got wiped). The state oracle compares every process's mappings.
func TestRestoreCopyOnWrite(t *testing.T) {
	testutil.RequireRoot(t)
	cow, pids := testutil.StartCow(t, 256, 8)
	s := &subject{Subject: cow}
	s.WaitTicks(t, 2)
	before := testutil.Pss(t, pids)
	states := map[int]testutil.State{}
	c := dumpAndReapWith(t, s, dump.Options{Frozen: func() {
		for _, pid := range pids[1:] {
			states[pid] = testutil.RecordState(t, pid)
		}
	}})
	if err := testutil.WaitPidsFree(pids...); err != nil {
		t.Fatal(err)
	}
	_, log := restoreSubject(t, s, c, restore.Options{Restored: func(pid int, scratchStart, scratchEnd uint64) {
		if want, ok := states[pid]; ok {
			testutil.CompareStates(t, want, testutil.RecordState(t, pid, scratchStart, scratchEnd))
		}
	}})
	// Each tick checks every process; the first may have begun before
	// the dump.
	s.WaitTicks(t, 2)
	after := testutil.Pss(t, pids)
	t.Logf("summed Pss: %d KiB before the dump, %d KiB after the restore", before, after)
	if after > before*11/10 || after < before*9/10 {
		t.Errorf("summed Pss %d KiB after the restore, %d KiB before: not within 10%%\nlog:\n%s", after, before, log)
	}
}
