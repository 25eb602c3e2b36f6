//go:build amd64

package ptrace_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/testutil"
)

// The test binary is also the Go subject, a short-lived tracer, the stub
// of restore tests and a short-lived spawner; these variables tell it
// which.
const (
	subjectEnv = "CRYO_PTRACE_TEST_SUBJECT"
	tracerEnv  = "CRYO_PTRACE_TEST_TRACER"  // "PID OPTIONS": seize, then exit
	stubEnv    = "CRYO_PTRACE_TEST_STUB"    // once resumed: print the PID, then exit
	spawnerEnv = "CRYO_PTRACE_TEST_SPAWNER" // spawn and clone a stub, print their PIDs, exit
)

// cDir holds the C subject once built.
var cDir string

func TestMain(m *testing.M) {
	if os.Getenv(stubEnv) != "" {
		fmt.Println(os.Getpid())
		os.Exit(0)
	}
	if os.Getenv(spawnerEnv) != "" {
		spawnAndExit()
	}
	if os.Getenv(subjectEnv) != "" {
		goSubject()
	}
	if arg := os.Getenv(tracerEnv); arg != "" {
		seizeAndExit(arg)
	}
	code := testutil.Run(m)
	if cDir != "" {
		os.RemoveAll(cDir)
	}
	os.Exit(code)
}

// goSubject is the Go counterpart of testdata/subject.c.
func goSubject() {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, unix.SIGUSR1)
	for range 2 {
		go func() {
			runtime.LockOSThread()
			for {
				ts := unix.Timespec{Nsec: 1e6}
				if err := unix.Nanosleep(&ts, nil); err != nil && err != unix.EINTR {
					fmt.Fprintln(os.Stderr, "nanosleep:", err)
					os.Exit(3)
				}
			}
		}()
	}
	for n := 0; ; n++ {
		select {
		case <-usr1:
			fmt.Println("usr1")
		default:
		}
		fmt.Println(n)
		time.Sleep(time.Millisecond)
	}
}

// seizeAndExit seizes a process and exits without detaching.
func seizeAndExit(arg string) {
	var pid, options int
	if _, err := fmt.Sscan(arg, &pid, &options); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := ptrace.Seize(pid, options); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// spawnAndExit spawns a stub, clones a process from it and exits without
// cleaning up, printing both PIDs.
func spawnAndExit() {
	stub, err := spawnStubProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pid, err := stub.Clone3(stub.Pid(), kernel.CloneArgs{ExitSignal: uint64(unix.SIGCHLD)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(stub.Pid(), pid)
	os.Exit(0)
}

var buildC = sync.OnceValues(func() (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", err
	}
	if cDir, err = os.MkdirTemp("", "cryo-ptrace-test-"); err != nil {
		return "", err
	}
	bin := filepath.Join(cDir, "subject")
	out, err := exec.Command(gcc, "-O2", "-pthread", "-o", bin, "testdata/subject.c").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gcc: %v\n%s", err, out)
	}
	return bin, nil
})

// subject is a running test subject: a process that counts on stdout.
type subject struct {
	pid    int
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	stderr bytes.Buffer
	last   int // the last number read
}

var subjectKinds = []string{"go", "c"}

// startSubject starts a subject of the given kind with args and waits
// until it counts.
func startSubject(t *testing.T, kind string, args ...string) *subject {
	t.Helper()
	var cmd *exec.Cmd
	switch kind {
	case "go":
		cmd = exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), subjectEnv+"=1")
	case "c":
		bin, err := buildC()
		if err != nil {
			t.Skipf("skipped: cannot build the C subject: %v", err)
		}
		cmd = exec.Command(bin, args...)
	}
	s := &subject{cmd: cmd, lines: make(chan string), last: -1}
	cmd.Stderr = &s.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.pid = cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case s.lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		cmd.Process.Kill()
		cmd.Wait()
	})
	s.count(t, 3)
	return s
}

// count reads until the subject has counted n more, checking that it
// never skips nor repeats a number, and reports whether it printed "usr1"
// meanwhile.
func (s *subject) count(t *testing.T, n int) (usr1 bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for want := s.last + n; s.last < want; {
		select {
		case l, ok := <-s.lines:
			if !ok {
				s.cmd.Wait()
				t.Fatalf("subject %d ended (%v) after %d; stderr: %q", s.pid, s.cmd.ProcessState, s.last, s.stderr.String())
			}
			if l == "usr1" {
				usr1 = true
				continue
			}
			got, err := strconv.Atoi(l)
			if err != nil || got != s.last+1 {
				t.Fatalf("subject %d printed %q after %d", s.pid, l, s.last)
			}
			s.last = got
		case <-deadline:
			t.Fatalf("subject %d stuck at %d", s.pid, s.last)
		}
	}
	return usr1
}

// forEachSubject runs f in a subtest per kind of subject.
func forEachSubject(t *testing.T, f func(t *testing.T, s *subject)) {
	for _, kind := range subjectKinds {
		t.Run(kind, func(t *testing.T) { f(t, startSubject(t, kind)) })
	}
}

// seize seizes the subject and detaches at the end of the test if the test
// has not.
func seize(t *testing.T, s *subject) *ptrace.Tracer {
	t.Helper()
	tr, err := ptrace.Seize(s.pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Detach() })
	return tr
}

func detach(t *testing.T, tr *ptrace.Tracer) {
	t.Helper()
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
}

// state is the state letter of a thread, as in /proc/PID/task/TID/stat.
func state(t *testing.T, pid, tid int) byte {
	t.Helper()
	st, err := proc.ReadTaskStat(pid, tid)
	if err != nil {
		t.Fatal(err)
	}
	return st.State
}

// wantKilled waits for the subject to end and checks SIGKILL ended it.
func (s *subject) wantKilled(t *testing.T) {
	t.Helper()
	for range s.lines {
	}
	s.cmd.Wait()
	if st, ok := s.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.Signal() != syscall.SIGKILL {
		t.Errorf("subject %d ended with %v, want killed", s.pid, s.cmd.ProcessState)
	}
}
