package restore_test

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreThreadExtras restores test/subjects/scale.c with three
// threads, one of which was tied to one CPU (as taskset would): it is tied
// to that CPU again, and the others, tied to none, may run on cryo's
// CPUs, not on the one CPU every task the restore made was tied to
// meanwhile. Two threads had I/O priorities (as ionice sets them), which
// they have again; the others none. The process's core dump filter is
// its own again, not cryo's.
func TestRestoreThreadExtras(t *testing.T) {
	testutil.RequireRoot(t)
	var own unix.CPUSet
	if err := unix.SchedGetaffinity(0, &own); err != nil {
		t.Fatal(err)
	}
	if own.Count() < 2 {
		t.Skipf("this process may run on %d CPU: a thread cannot be tied to fewer", own.Count())
	}
	last := 0
	for cpu := range len(own) * 64 {
		if own.IsSet(cpu) {
			last = cpu
		}
	}
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "scale.c", "-pthread"), "threads", "3")}
	tids := tasks(t, s.Pid)
	if len(tids) != 4 {
		t.Fatalf("tasks %v, want the leader and 3 threads", tids)
	}
	var one unix.CPUSet
	one.Set(last)
	tied := tids[2]
	if err := unix.SchedSetaffinity(tied, &one); err != nil {
		t.Fatal(err)
	}
	const idle, bestEffort5 = 3 << 13, 2<<13 | 5
	prios := map[int]uint32{tids[0]: bestEffort5, tids[3]: idle}
	for tid, p := range prios {
		if err := kernel.IoprioSet(tid, p); err != nil {
			t.Fatal(err)
		}
	}
	const filter = 0x7f
	if err := os.WriteFile(proc.Path(s.Pid, "coredump_filter"), []byte("0x7f"), 0); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, 1)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 2)
	if f, err := proc.ReadCoredumpFilter(s.Pid); err != nil || f != filter {
		t.Errorf("core dump filter %#x, %v; want %#x", f, err, filter)
	}
	for _, tid := range tasks(t, s.Pid) {
		want := own
		if tid == tied {
			want = one
		}
		var got unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("tid %d may run on %d CPUs (%x), want %d (%x)", tid, got.Count(), got[0], want.Count(), want[0])
		}
		if p, err := kernel.IoprioGet(tid); err != nil || p != prios[tid] {
			t.Errorf("tid %d: I/O priority %#x, %v; want %#x", tid, p, err, prios[tid])
		}
	}
}

// TestRestoreMDWE checkpoints test/subjects/mdwe.c, which denies itself
// memory both writable and executable (PR_SET_MDWE): the dump maps its
// scratch memory all the same, and the restored process is denied such
// memory again, which it checks.
func TestRestoreMDWE(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "mdwe.c"))}
	s.WaitTicks(t, 1)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	s.WaitTicks(t, 3)
}
