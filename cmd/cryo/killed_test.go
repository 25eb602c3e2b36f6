package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// killRounds is how many times each subject's dump is killed.
const killRounds = 100

// TestDumpCommandKilled kills `cryo dump --leave-running` with SIGKILL at
// random moments across the whole dump, single- and multi-threaded
// targets alike, and one whose memory is read from a snapshot child for
// long enough to be killed meanwhile: each time the target must be left
// exactly as it was (its mappings, its signal masks and handlers, not
// stopped nor traced, no snapshot child) and go on working.
func TestDumpCommandKilled(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	for _, subject := range []struct {
		args   []string
		rounds int
	}{
		{[]string{"vdsoclock.c"}, killRounds},
		{[]string{"sigqueue.c"}, killRounds},
		// Its dumps take longer: fewer of them.
		{[]string{"churn.c", "32"}, killRounds / 4},
	} {
		t.Run(subject.args[0], func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, subject.args[0]), subject.args[1:]...)
			s.WaitTicks(t, 2)
			before := targetState(t, s.Pid)
			kids := childrenOf(t, s.Pid)
			// How long a whole dump takes here, to spread the kills
			// over it.
			start := time.Now()
			if _, errOut, code := runBinary(t, bin, "dump", "-t", strconv.Itoa(s.Pid), "-D", filepath.Join(t.TempDir(), "full"), "--leave-running"); code != 0 {
				t.Fatalf("cryo dump: exit status %d\n%s", code, errOut)
			}
			span := time.Since(start)
			var rolledBack int
			for i := range subject.rounds {
				dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
				delay := rand.N(span + span/4)
				if killDump(t, bin, s.Pid, dir, delay) {
					rolledBack++
				}
				if got := targetState(t, s.Pid); !cmp.Equal(before, got) {
					t.Fatalf("round %d, killed after %v: target changed (-before +after):\n%s", i, delay, cmp.Diff(before, got))
				}
				// No snapshot child is left, alive or a zombie.
				if got := childrenOf(t, s.Pid); !cmp.Equal(kids, got) {
					t.Fatalf("round %d, killed after %v: target has children %v, %v before", i, delay, got, kids)
				}
				if i%10 == 9 {
					s.WaitTicks(t, 1)
				}
			}
			s.WaitTicks(t, 3)
			t.Logf("%d rounds (dump takes %v), %d killed before the dump was complete", subject.rounds, span, rolledBack)
		})
	}
}

// killDump starts a dump, kills the command after delay, waits for its
// worker to end and reports whether the dump was cut short (no complete
// checkpoint left).
func killDump(t *testing.T, bin string, pid int, dir string, delay time.Duration) bool {
	t.Helper()
	cmd := exec.Command(bin, "dump", "-t", strconv.Itoa(pid), "-D", dir, "--leave-running")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay)
	cmd.Process.Kill()
	cmd.Wait()
	// The worker, if the command got to start it, is now a child of the
	// test process, a subreaper: its only child but the target.
	for wpid, what := range testutil.Children(t) {
		if wpid == pid {
			continue
		}
		done := make(chan error, 1)
		go func() {
			var ws unix.WaitStatus
			_, err := unix.Wait4(wpid, &ws, 0, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("wait for dump worker %d: %v", wpid, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("dump worker %d (%s) still runs 10 s after its command was killed", wpid, what)
		}
	}
	_, err := os.Stat(filepath.Join(dir, "inventory.img"))
	return err != nil
}

// targetState is what a dump must leave as it was: the mappings, the
// signal lines of status, whether the process is stopped or traced.
func targetState(t *testing.T, pid int) map[string]string {
	t.Helper()
	maps, err := os.ReadFile(proc.Path(pid, "maps"))
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]string{"maps": string(maps)}
	tasks, err := proc.ReadTasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tasks {
		status, err := os.ReadFile(proc.Path(pid, fmt.Sprintf("task/%d/status", tid)))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "TracerPid":
				st[fmt.Sprintf("%d %s", tid, k)] = strings.TrimSpace(v)
			case "State":
				// Running or sleeping are both as before; stopped or
				// traced are not.
				if s := strings.TrimSpace(v); strings.HasPrefix(s, "t") || strings.HasPrefix(s, "T") {
					st[fmt.Sprintf("%d State", tid)] = s
				}
			}
		}
	}
	return st
}

// TestRestoreCommandKilledAnyMoment kills `cryo restore -d` with SIGKILL
// at random moments across the whole restore: each time either the
// restore was complete (the process runs, untraced) or nothing it built
// is left, the PID free again.
func TestRestoreCommandKilledAnyMoment(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 2)
	dir := dumpSubject(t, bin, s)
	// How long a whole restore takes here, to spread the kills over it.
	start := time.Now()
	if _, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d"); code != 0 {
		t.Fatalf("cryo restore: exit status %d\n%s", code, errOut)
	}
	span := time.Since(start)
	endRestored(t, s.Pid)
	var complete int
	for i := range killRounds {
		cryo := exec.Command(bin, "restore", "-D", dir, "-d")
		if err := cryo.Start(); err != nil {
			t.Fatal(err)
		}
		delay := rand.N(span + span/4)
		time.Sleep(delay)
		cryo.Process.Kill()
		cryo.Wait()
		// Traced tasks die with their tracer (PTRACE_O_EXITKILL); what
		// was let go runs on.
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := proc.ReadStatus(s.Pid)
			if err != nil || st.State == 'Z' {
				break
			}
			if st.TracerPid == 0 && st.State != 't' {
				complete++
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d, killed after %v: pid %d still traced by %d 10 s after cryo died", i, delay, s.Pid, st.TracerPid)
			}
			time.Sleep(time.Millisecond)
		}
		endRestored(t, s.Pid)
		if kids := testutil.Children(t); len(kids) > 0 {
			t.Fatalf("round %d, killed after %v: left behind %v", i, delay, kids)
		}
	}
	t.Logf("%d rounds (a restore takes %v), %d killed once the restore was complete", killRounds, span, complete)
}

// endRestored kills what a restore left of process pid, if anything, and
// reaps it and every other child of the test (stubs re-parented here),
// until the pid is free.
func endRestored(t *testing.T, pid int) {
	t.Helper()
	unix.Kill(pid, unix.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for kid := range testutil.Children(t) {
			unix.Wait4(kid, nil, unix.WNOHANG, nil)
		}
		if _, err := os.Stat(proc.Path(pid, "")); err != nil && len(testutil.Children(t)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d or children %v still there", pid, testutil.Children(t))
		}
		time.Sleep(time.Millisecond)
	}
}
