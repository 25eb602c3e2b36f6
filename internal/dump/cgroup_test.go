package dump_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpRefusesThreadCgroup dumps test/subjects/scale.c with one of its
// threads moved alone into another cgroup (cgroup v1 lets a thread be
// elsewhere than its process): CRIU's images keep one set of cgroups per
// process here, so the dump refuses, naming the thread, and the subject
// runs on.
func TestDumpRefusesThreadCgroup(t *testing.T) {
	testutil.RequireRoot(t)
	dir, path := testutil.MakeCgroup(t, true)
	s := testutil.StartSubject(t, testutil.BuildC(t, "scale.c", "-pthread"), "threads", "2")
	tids, err := proc.ReadTasks(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tids)
	moved := tids[len(tids)-1]
	testutil.EnterCgroup(t, dir, moved, true)
	expectRefused(t, s, dump.Options{}, fmt.Sprintf("thread %d is in other cgroups", moved), path)
}
