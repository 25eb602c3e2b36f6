package dump_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/dump"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// TestDumpExitedLeader dumps test/subjects/deadleader.c, whose main thread
// has exited while two threads run on, with a child whose main thread has
// exited too. A dump failing at each step leaves both running as they
// were, untraced, the leaders still exited; a dump that lets them run on
// writes the leader among the threads, its core a SYS_exit to come, and
// images crit decodes.
func TestDumpExitedLeader(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "deadleader.c"), filepath.Join(dir, "file"), "fork")
	kid := int(s.ReadyUint(t, "child"))
	testutil.KillPidsAtCleanup(t, kid)
	// First (cleanups run last first): the child, its parent gone, is then
	// the test process's to reap.
	t.Cleanup(s.Kill)
	views := map[int]int{}
	for _, pid := range []int{s.Pid, kid} {
		for !proc.LeaderExited(pid) {
			s.WaitTicks(t, 1)
		}
		v, err := proc.View(pid)
		if err != nil {
			t.Fatal(err)
		}
		views[pid] = v
	}
	for _, step := range dump.Steps {
		t.Run("fail at "+step, func(t *testing.T) {
			maps := map[int][]proc.Mapping{}
			for pid, v := range views {
				maps[pid] = readMaps(t, v)
			}
			log, buf := newLog()
			images := filepath.Join(t.TempDir(), "images")
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: images, LeaveRunning: true, Log: log, FailAt: step})
			if !errors.Is(err, dump.ErrInjected) {
				t.Fatalf("dump failing at %s: %v, want an injected failure\nlog:\n%s", step, err, buf)
			}
			for pid, v := range views {
				if !proc.LeaderExited(pid) {
					t.Errorf("pid %d: the leader has not stayed exited", pid)
				}
				for _, tid := range readTasks(t, pid) {
					if st, err := proc.ReadTaskStatus(pid, tid); err != nil || st.TracerPid != 0 {
						t.Errorf("pid %d thread %d: traced by %d (%v)", pid, tid, st.TracerPid, err)
					}
				}
				if diff := cmp.Diff(maps[pid], readMaps(t, v)); diff != "" {
					t.Errorf("pid %d: mappings changed (-before +after):\n%s", pid, diff)
				}
			}
			if imgs, _ := filepath.Glob(filepath.Join(images, "*.img")); len(imgs) > 0 {
				t.Errorf("images left behind: %v", imgs)
			}
			s.WaitTicks(t, 3)
		})
	}
	d := dumpProcess(t, s.Pid, true)
	im := readImages(t, d.dir, s.Pid)
	critDecode(t, d.dir)
	threads := im.pstree.GetThreads()
	if len(threads) != 3 || threads[0] != uint32(s.Pid) {
		t.Errorf("pstree threads %v, want the leader %d first and two others", threads, s.Pid)
	}
	if d.stats.Processes != 2 || d.stats.Threads != 5 {
		t.Errorf("dumped %d processes, %d threads, want 2 and 5 (the leaders counted)", d.stats.Processes, d.stats.Threads)
	}
	regs := im.leader().GetThreadInfo().GetGpregs()
	if regs.GetAx() != unix.SYS_EXIT || regs.GetDi() != 0 {
		t.Errorf("leader core: rax %d rdi %d, want SYS_exit (%d) of 0", regs.GetAx(), regs.GetDi(), unix.SYS_EXIT)
	}
	// The instruction is the process's own, in a private executable file
	// mapping.
	insn := make([]byte, 2)
	f, err := os.Open(proc.Path(views[s.Pid], "mem"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(insn, int64(regs.GetIp())); err != nil || !slices.Equal(insn, []byte{0x0f, 0x05}) {
		t.Errorf("leader core: rip %#x holds % x (%v), want a syscall instruction", regs.GetIp(), insn, err)
	}
	if !strings.HasPrefix(im.leader().GetTc().GetComm(), "deadleader") || !strings.HasPrefix(im.leader().GetThreadCore().GetComm(), "deadleader") {
		t.Errorf("leader core: comm %q, thread comm %q", im.leader().GetTc().GetComm(), im.leader().GetThreadCore().GetComm())
	}
	s.WaitTicks(t, 3)

	// Stopped, it is refused, and left stopped.
	if err := unix.Kill(s.Pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for st, _ := proc.ReadStat(views[s.Pid]); st.State != 'T'; st, _ = proc.ReadStat(views[s.Pid]) {
		time.Sleep(5 * time.Millisecond)
	}
	_, err = dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: filepath.Join(t.TempDir(), "stopped")})
	if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("dump of the stopped process: %v, want ErrUnsupported naming the stop", err)
	}
	if st, err := proc.ReadStat(views[s.Pid]); err != nil || st.State != 'T' {
		t.Errorf("after the refused dump: state %c (%v), want still stopped", st.State, err)
	}
	if err := unix.Kill(s.Pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, 3)
}

// TestDumpExitedLeaderChildPdeath refuses a child with a parent-death
// signal of a process whose leader has exited: the restore makes it from
// the leader, whose exit again would send it.
func TestDumpExitedLeaderChildPdeath(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "deadleader.c"), filepath.Join(t.TempDir(), "file"), "fork-pdeath")
	kid := int(s.ReadyUint(t, "child"))
	testutil.KillPidsAtCleanup(t, kid)
	t.Cleanup(s.Kill)
	// The child sets its signal before its leader exits.
	for deadline := time.Now().Add(testutil.SubjectTimeout); !proc.LeaderExited(kid); s.WaitTicks(t, 1) {
		if time.Now().After(deadline) {
			st, err := proc.ReadStat(kid)
			// A zombie's exit code tells what ended it.
			t.Fatalf("child %d: its leader has not exited with a thread running (state %c, exit code %#x, %v); output:\n%s", kid, st.State, st.ExitCode, err, s.Output())
		}
	}
	expectRefused(t, s, dump.Options{}, "parent-death signal", "leader has exited")
}
