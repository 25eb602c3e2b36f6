package check

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/ptrace"
)

// childEnv names the probe a child process runs, or subjectName.
const childEnv = "CRYO_CHECK_CHILD"

// subjectName makes a child the subject that probes trace.
const subjectName = "subject"

func init() {
	// A child runs its probe on the main thread, the thread-group leader:
	// /proc/self/timens_offsets belongs to the leader, and the Pdeathsig
	// of a probe's subject is tied to the thread that started it. Locking
	// in init keeps main on the main thread.
	if _, ok := os.LookupEnv(childEnv); ok {
		runtime.LockOSThread()
	}
}

// MaybeRunChild returns at once in a normal run. In a child process that
// Run started, it runs the requested probe and exits: 0 if the feature
// works, else 1 with the cause on stderr.
func MaybeRunChild() {
	name, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	if name == subjectName {
		runSubject()
	}
	for _, p := range probes {
		if p.name == name {
			if err := p.run(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	fmt.Fprintf(os.Stderr, "unknown probe %q\n", name)
	os.Exit(2)
}

// subjectBuf is memory of the subject for the process_vm probe.
var subjectBuf [4096]byte

// runSubject prints the address of subjectBuf and its CLOCK_MONOTONIC, then
// echoes stdin to stdout until stdin closes.
func runSubject() {
	fmt.Printf("%p %d\n", &subjectBuf, monotonic())
	io.Copy(os.Stdout, os.Stdin)
	os.Exit(0)
}

// subject is a running subject process.
type subject struct {
	cmd *exec.Cmd
	pid int
	in  *os.File // the subject's stdin
	out *bufio.Reader
	// buf is the address of subjectBuf in the subject.
	buf uint64
	// monotonic is the subject's CLOCK_MONOTONIC when it started.
	monotonic time.Duration
}

func startSubject() (*subject, error) {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), childEnv+"="+subjectName)
	// The subject dies with the probe, even when the probe is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start subject: %w", err)
	}
	defer r.Close()
	cmd.Stdin = r
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start subject: %w", err)
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start subject: %w", err)
	}
	s := &subject{cmd: cmd, pid: cmd.Process.Pid, in: w, out: bufio.NewReader(out)}
	var mono int64
	line, err := s.out.ReadString('\n')
	if err == nil {
		_, err = fmt.Sscan(line, &s.buf, &mono)
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("start subject: read its first line %q: %w", line, err)
	}
	s.monotonic = time.Duration(mono)
	return s, nil
}

// ping checks that the subject still runs: it echoes a line.
func (s *subject) ping() error {
	const msg = "ping\n"
	if _, err := s.in.WriteString(msg); err != nil {
		return fmt.Errorf("ping subject %d: %w", s.pid, err)
	}
	got, err := s.out.ReadString('\n')
	if err != nil || got != msg {
		return fmt.Errorf("ping subject %d: got %q, %v", s.pid, got, err)
	}
	return nil
}

func (s *subject) stop() {
	s.in.Close()
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// traced runs f on a seized subject, then detaches and checks that the
// subject still works. A subject f fails on is killed instead.
func traced(f func(s *subject, tr *ptrace.Tracer) error) error {
	s, err := startSubject()
	if err != nil {
		return err
	}
	defer s.stop()
	tr, err := ptrace.Seize(s.pid, 0)
	if err != nil {
		return err
	}
	if err := f(s, tr); err != nil {
		tr.Kill()
		return err
	}
	if err := tr.Detach(); err != nil {
		return err
	}
	return s.ping()
}

func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}
