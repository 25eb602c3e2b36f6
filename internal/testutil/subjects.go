package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/proc"
)

// SubjectTimeout bounds every wait for a subject: generous, since the test
// machines are small, loaded VMs.
const SubjectTimeout = 20 * time.Second

// ModuleRoot returns the directory of the go.mod above the working
// directory: tests run in their package's directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// builds caches the subjects built by this test process: each is built
// once, however many tests, parallel or not, ask for it.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]*built
}

type built struct {
	once sync.Once
	path string
	err  error
}

// build returns the binary for key, calling compile(path) to produce it
// the first time.
func build(t testing.TB, key, name string, compile func(out string) error) string {
	t.Helper()
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := newBuildDir()
		if err != nil {
			builds.mu.Unlock()
			t.Fatalf("subject build directory: %v", err)
		}
		builds.dir, builds.bins = dir, map[string]*built{}
	}
	b := builds.bins[key]
	if b == nil {
		b = &built{}
		builds.bins[key] = b
	}
	dir := builds.dir
	builds.mu.Unlock()

	b.once.Do(func() {
		sum := sha256.Sum256([]byte(key))
		b.path = filepath.Join(dir, name+"-"+hex.EncodeToString(sum[:6]))
		b.err = compile(b.path)
	})
	if b.err != nil {
		t.Fatalf("build subject %s: %v", name, b.err)
	}
	return b.path
}

// buildDirPrefix names the build directories in the temporary directory;
// the PID of the test process that owns one follows it.
const buildDirPrefix = "cryo-subjects-"

// newBuildDir makes this process's build directory. The test binary
// cannot remove it when it ends (a subject may outlive a test), so each
// new one first removes those of test processes that have ended.
func newBuildDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), buildDirPrefix+"*"))
	for _, d := range old {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), buildDirPrefix), "-")
		if n, err := strconv.Atoi(pid); err == nil && unix.Kill(n, 0) == unix.ESRCH {
			os.RemoveAll(d)
		}
	}
	return os.MkdirTemp("", fmt.Sprintf("%s%d-", buildDirPrefix, os.Getpid()))
}

// BuildC compiles test/subjects/src with gcc (-O2 -Wall -pthread and
// extraFlags, e.g. -static) and returns the binary's path. Each source and
// flags combination is built once per test process.
func BuildC(t testing.TB, src string, extraFlags ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("building subject %s needs gcc: %v", src, err)
	}
	path := filepath.Join(ModuleRoot(t), "test", "subjects", src)
	key := strings.Join(append([]string{"gcc", path}, extraFlags...), "\x00")
	name := strings.TrimSuffix(src, ".c")
	return build(t, key, name, func(out string) error {
		args := append([]string{"-O2", "-Wall", "-pthread", "-o", out, path}, extraFlags...)
		if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return nil
	})
}

// BuildGo builds package pkg, a path relative to the module root such as
// ./test/subjects/goclock, and returns the binary's path. Each package is
// built once per test process.
func BuildGo(t testing.TB, pkg string) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building %s needs the go command: %v", pkg, err)
	}
	root := ModuleRoot(t)
	return build(t, "go\x00"+pkg, filepath.Base(pkg), func(out string) error {
		cmd := exec.Command(gotool, "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		return nil
	})
}

// Subject is a test subject process: a child of the test process whose
// stdout and stderr go to a file, so that its output outlives any pipe and
// can be read after a dump killed it or a restore brought it back.
//
// A subject prints "ready ..." when it is set up (optionally; the C
// subjects list key=value fields there) and then "tick N ... ok" lines, or
// "FAIL ..." when one of its own checks fails.
type Subject struct {
	Pid int
	// Ready holds the key=value fields of the subject's "ready" line.
	Ready map[string]string
	// OutPath is the file that holds its output.
	OutPath string

	cmd    *exec.Cmd
	mu     sync.Mutex
	reaped bool
	status unix.WaitStatus
}

// StartSubject starts path with args, stdin on /dev/null, in a session of
// its own (so that it has no terminal, and its session and process group
// are its own), and waits until it is ready: a line "ready" or a first
// "tick". The test's cleanup kills and reaps it.
func StartSubject(t testing.TB, path string, args ...string) *Subject {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(path)+".out")
	// O_APPEND: a restored copy and the original may both write.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start subject: %v", err)
	}
	s := &Subject{Pid: cmd.Process.Pid, OutPath: out, cmd: cmd}
	t.Cleanup(s.Kill)
	deadline := time.Now().Add(SubjectTimeout)
	for {
		lines := s.lines()
		if s.failed(lines) != "" {
			t.Fatalf("subject %s failed at start:\n%s", path, s.Output())
		}
		for _, l := range lines {
			if l == "ready" || strings.HasPrefix(l, "ready ") {
				s.Ready = Fields(l)
			}
			if s.Ready != nil || strings.HasPrefix(l, "tick ") {
				if s.Ready == nil {
					s.Ready = map[string]string{}
				}
				return s
			}
		}
		if !s.Alive() {
			t.Fatalf("subject %s ended (%s) before it was ready:\n%s", path, s.describeEnd(), s.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("subject %s not ready after %v:\n%s", path, SubjectTimeout, s.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Fields parses the key=value words of a line; other words are left out.
func Fields(line string) map[string]string {
	m := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			m[k] = v
		}
	}
	return m
}

// ReadyUint returns a numeric field of the ready line (decimal, or hex
// with 0x), failing the test if it is missing.
func (s *Subject) ReadyUint(t testing.TB, key string) uint64 {
	t.Helper()
	v, ok := s.Ready[key]
	if !ok {
		t.Fatalf("subject %d: no %s= in its ready line", s.Pid, key)
	}
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		t.Fatalf("subject %d: %s=%s: %v", s.Pid, key, v, err)
	}
	return n
}

// treeMembers are the processes test/subjects/tree.c names in its ready
// line besides its root, but for the leader of a group that exited.
var treeMembers = []string{"writer", "reader", "group", "grandchild", "exited", "killed", "orphan", "twin"}

// StartTree starts test/subjects/tree.c in a directory of its own, with
// args after it, and returns it, the directory and the pids of its
// processes by name ("root", and the names of its ready line but
// "leader", which has exited). They are killed and reaped when the test
// ends: the members of a tree outlive its root for a moment.
func StartTree(t testing.TB, args ...string) (*Subject, string, map[string]int) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := StartSubject(t, BuildC(t, "tree.c"), append([]string{dir}, args...)...)
	pids := map[string]int{"root": s.Pid}
	all := []int{s.Pid}
	for _, name := range treeMembers {
		pids[name] = int(s.ReadyUint(t, name))
		all = append(all, pids[name])
	}
	KillPidsAtCleanup(t, all...)
	return s, dir, pids
}

// Output returns everything the subject has printed so far.
func (s *Subject) Output() string {
	b, _ := os.ReadFile(s.OutPath)
	return string(b)
}

// lines returns the complete lines printed so far.
func (s *Subject) lines() []string {
	b, _ := os.ReadFile(s.OutPath)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	} else {
		return nil
	}
	return strings.Split(string(b), "\n")
}

func (s *Subject) failed(lines []string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, "FAIL") {
			return l
		}
	}
	return ""
}

// isTick reports whether l is a successful tick line.
func isTick(l string) bool { return strings.HasPrefix(l, "tick ") && strings.HasSuffix(l, " ok") }

// Ticks counts the successful tick lines printed so far.
func (s *Subject) Ticks() int {
	n := 0
	for _, l := range s.lines() {
		if isTick(l) {
			n++
		}
	}
	return n
}

// LastTick returns the fields of the last tick line, with the tick's
// number under "tick"; nil if there is none.
func (s *Subject) LastTick() map[string]string {
	lines := s.lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if isTick(lines[i]) {
			f := Fields(lines[i])
			f["tick"] = strings.Fields(lines[i])[1]
			return f
		}
	}
	return nil
}

// WaitTicks waits until the subject has printed n more tick lines than it
// had when called, failing the test if it prints FAIL, ends, or takes
// longer than SubjectTimeout.
func (s *Subject) WaitTicks(t testing.TB, n int) {
	t.Helper()
	want := s.Ticks() + n
	deadline := time.Now().Add(SubjectTimeout)
	for {
		lines := s.lines()
		if l := s.failed(lines); l != "" {
			t.Fatalf("subject %d: %s\n%s", s.Pid, l, tail(s.Output()))
		}
		got := 0
		for _, l := range lines {
			if isTick(l) {
				got++
			}
		}
		if got >= want {
			return
		}
		if !s.Alive() {
			t.Fatalf("subject %d ended (%s) after %d ticks, want %d:\n%s", s.Pid, s.describeEnd(), got, want, tail(s.Output()))
		}
		if time.Now().After(deadline) {
			t.Fatalf("subject %d printed %d ticks in %v, want %d:\n%s", s.Pid, got-(want-n), SubjectTimeout, n, tail(s.Output()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitLine waits until the subject has printed the line line, failing the
// test if it prints FAIL, ends, or takes longer than SubjectTimeout.
func (s *Subject) WaitLine(t testing.TB, line string) {
	t.Helper()
	deadline := time.Now().Add(SubjectTimeout)
	for {
		lines := s.lines()
		if l := s.failed(lines); l != "" {
			t.Fatalf("subject %d: %s\n%s", s.Pid, l, tail(s.Output()))
		}
		if slices.Contains(lines, line) {
			return
		}
		if !s.Alive() || time.Now().After(deadline) {
			t.Fatalf("subject %d (alive: %v) did not print %q in %v:\n%s", s.Pid, s.Alive(), line, SubjectTimeout, tail(s.Output()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tail returns the last lines of out, enough to see what went wrong.
func tail(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 20 {
		lines = append([]string{"..."}, lines[len(lines)-20:]...)
	}
	return strings.Join(lines, "\n")
}

// Alive reports whether the subject runs: it exists and is not a zombie,
// or its main thread has exited while other threads run on. It does not
// reap it; Wait does.
func (s *Subject) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reaped {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.Pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesized command, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X' || proc.LeaderExited(s.Pid)
}

// Wait waits up to SubjectTimeout for the subject to end, reaps it and
// returns its wait status. It must not run while the subject is traced
// by the test process: it could take the tracer's ptrace-stops.
func (s *Subject) Wait(t testing.TB) unix.WaitStatus {
	t.Helper()
	deadline := time.Now().Add(SubjectTimeout)
	for {
		s.mu.Lock()
		if s.reaped {
			ws := s.status
			s.mu.Unlock()
			return ws
		}
		var ws unix.WaitStatus
		pid, err := unix.Wait4(s.Pid, &ws, unix.WNOHANG, nil)
		if err != nil && !errors.Is(err, unix.EINTR) {
			s.mu.Unlock()
			t.Fatalf("wait for subject %d: %v", s.Pid, err)
		}
		if pid == s.Pid && (ws.Exited() || ws.Signaled()) {
			s.reaped, s.status = true, ws
			s.cmd.Process.Release()
			s.mu.Unlock()
			return ws
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("subject %d still running after %v", s.Pid, SubjectTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describeEnd says how the subject ended, reaping it if it is a zombie.
func (s *Subject) describeEnd() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.reaped {
		var ws unix.WaitStatus
		if pid, _ := unix.Wait4(s.Pid, &ws, unix.WNOHANG, nil); pid == s.Pid && (ws.Exited() || ws.Signaled()) {
			s.reaped, s.status = true, ws
			s.cmd.Process.Release()
		}
	}
	switch {
	case !s.reaped:
		return "not reaped"
	case s.status.Signaled():
		return "killed by " + s.status.Signal().String()
	default:
		return fmt.Sprintf("exit status %d", s.status.ExitStatus())
	}
}

// Kill kills the subject with SIGKILL and reaps it, unless that was done
// already.
func (s *Subject) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reaped {
		return
	}
	// Reaped by another wait (WaitPidsFree), its pid may be another
	// package's process by now: pid numbers wrap in a test run.
	if !descendant(s.Pid) {
		s.reaped = true
		return
	}
	unix.Kill(s.Pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(s.Pid, &ws, 0, nil)
		if err != nil && err != unix.EINTR || ws.Exited() || ws.Signaled() {
			break
		}
	}
	s.reaped, s.status = true, ws
	s.cmd.Process.Release()
}
