package restore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// stopInVDSO stops the vdsospin subject s (SIGSTOP) at an instruction
// inside its vDSO, which it runs most of the time: a dump finds it there
// and steps it out.
func stopInVDSO(t *testing.T, s *subject) {
	t.Helper()
	maps, err := proc.ReadMaps(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var vdso proc.Mapping
	for _, m := range maps {
		if m.Path == "[vdso]" {
			vdso = m
		}
	}
	for try := 0; try < 200; try++ {
		if err := unix.Kill(s.Pid, unix.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		testutil.WaitStopped(t, s.Pid)
		// A task stopped outside a system call shows "-1 SP PC".
		b, err := os.ReadFile(proc.Path(s.Pid, "syscall"))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		if len(f) == 3 && f[0] == "-1" {
			pc, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
			if err != nil {
				t.Fatalf("%s: %q", proc.Path(s.Pid, "syscall"), b)
			}
			if pc >= vdso.Start && pc < vdso.End {
				return
			}
		}
		if err := unix.Kill(s.Pid, unix.SIGCONT); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, s.Pid)
	}
	t.Fatalf("subject %d never stopped inside its vDSO", s.Pid)
}

// waitRunning waits until process pid is no longer stopped.
func waitRunning(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for {
		st, err := proc.ReadStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 'T' && st.State != 't' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still in state %c", pid, st.State)
		}
		time.Sleep(time.Millisecond)
	}
}

// staysStopped checks that the subject is stopped and stays so: it
// neither ticks nor takes a signal.
func staysStopped(t *testing.T, s *subject) {
	t.Helper()
	testutil.WaitStopped(t, s.Pid)
	before := s.Output()
	time.Sleep(100 * time.Millisecond)
	if st, err := proc.ReadStat(s.Pid); err != nil || st.State != 'T' {
		t.Fatalf("pid %d in state %c (%v), want T", s.Pid, st.State, err)
	}
	if after := s.Output(); after != before {
		t.Fatalf("the stopped subject ran:\n%s", strings.TrimPrefix(after, before))
	}
}

// resumesWithSignal sends SIGCONT to the stopped subject and checks that
// it goes on and takes the signal queued while it was stopped, once, with
// its siginfo.
func resumesWithSignal(t *testing.T, s *subject, sig unix.Signal, value int) {
	t.Helper()
	ticks := s.Ticks()
	if err := unix.Kill(s.Pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, ticks+3)
	want := fmt.Sprintf("took sig=%d code=%d pid=%d value=%d", sig, siQueue, os.Getpid(), value)
	if n := strings.Count(s.Output(), want+"\n"); n != 1 {
		t.Errorf("the subject took %q %d times, want once:\n%s", want, n, s.Output())
	}
}

// TestRestoreStoppedInVDSO dumps a process stopped by SIGSTOP inside its
// vDSO, with a signal queued meanwhile: the dump steps it out of the vDSO
// with that signal blocked, so the signal stays queued and is in the
// images; the process comes back stopped, and a SIGCONT resumes it and
// delivers the signal with its siginfo.
func TestRestoreStoppedInVDSO(t *testing.T) {
	testutil.RequireRoot(t)
	s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "vdsospin.c"))}
	rtmin := unix.Signal(s.ReadyUint(t, "sigrtmin"))
	s.WaitTicks(t, 2)
	stopInVDSO(t, s)
	queueSignal(t, s.Pid, 0, rtmin, 4242)

	c := dumpAndReap(t, s)
	tc := c.im.cores[uint32(s.Pid)].Tc
	if tc.GetTaskState() != 3 || tc.GetStopSigno() != uint32(unix.SIGSTOP) {
		t.Errorf("task state %d, stop signal %d; want 3 (TASK_STOPPED), %d", tc.GetTaskState(), tc.GetStopSigno(), unix.SIGSTOP)
	}
	if n := len(tc.GetSignalsS().GetSignals()); n != 1 {
		t.Errorf("%d signals in the process's queue, want 1", n)
	}
	restoreSubject(t, s, c, restore.Options{})
	staysStopped(t, s)
	resumesWithSignal(t, s, rtmin, 4242)
}

// TestDumpStoppedLeavesItStopped dumps a stopped process with a signal
// queued, letting it go on or failing: either way it is left stopped,
// with the signal still queued, exactly as before.
func TestDumpStoppedLeavesItStopped(t *testing.T) {
	testutil.RequireRoot(t)
	for _, failAt := range append([]string{""}, dump.Steps[1:]...) {
		name := "leave-running"
		if failAt != "" {
			name = "fail-at-" + failAt
		}
		t.Run(name, func(t *testing.T) {
			s := &subject{Subject: testutil.StartSubject(t, testutil.BuildC(t, "vdsospin.c"))}
			rtmin := unix.Signal(s.ReadyUint(t, "sigrtmin"))
			s.WaitTicks(t, 2)
			stopInVDSO(t, s)
			queueSignal(t, s.Pid, 0, rtmin, 77)
			// The test process is the parent: it takes the report of the
			// stop, and must not get another one.
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(s.Pid, &ws, unix.WUNTRACED|unix.WNOHANG, nil); err != nil || pid != s.Pid || !ws.Stopped() {
				t.Fatalf("wait for the stop report: pid %d, status %v, %v", pid, ws, err)
			}
			dir := filepath.Join(t.TempDir(), "images")
			log, buf := newLog()
			_, err := dump.Dump(context.Background(), dump.Options{Pid: s.Pid, Dir: dir, LeaveRunning: failAt == "", FailAt: failAt, Log: log})
			if (err != nil) != (failAt != "") {
				t.Fatalf("dump: %v\nlog:\n%s", err, buf)
			}
			staysStopped(t, s)
			if pid, err := unix.Wait4(s.Pid, &ws, unix.WUNTRACED|unix.WNOHANG, nil); err != nil || pid != 0 {
				t.Errorf("the parent got another report after the dump: pid %d, status %v, %v", pid, ws, err)
			}
			resumesWithSignal(t, s, rtmin, 77)
		})
	}
}

// TestRestoreStoppedThreads dumps a stopped process of several threads
// (the sink): every thread comes back stopped, and SIGCONT resumes them.
func TestRestoreStoppedThreads(t *testing.T) {
	testutil.RequireRoot(t)
	s := startSink(t)
	s.WaitTicks(t, 3)
	testutil.RecordStopped(t, s.Pid)
	c := dumpAndReap(t, s)
	restoreSubject(t, s, c, restore.Options{})
	staysStopped(t, s)
	for _, tid := range tasks(t, s.Pid) {
		if st, err := proc.ReadTaskStat(s.Pid, tid); err != nil || st.State != 'T' {
			t.Errorf("thread %d in state %c (%v), want T", tid, st.State, err)
		}
	}
	if err := unix.Kill(s.Pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, c.ticks+2*checkEvery+5)
}

// TestRestoreStoppedBySignal dumps the tree subject with its grandchild,
// in a process group that is not orphaned, stopped by SIGTSTP, SIGTTIN
// or SIGTTOU: it comes back stopped by that same signal (which a dump of
// the restored tree reads, as its parent's wait would), and SIGCONT
// resumes it.
func TestRestoreStoppedBySignal(t *testing.T) {
	testutil.RequireRoot(t)
	for _, sig := range []unix.Signal{unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			s, pids := startTree(t)
			s.WaitTicks(t, 3)
			g := pids["grandchild"]
			if err := unix.Kill(g, sig); err != nil {
				t.Fatal(err)
			}
			testutil.WaitStopped(t, g)
			c := dumpAndReap(t, s)
			if tc := readImages(t, c.dir, g).cores[uint32(g)].Tc; tc.GetTaskState() != 3 || tc.GetStopSigno() != uint32(sig) {
				t.Fatalf("grandchild dumped in state %d stopped by %d, want 3 and %d", tc.GetTaskState(), tc.GetStopSigno(), sig)
			}
			var all []int
			for _, pid := range pids {
				all = append(all, pid)
			}
			if err := testutil.WaitPidsFree(all...); err != nil {
				t.Fatal(err)
			}
			restoreSubject(t, s, c, restore.Options{})
			testutil.WaitStopped(t, g)
			dir := filepath.Join(t.TempDir(), "again")
			if _, err := dumpLeaveRunning(s.Pid, dir); err != nil {
				t.Fatal(err)
			}
			if tc := readImages(t, dir, g).cores[uint32(g)].Tc; tc.GetStopSigno() != uint32(sig) {
				t.Errorf("restored grandchild stopped by %d, want %d", tc.GetStopSigno(), sig)
			}
			if err := unix.Kill(g, unix.SIGCONT); err != nil {
				t.Fatal(err)
			}
			waitRunning(t, g)
			s.WaitTicks(t, s.Ticks()+5)
		})
	}
}
