package restore_test

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// pss sums the proportional set size of the processes, in KiB, from
// /proc/PID/smaps_rollup: memory shared by k processes counts 1/k in each.
func pss(t *testing.T, pids []int) int {
	t.Helper()
	sum := 0
	for _, pid := range pids {
		b, err := os.ReadFile(proc.Path(pid, "smaps_rollup"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "Pss:" {
				n, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("pid %d: smaps_rollup: %q: %v", pid, sc.Text(), err)
				}
				sum, found = sum+n, true
			}
		}
		if !found {
			t.Fatalf("pid %d: no Pss in smaps_rollup:\n%s", pid, b)
		}
	}
	return sum
}

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
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "cow.c"), "256", "8")}
	pids := []int{s.Pid}
	for _, k := range strings.Split(s.Ready["children"], ",") {
		pid, err := strconv.Atoi(k)
		if err != nil {
			t.Fatalf("ready line: children=%q", s.Ready["children"])
		}
		pids = append(pids, pid)
	}
	testutil.KillPidsAtCleanup(t, pids...)
	s.WaitTicks(t, 2)
	before := pss(t, pids)
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
	s.WaitTicks(t, 3)
	after := pss(t, pids)
	t.Logf("summed Pss: %d KiB before the dump, %d KiB after the restore", before, after)
	if after > before*11/10 || after < before*9/10 {
		t.Errorf("summed Pss %d KiB after the restore, %d KiB before: not within 10%%\nlog:\n%s", after, before, log)
	}
}
