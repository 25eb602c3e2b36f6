package dump_test

import (
	"testing"

	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpKeepsCopyOnWrite dumps test/subjects/cow.c, a parent and nine
// children sharing 64 MiB of private memory copy-on-write, leaving it
// running: reading the memory must not copy it, the tree's summed Pss
// stays within 10% of what it was.
func TestDumpKeepsCopyOnWrite(t *testing.T) {
	testutil.RequireRoot(t)
	s, pids := testutil.StartCow(t, 64, 8)
	s.WaitTicks(t, 2)
	before := testutil.Pss(t, pids)
	dumpProcess(t, s.Pid, true)
	s.WaitTicks(t, 3)
	after := testutil.Pss(t, pids)
	t.Logf("summed Pss: %d KiB before the dump, %d KiB after", before, after)
	if after > before*11/10 {
		t.Errorf("summed Pss %d KiB after the dump, %d KiB before: the dump copied shared memory", after, before)
	}
}
