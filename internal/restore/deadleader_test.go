package restore_test

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/restore"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestRestoreExitedLeader checkpoints test/subjects/deadleader.c, whose
// main thread has exited (pthread_exit) while two threads run on, alone
// and with a child whose main thread has exited too, and restores it:
// every thread comes back, the leaders exit again (zombies while their
// processes live) and the threads go on with the memory and the file
// offset the main thread left (the subject checks). The state oracle
// compares each process but for its leader, which only the restore's
// end makes exit again; then the process ends as a whole, the parent's
// wait reporting the leader's exit status.
func TestRestoreExitedLeader(t *testing.T) {
	testutil.RequireRoot(t)
	for _, fork := range []bool{false, true} {
		t.Run(fmt.Sprintf("fork=%v", fork), func(t *testing.T) {
			dir, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			args := []string{filepath.Join(dir, "file")}
			if fork {
				args = append(args, "fork")
			}
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "deadleader.c"), args...), dir: dir}
			pids := []int{s.Pid}
			if fork {
				kid := int(s.ReadyUint(t, "child"))
				testutil.KillPidsAtCleanup(t, kid)
				// First: the child, its parent gone, is then the test
				// process's to reap.
				t.Cleanup(s.Kill)
				waitLeaderExited(t, s, kid)
				pids = append(pids, kid)
			}
			s.WaitTicks(t, 3)
			before := map[int]testutil.State{}
			c := dumpAndReapWith(t, s, dump.Options{Frozen: func() {
				for _, pid := range pids {
					before[pid] = testutil.RecordState(t, pid)
				}
			}})
			if err := testutil.WaitPidsFree(pids...); err != nil {
				t.Fatal(err)
			}
			c.before = nil // compared below, but for the leaders
			threads := c.im.threads()
			if len(threads) != 3 || !slices.Contains(threads, s.Pid) {
				t.Fatalf("dumped threads %v, want the leader %d and two others", threads, s.Pid)
			}
			leader := c.im.cores[uint32(s.Pid)]
			if regs := leader.GetThreadInfo().GetGpregs(); regs.GetAx() != unix.SYS_EXIT || regs.GetDi() != 0 || int64(regs.GetOrigAx()) != -1 {
				t.Errorf("the exited leader's core: rax %d rdi %d orig_rax %d, want a SYS_exit (%d) of 0 to come", regs.GetAx(), regs.GetDi(), int64(regs.GetOrigAx()), unix.SYS_EXIT)
			}
			if leader.GetTc() == nil || leader.GetThreadCore().GetBlkSigset() != ^uint64(0) {
				t.Errorf("the exited leader's core: task core %v, blocked %#x, want the task core and every signal blocked", leader.GetTc() != nil, leader.GetThreadCore().GetBlkSigset())
			}
			for _, pid := range pids {
				if got := before[pid][fmt.Sprintf("task/%d/exited", pid)]; got != "0x0" {
					t.Errorf("pid %d: the oracle saw the leader exited with %q, want 0x0", pid, got)
				}
			}
			ticks := s.Ticks()
			_, log := restoreSubject(t, s, c, restore.Options{Restored: func(pid int, scratchStart, scratchEnd uint64) {
				if want, ok := before[pid]; ok {
					t.Logf("state oracle of pid %d", pid)
					testutil.CompareStates(t, withoutTask(want, pid), withoutTask(testutil.RecordState(t, pid, scratchStart, scratchEnd), pid))
				}
			}})
			for _, pid := range pids {
				waitLeaderExited(t, s, pid)
			}
			if got := tasks(t, s.Pid); !slices.Equal(got, threads) {
				t.Errorf("restored threads %v, want %v\nlog:\n%s", got, threads, log)
			}
			s.WaitTicks(t, 5)
			if s.Ticks() <= ticks {
				t.Fatal("no tick after the restore")
			}
			beats := func() int {
				n, _ := strconv.Atoi(s.LastTick()["beats"])
				return n
			}
			b := beats()
			s.WaitTicks(t, 5)
			if beats() <= b {
				t.Errorf("the beater thread did not beat after the restore: %d, then %d", b, beats())
			}
			if !strings.Contains(s.Output(), "ready") {
				t.Fatal("no ready line")
			}
			// The threads exit one by one: the process ends as a whole,
			// with its leader's exit status.
			if err := unix.Kill(s.Pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			if ws := s.Wait(t); !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("the restored process ended with %v, want exit status 0 (its leader's)\n%s", ws, s.Output())
			}
		})
	}
}

// waitLeaderExited waits until the main thread of pid has exited while
// its other threads run: a zombie leader, the view another thread.
func waitLeaderExited(t *testing.T, s *subject, pid int) {
	t.Helper()
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for !proc.LeaderExited(pid) {
		if time.Now().After(deadline) {
			st, err := proc.ReadStat(pid)
			// A zombie's exit code tells what ended it.
			t.Fatalf("pid %d: the leader has not exited with its threads running (state %c, exit code %#x, %v); output:\n%s", pid, st.State, st.ExitCode, err, s.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withoutTask returns s without the keys of thread tid.
func withoutTask(s testutil.State, tid int) testutil.State {
	out := maps.Clone(s)
	prefix := fmt.Sprintf("task/%d/", tid)
	maps.DeleteFunc(out, func(k, _ string) bool { return strings.HasPrefix(k, prefix) })
	return out
}
