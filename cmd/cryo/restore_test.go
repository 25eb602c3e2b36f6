package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// dumpSubject dumps a running subject with `cryo dump` (which kills it),
// reaps it and waits until its PID is free.
func dumpSubject(t *testing.T, bin string, s *testutil.Subject, wrap ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	args := append(wrap, bin, "dump", "-t", strconv.Itoa(s.Pid), "-D", dir)
	_, errOut, code := runBinary(t, args[0], args[1:]...)
	if code != 0 {
		t.Fatalf("%s: exit status %d\n%s", strings.Join(args, " "), code, errOut)
	}
	s.ReapDumped(t)
	return dir
}

// dumpStopped stops a subject and dumps it with `cryo dump`, returning
// the images and what /proc said of the subject, which a restore brings
// back stopped: the state oracle compares them (checkRestoredState).
func dumpStopped(t *testing.T, bin string, s *testutil.Subject) (dir string, before testutil.State) {
	t.Helper()
	before = testutil.RecordStopped(t, s.Pid)
	return dumpSubject(t, bin, s), before
}

// checkRestoredState waits until the restored subject is stopped, as it
// was dumped, fails the test with every difference the state oracle finds
// in /proc, and lets the subject go on.
func checkRestoredState(t *testing.T, s *testutil.Subject, before testutil.State) {
	t.Helper()
	testutil.WaitStopped(t, s.Pid)
	testutil.CompareStates(t, before, testutil.RecordState(t, s.Pid))
	if err := unix.Kill(s.Pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreCommandDetached runs `cryo restore -d --pidfile F`: cryo
// returns once the process runs, with its PID in F; the process, orphaned
// then, goes on ticking under the test process, a child subreaper.
func TestRestoreCommandDetached(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 3)
	dir, before := dumpStopped(t, bin, s)

	pidFile := filepath.Join(t.TempDir(), "pid")
	out, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d", "--pidfile", pidFile)
	s.Restored()
	if code != 0 {
		t.Fatalf("cryo restore -d: exit status %d\n%s", code, errOut)
	}
	if want := "restored pid " + strconv.Itoa(s.Pid) + " (vDSO remap)"; !strings.HasPrefix(out, want) {
		t.Errorf("cryo restore -d printed %q, want it to start with %q", out, want)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(s.Pid) {
		t.Errorf("pid file holds %q, want %d", got, s.Pid)
	}
	checkRestoredState(t, s, before)
	s.WaitTicks(t, 20)
}

// TestRestoreCommandWaits runs `cryo restore` without -d: cryo waits for
// the process and exits with its status, as a shell reports it (128+N for
// a process killed by signal N); and it passes a SIGTERM it gets on to the
// process.
func TestRestoreCommandWaits(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	for _, tt := range []struct {
		name string
		// kill ends the restored process, through cryo or not.
		kill func(cryo *exec.Cmd, pid int) error
	}{
		{"process killed", func(_ *exec.Cmd, pid int) error { return unix.Kill(pid, unix.SIGTERM) }},
		{"cryo sent SIGTERM", func(cryo *exec.Cmd, _ int) error { return cryo.Process.Signal(unix.SIGTERM) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
			s.WaitTicks(t, 3)
			dir := dumpSubject(t, bin, s)

			var errOut bytes.Buffer
			cryo := exec.Command(bin, "restore", "-D", dir, "--vdso=proxy")
			cryo.Stderr = &errOut
			if err := cryo.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cryo.Wait() }()
			t.Cleanup(func() {
				cryo.Process.Kill()
				<-done
			})
			// The process is cryo's child: the Subject only watches its
			// output, once it is there.
			waitTicksFrom(t, s, s.Ticks()+1)
			s.Restored()
			s.WaitTicks(t, 10)
			select {
			case err := <-done:
				t.Fatalf("cryo restore returned while the process runs: %v\n%s", err, errOut.String())
			default:
			}
			if err := tt.kill(cryo, s.Pid); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
				done <- err // for the cleanup
			case <-time.After(testutil.SubjectTimeout):
				t.Fatalf("cryo restore still waits %v after the process was killed", testutil.SubjectTimeout)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 128+int(unix.SIGTERM) {
				t.Errorf("cryo restore ended with %v, want exit status %d\n%s", err, 128+int(unix.SIGTERM), errOut.String())
			}
			if err := testutil.WaitPidFree(s.Pid); err != nil {
				t.Errorf("cryo did not reap the process: %v", err)
			}
		})
	}
}

// TestRestoreCommandErrors checks that bad command lines exit with status
// 2 and say what is wrong, and that a bad checkpoint exits with 1 and
// says why.
func TestRestoreCommandErrors(t *testing.T) {
	bin := testutil.BuildGo(t, "./cmd/cryo")
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no dir", []string{"restore"}, 2, "-D DIR"},
		{"bad vdso mode", []string{"restore", "-D", t.TempDir(), "--vdso=fast"}, 2, `--vdso must be auto, remap or proxy, not "fast"`},
		{"stray argument", []string{"restore", "-D", t.TempDir(), "extra"}, 2, `unexpected argument "extra"`},
		{"bad flag", []string{"restore", "--no-such-flag"}, 2, "no-such-flag"},
		{"empty dir", []string{"restore", "-D", t.TempDir()}, 1, "bad checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runBinary(t, bin, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d\n%s", code, tt.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q does not say %q", errOut, tt.want)
			}
			if tt.code == 2 && !strings.Contains(errOut, "usage: cryo restore") {
				t.Errorf("stderr %q does not give the usage", errOut)
			}
		})
	}
}

// TestDumpInTimeNamespace dumps with a cryo that runs in a time namespace
// of its own, whose clocks are far behind the host's, and restores with
// one that does not: the restored process's monotonic clock must go on
// from where it was, not from the clock of the cryo that dumped it.
func TestDumpInTimeNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("needs unshare (util-linux): %v", err)
	}
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 3)
	// Not more than the host's uptime: a clock may not go below zero.
	const behind = "-60"
	dir := dumpSubject(t, bin, s, unshare, "--time", "--fork", "--monotonic="+behind, "--boottime="+behind)
	lastBefore := s.LastTick()

	_, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d")
	s.Restored()
	if code != 0 {
		t.Fatalf("cryo restore -d: exit status %d\n%s", code, errOut)
	}
	s.WaitTicks(t, 5)
	before, _ := strconv.ParseInt(lastBefore["mono_ns"], 10, 64)
	for _, tk := range s.TickLines() {
		if strconv.Itoa(tk.N-1) != lastBefore["tick"] {
			continue
		}
		after, _ := strconv.ParseInt(tk.Fields["mono_ns"], 10, 64)
		// The subject itself fails if its clock goes back.
		if d := time.Duration(after - before); d < 0 || d > 30*time.Second {
			t.Errorf("the monotonic clock moved by %v across the restore, from %d to %d", d, before, after)
		}
		return
	}
	t.Fatalf("no tick after the restore:\n%s", s.Output())
}

// waitTicksFrom waits until s has printed n ticks, while a process that
// the test does not start brings it back.
func waitTicksFrom(t *testing.T, s *testutil.Subject, n int) {
	t.Helper()
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for s.Ticks() < n {
		if time.Now().After(deadline) {
			t.Fatalf("no tick %d after %v:\n%s", n, testutil.SubjectTimeout, s.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRestoreCommandKilled kills cryo with SIGKILL in the middle of a
// restore: the half-built process dies with it (PTRACE_O_EXITKILL), the
// stub too (its parent-death signal), and only a zombie of the process
// is left, to the test process, a child subreaper.
func TestRestoreCommandKilled(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	// Enough memory that the restore takes a while to write it.
	s := testutil.StartSubject(t, testutil.BuildC(t, "sink.c"), t.TempDir(), "big=256")
	s.WaitTicks(t, 3)
	dir := dumpSubject(t, bin, s)
	before := testutil.Children(t)

	cryo := exec.Command(bin, "restore", "-D", dir)
	if err := cryo.Start(); err != nil {
		t.Fatal(err)
	}
	// Once the process exists and is still traced, it is being built.
	deadline := time.Now().Add(testutil.SubjectTimeout)
	for {
		st, err := proc.ReadStatus(s.Pid)
		if err == nil && st.TracerPid != 0 {
			break
		}
		if err == nil && st.TracerPid == 0 || time.Now().After(deadline) {
			cryo.Process.Kill()
			cryo.Wait()
			s.Restored()
			t.Skipf("did not catch the restore of pid %d in the middle (%v)", s.Pid, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := cryo.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cryo.Wait()
	// The process ends, and its zombie comes to the test process.
	s.Restored()
	ws := s.Wait(t)
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("the half-restored process ended with %v, want killed by SIGKILL", ws)
	}
	// Nothing else is left: no stub, no zombie.
	deadline = time.Now().Add(testutil.SubjectTimeout)
	for {
		var left []string
		for pid, what := range testutil.Children(t) {
			if _, ok := before[pid]; !ok {
				left = append(left, fmt.Sprintf("%d %s", pid, what))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind by the killed restore: %v", left)
		}
		// A zombie stub is re-parented here too.
		for _, l := range left {
			var pid int
			fmt.Sscan(l, &pid)
			unix.Wait4(pid, nil, unix.WNOHANG, nil)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRestoreLowerHardLimit restores with a cryo whose hard limit is lower
// than the process had: without CAP_SYS_RESOURCE (root lacks it on these
// machines) cryo cannot raise it, so the process keeps cryo's, with a
// warning, rather than the restore failing.
func TestRestoreLowerHardLimit(t *testing.T) {
	testutil.RequireRoot(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skipf("needs prlimit (util-linux): %v", err)
	}
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 3)
	limits, err := proc.ReadLimits(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	const low = 4096
	if limits[unix.RLIMIT_MSGQUEUE].Hard <= low {
		t.Skipf("the subject's RLIMIT_MSGQUEUE is %d already", limits[unix.RLIMIT_MSGQUEUE].Hard)
	}
	dir := dumpSubject(t, bin, s)

	_, errOut, code := runBinary(t, prlimit, fmt.Sprintf("--msgqueue=%d:%d", low, low), bin, "restore", "-D", dir, "-d")
	s.Restored()
	if code != 0 {
		t.Fatalf("cryo restore with a lower hard limit: exit status %d\n%s", code, errOut)
	}
	if !strings.Contains(errOut, "cannot raise a hard limit") {
		t.Errorf("cryo did not warn that it kept a lower limit:\n%s", errOut)
	}
	got, err := proc.ReadLimits(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if l := got[unix.RLIMIT_MSGQUEUE]; l.Hard != low || l.Soft != low {
		t.Errorf("restored RLIMIT_MSGQUEUE %d/%d, want %d/%d", l.Soft, l.Hard, low, low)
	}
	s.WaitTicks(t, 5)
}

// TestRestoreFdsAboveLimit restores a process with descriptors above
// what cryo's own RLIMIT_NOFILE lets the restore give it: the restore is
// refused up front, naming a descriptor and the limit, and a cryo with
// room restores the same images.
func TestRestoreFdsAboveLimit(t *testing.T) {
	testutil.RequireRoot(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skipf("needs prlimit (util-linux): %v", err)
	}
	bin := testutil.BuildGo(t, "./cmd/cryo")
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const low = 1000
	s := testutil.StartSubject(t, testutil.BuildC(t, "manyfds.c"), dir, "1100", "100")
	s.WaitTicks(t, 1)
	images := dumpSubject(t, bin, s)

	_, errOut, code := runBinary(t, prlimit, fmt.Sprintf("--nofile=%d:%d", low, low), bin, "restore", "-D", images, "-d")
	if code == 0 {
		s.Restored()
		t.Fatalf("cryo restore under RLIMIT_NOFILE %d of a process with descriptors up to %s succeeded", low, s.Ready["max"])
	}
	for _, want := range []string{"files: not supported: fd ", fmt.Sprintf("RLIMIT_NOFILE of %d", low)} {
		if !strings.Contains(errOut, want) {
			t.Errorf("cryo restore said %q, want %q in it", errOut, want)
		}
	}
	if err := testutil.WaitPidFree(s.Pid); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runBinary(t, bin, "restore", "-D", images, "-d"); code != 0 {
		t.Fatalf("cryo restore: exit status %d\n%s", code, errOut)
	}
	s.Restored()
	s.WaitTicks(t, 2)
}

// openPty opens a new pseudo-terminal and returns its master and slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestRestoreCommandShellJob restores a process whose standard input was a
// terminal: refused without --shell-job; with it, the process gets cryo's
// own terminal in its place.
func TestRestoreCommandShellJob(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	_, oldTTY := openPty(t)
	s := testutil.StartSubject(t, "/bin/sh", "-c", `exec "$0" <>"$1"`, testutil.BuildC(t, "vdsoclock.c"), oldTTY.Name())
	s.WaitTicks(t, 3)
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", s.Pid)); got != oldTTY.Name() {
		t.Fatalf("subject's stdin is %q, want %s", got, oldTTY.Name())
	}
	dir := filepath.Join(t.TempDir(), "images")
	if _, errOut, code := runBinary(t, bin, "dump", "-t", strconv.Itoa(s.Pid), "-D", dir, "--shell-job"); code != 0 {
		t.Fatalf("cryo dump --shell-job: exit status %d\n%s", code, errOut)
	}
	s.ReapDumped(t)

	if _, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d"); code != 1 || !strings.Contains(errOut, "--shell-job") {
		t.Errorf("restore of a shell job without --shell-job: exit status %d, want 1 and a word about --shell-job:\n%s", code, errOut)
	}

	_, newTTY := openPty(t)
	var errOut bytes.Buffer
	cryo := exec.Command(bin, "restore", "-D", dir, "-d", "--shell-job")
	cryo.Stdin, cryo.Stderr = newTTY, &errOut
	err := cryo.Run()
	s.Restored()
	if err != nil {
		t.Fatalf("cryo restore --shell-job: %v\n%s", err, errOut.String())
	}
	if got, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", s.Pid)); got != newTTY.Name() {
		t.Errorf("restored stdin is %q, want cryo's terminal %s", got, newTTY.Name())
	}
	s.WaitTicks(t, 10)
}

// TestRestoreCommandOwnState restores with a cryo that runs niced and with
// SIGHUP ignored (as under nohup): the restored process gets the dumped
// process's nice value and signal dispositions, not cryo's, which its stub
// inherits, nor anything else of cryo's (the state oracle).
func TestRestoreCommandOwnState(t *testing.T) {
	testutil.RequireRoot(t)
	nohup, err1 := exec.LookPath("nohup")
	nice, err2 := exec.LookPath("nice")
	if err := errors.Join(err1, err2); err != nil {
		t.Skipf("needs nohup and nice (coreutils): %v", err)
	}
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 3)
	dir, before := dumpStopped(t, bin, s)
	status := fmt.Sprintf("task/%d/status/", s.Pid)
	// What the subject inherited may ignore some signals (make leaves
	// 32 and 33 ignored in what it runs), but not SIGHUP, which nohup
	// makes cryo ignore.
	ign, err := strconv.ParseUint(before[status+"SigIgn"], 16, 64)
	if niceness := before[fmt.Sprintf("task/%d/stat/nice", s.Pid)]; err != nil || ign&(1<<(unix.SIGHUP-1)) != 0 || niceness != "0" {
		t.Fatalf("subject ignores %s with nice %s; want SIGHUP not ignored, nice 0", before[status+"SigIgn"], niceness)
	}

	// nohup prints where the output goes unless it is not a terminal.
	_, errOut, code := runBinary(t, nohup, nice, "-n", "5", bin, "restore", "-D", dir, "-d")
	s.Restored()
	if code != 0 {
		t.Fatalf("nohup nice cryo restore -d: exit status %d\n%s", code, errOut)
	}
	checkRestoredState(t, s, before)
	s.WaitTicks(t, 5)
}

// TestRestoreCommandOutputs checks that --pidfile and -o never write
// through a symlink (cryo runs as root; the link could name any file),
// that such a refusal comes before anything is restored, and that a
// failure is written into the -o log as well as to stderr.
func TestRestoreCommandOutputs(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsoclock.c"))
	s.WaitTicks(t, 2)
	dir := dumpSubject(t, bin, s)
	tmp := t.TempDir()
	victim := filepath.Join(tmp, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"pidfile", []string{"--pidfile", link}},
		{"log", []string{"-o", link}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"restore", "-D", dir, "-d"}, tc.args...)
			_, errOut, code := runBinary(t, bin, args...)
			if code != 1 || !strings.Contains(errOut, "symlink") {
				t.Errorf("exit status %d, stderr %q: want 1 and the symlink named", code, errOut)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Errorf("the symlink's target now holds %q", b)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.Pid)); err == nil {
				t.Errorf("pid %d runs after a refused restore", s.Pid)
			}
		})
	}
	// A failed restore says why in its log file.
	logPath := filepath.Join(tmp, "restore.log")
	_, _, code := runBinary(t, bin, "restore", "-D", tmp, "-o", logPath)
	b, err := os.ReadFile(logPath)
	if code != 1 || err != nil || !strings.Contains(string(b), "bad checkpoint") {
		t.Errorf("exit status %d; log %q (%v): want 1 and the error in the log", code, b, err)
	}
}

// TestLinkRemapCommand dumps a process holding a file unlinked but still
// linked elsewhere: `cryo dump` refuses it without --link-remap, naming
// the flag, and with it dumps; `cryo restore --link-remap`, as zdtm runs
// criu, restores it.
func TestLinkRemapCommand(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildGo(t, "./cmd/cryo")
	files, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := testutil.StartSubject(t, testutil.BuildC(t, "unlinked.c"), files, "linked")
	s.WaitTicks(t, 3)
	dir := filepath.Join(t.TempDir(), "images")
	pid := strconv.Itoa(s.Pid)
	if _, errOut, code := runBinary(t, bin, "dump", "-t", pid, "-D", dir); code != 1 || !strings.Contains(errOut, "--link-remap") {
		t.Errorf("cryo dump without --link-remap: exit status %d, want 1 and a word about --link-remap:\n%s", code, errOut)
	}
	if _, errOut, code := runBinary(t, bin, "dump", "-t", pid, "-D", dir, "--link-remap"); code != 0 {
		t.Fatalf("cryo dump --link-remap: exit status %d\n%s", code, errOut)
	}
	s.ReapDumped(t)
	_, errOut, code := runBinary(t, bin, "restore", "-D", dir, "-d", "--link-remap")
	s.Restored()
	if code != 0 {
		t.Fatalf("cryo restore -d --link-remap: exit status %d\n%s", code, errOut)
	}
	s.WaitTicks(t, 10)
}
