//go:build amd64

package ptrace_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
	"github.com/cryo-cr/cryo/internal/testutil"
	"github.com/cryo-cr/cryo/internal/vdso"
)

func TestSeizeStopsEveryThread(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		tr := seize(t, s)
		got := tr.Threads()
		want, err := proc.ReadTasks(s.pid)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("traced threads differ from /proc (-want +got):\n%s", diff)
		}
		if len(got) < 3 {
			t.Errorf("threads %v: want at least 3", got)
		}
		for _, tid := range got {
			if st := state(t, s.pid, tid); st != 't' {
				t.Errorf("tid %d in state %c, want t (tracing stop)", tid, st)
			}
		}
		detach(t, tr)
		s.count(t, 20)
	})
}

func TestSyscall(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		site, code := firstCode(t, s.pid)
		tr := seize(t, s)
		before := allRegs(t, tr)
		for _, tid := range tr.Threads() {
			for _, tc := range []struct {
				nr   int
				want int
			}{{unix.SYS_GETTID, tid}, {unix.SYS_GETPID, s.pid}} {
				got, err := tr.Syscall(tid, tc.nr)
				if err != nil || got != uint64(tc.want) {
					t.Errorf("syscall %d in tid %d = %d, %v; want %d", tc.nr, tid, got, err, tc.want)
				}
			}
		}

		addr, err := tr.Syscall(s.pid, unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			t.Fatal(err)
		}
		// The kernel may merge the page into a neighbouring mapping.
		if m, ok := mappingAt(t, s.pid, addr); !ok || m.Perms != "rw-p" {
			t.Errorf("after mmap: mapping %+v (found %v), want rw-p memory at %#x", m, ok, addr)
		}
		msg := []byte("written by the tracer")
		if err := tr.WriteMem(addr, msg); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(msg))
		if err := tr.ReadMem(addr, back); err != nil || !bytes.Equal(back, msg) {
			t.Errorf("read back %q, %v; want %q", back, err, msg)
		}
		if _, err := tr.Syscall(s.pid, unix.SYS_MUNMAP, addr, 4096); err != nil {
			t.Fatal(err)
		}
		if m, ok := mappingAt(t, s.pid, addr); ok {
			t.Errorf("after munmap: still mapped: %+v", m)
		}
		if _, err := tr.Syscall(s.pid, unix.SYS_MUNMAP, 1, 4096); !errors.Is(err, unix.EINVAL) {
			t.Errorf("munmap of an unaligned address: got %v, want EINVAL", err)
		}
		if diff := cmp.Diff(before, allRegs(t, tr)); diff != "" {
			t.Errorf("registers changed by injections (-before +after):\n%s", diff)
		}

		scratch, err := tr.Scratch(s.pid)
		if err != nil {
			t.Fatal(err)
		}
		detach(t, tr)
		if m, ok := mappingAt(t, s.pid, scratch); ok {
			t.Errorf("scratch still mapped after detach: %+v", m)
		}
		if _, after := firstCode(t, s.pid); !bytes.Equal(after, code) {
			t.Errorf("borrowed code at %#x is % x after detach, was % x", site, after, code)
		}
		s.count(t, 20)
	})
}

// TestSyscallHoldsSignals sends the whole subject a signal while it is
// stopped: the thread that runs the injections dequeues it first unless it
// is held back.
func TestSyscallHoldsSignals(t *testing.T) {
	for _, tc := range []struct {
		sig   unix.Signal
		after func(t *testing.T, s *subject)
	}{
		{unix.SIGUSR1, func(t *testing.T, s *subject) {
			// Blocked during the injections, handled after.
			if !s.count(t, 200) {
				t.Errorf("the subject did not handle SIGUSR1")
			}
		}},
		{unix.SIGSTOP, func(t *testing.T, s *subject) {
			// Unblockable: held back, re-sent at detach.
			waitState(t, s.pid, 'T')
			if err := unix.Kill(s.pid, unix.SIGCONT); err != nil {
				t.Fatal(err)
			}
			s.count(t, 20)
		}},
	} {
		t.Run(unix.SignalName(tc.sig), func(t *testing.T) {
			forEachSubject(t, func(t *testing.T, s *subject) {
				tr := seize(t, s)
				if err := unix.Kill(s.pid, tc.sig); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if got, err := tr.Syscall(s.pid, unix.SYS_GETPID); err != nil || got != uint64(s.pid) {
						t.Fatalf("getpid = %d, %v; want %d", got, err, s.pid)
					}
				}
				detach(t, tr)
				tc.after(t, s)
			})
		})
	}
}

// TestStepOutHoldsSignals single-steps a thread that spins in user code
// (test/subjects/vdsospin.c) with a signal queued for the process and a
// SIGSTOP sent to the thread: the first stays queued, with its siginfo;
// the second, which nothing blocks, is held back, reported, and delivered
// at detach with the siginfo it came with.
func TestStepOutHoldsSignals(t *testing.T) {
	testutil.RequireRoot(t)
	s := testutil.StartSubject(t, testutil.BuildC(t, "vdsospin.c"))
	rtmin := unix.Signal(s.ReadyUint(t, "sigrtmin"))
	s.WaitTicks(t, 2)
	tr, err := ptrace.Seize(s.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Detach() })
	regs, err := tr.GetRegs(s.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(s.Pid, rtmin); err != nil {
		t.Fatal(err)
	}
	if err := unix.Tgkill(s.Pid, s.Pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Any range around the thread's instruction: the SIGSTOP comes
	// before the first step.
	if _, err := tr.StepOut(s.Pid, regs.Rip, regs.Rip+1, 1000); err != nil {
		t.Fatal(err)
	}
	var si kernel.Siginfo
	if d := tr.DeferredSignals(s.Pid); len(d) != kernel.SiginfoSize {
		t.Fatalf("%d bytes of deferred siginfo, want one", len(d))
	} else {
		copy(si[:], d)
	}
	const siTkill = -6
	if si.Signo() != unix.SIGSTOP || si.Code() != siTkill {
		t.Errorf("deferred signal %v code %d, want SIGSTOP code %d (SI_TKILL)", si.Signo(), si.Code(), siTkill)
	}
	shared, err := tr.QueuedSignals(s.Pid, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(shared) != kernel.SiginfoSize || unix.Signal(shared[0]) != rtmin {
		t.Errorf("process queue holds %d bytes, want the siginfo of signal %d", len(shared), rtmin)
	}
	detach(t, tr)
	waitState(t, s.Pid, 'T')
	if strings.Contains(s.Output(), "took") {
		t.Errorf("the subject took its signal before the SIGCONT:\n%s", s.Output())
	}
	if err := unix.Kill(s.Pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.WaitTicks(t, s.Ticks()+3)
	want := fmt.Sprintf("took sig=%d code=0 pid=%d value=0\n", rtmin, os.Getpid())
	if n := strings.Count(s.Output(), want); n != 1 {
		t.Errorf("the subject took %q %d times, want once:\n%s", want, n, s.Output())
	}
}

func TestCallVDSO(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		snap, err := vdso.ReadLive(s.pid)
		if err != nil {
			t.Fatal(err)
		}
		sym, ok := snap.Image.Lookup("__vdso_clock_gettime", "LINUX_2.6")
		if !ok {
			t.Fatal("no __vdso_clock_gettime in the subject's vDSO")
		}
		tr := seize(t, s)
		buf, err := tr.Scratch(s.pid)
		if err != nil {
			t.Fatal(err)
		}
		regs := allRegs(t, tr)
		xstate, err := tr.GetRegset(s.pid, unix.NT_X86_XSTATE)
		if err != nil {
			t.Fatal(err)
		}
		before := monotonic(t)
		ret, err := tr.Call(s.pid, snap.VDSOAddr()+sym.Offset, unix.CLOCK_MONOTONIC, buf)
		after := monotonic(t)
		if err != nil || ret != 0 {
			t.Fatalf("clock_gettime in the subject = %d, %v", ret, err)
		}
		if diff := cmp.Diff(regs, allRegs(t, tr)); diff != "" {
			t.Errorf("registers changed by the call (-before +after):\n%s", diff)
		}
		if got, err := tr.GetRegset(s.pid, unix.NT_X86_XSTATE); err != nil || !bytes.Equal(got, xstate) {
			t.Errorf("NT_X86_XSTATE changed by the call (%v)", err)
		}
		b := make([]byte, 16)
		if err := tr.ReadMem(buf, b); err != nil {
			t.Fatal(err)
		}
		got := time.Duration(binary.NativeEndian.Uint64(b))*time.Second + time.Duration(binary.NativeEndian.Uint64(b[8:]))
		if got < before || got > after {
			t.Errorf("the subject's clock_gettime says %v, want between %v and %v", got, before, after)
		}
		detach(t, tr)
		s.count(t, 20)
	})
}

func TestRseqConfiguration(t *testing.T) {
	const rseqSig = 0x53053053 // RSEQ_SIG on x86
	for _, tc := range []struct {
		kind       string
		registered bool
	}{
		// The Go runtime does not register rseq; glibc does, for every
		// thread, also in a Go binary that links it (cgo, -race).
		{"go", mapsGlibc(t)},
		{"c", true},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			s := startSubject(t, tc.kind)
			tr := seize(t, s)
			for _, tid := range tr.Threads() {
				c, err := tr.GetRseqConfiguration(tid)
				if err != nil {
					t.Fatal(err)
				}
				if got := c.RseqAbiPointer != 0; got != tc.registered {
					t.Errorf("tid %d: rseq %+v, want registered=%v", tid, c, tc.registered)
				}
				if tc.registered && (c.Signature != rseqSig || c.RseqAbiSize < 20) {
					t.Errorf("tid %d: rseq %+v, want signature %#x and at least 20 bytes", tid, c, rseqSig)
				}
			}
		})
	}
}

func TestRegsets(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		tr := seize(t, s)
		for _, tid := range tr.Threads() {
			regs, err := tr.GetRegs(tid)
			if err != nil {
				t.Fatal(err)
			}
			changed := regs
			changed.R15 ^= 0xdead
			if err := tr.SetRegs(tid, changed); err != nil {
				t.Fatal(err)
			}
			if got, err := tr.GetRegs(tid); err != nil || got != changed {
				t.Errorf("tid %d: registers read back as %+v, %v; want %+v", tid, got, err, changed)
			}
			if err := tr.SetRegs(tid, regs); err != nil {
				t.Fatal(err)
			}
			prstatus, err := tr.GetRegset(tid, unix.NT_PRSTATUS)
			if err != nil {
				t.Fatal(err)
			}
			if want := binary.Size(unix.PtraceRegs{}); len(prstatus) != want {
				t.Errorf("tid %d: NT_PRSTATUS is %d bytes, want %d", tid, len(prstatus), want)
			}
			xstate, err := tr.GetRegset(tid, unix.NT_X86_XSTATE)
			if err != nil {
				t.Fatal(err)
			}
			if len(xstate) < 512+64 { // legacy FXSAVE area + XSAVE header
				t.Errorf("tid %d: NT_X86_XSTATE is %d bytes", tid, len(xstate))
			}
			if err := tr.SetRegset(tid, unix.NT_X86_XSTATE, xstate); err != nil {
				t.Fatal(err)
			}
			again, err := tr.GetRegset(tid, unix.NT_X86_XSTATE)
			if err != nil || !bytes.Equal(again, xstate) {
				t.Errorf("tid %d: NT_X86_XSTATE changed by writing it back (%v)", tid, err)
			}
		}
		detach(t, tr)
		s.count(t, 20)
	})
}

// TestRun runs a Tracer's calls on its tracer thread: they work there as
// from any goroutine, a Run within a Run too, all on one thread; Run
// returns f's error, and ErrDetached once the Tracer is detached.
func TestRun(t *testing.T) {
	forEachSubject(t, func(t *testing.T, s *subject) {
		tr := seize(t, s)
		tids := tr.Threads()
		var threads []int // the OS threads f and the inner f ran on
		err := tr.Run(func() error {
			threads = append(threads, unix.Gettid())
			for _, tid := range tids {
				if _, err := tr.GetRegs(tid); err != nil {
					return err
				}
			}
			if pid, err := tr.Syscall(s.pid, unix.SYS_GETPID); err != nil || int(pid) != s.pid {
				return fmt.Errorf("getpid injected: %d, %v; want %d", pid, err, s.pid)
			}
			return tr.Run(func() error {
				threads = append(threads, unix.Gettid())
				if got := tr.Threads(); !slices.Equal(got, tids) {
					return fmt.Errorf("threads %v in a Run within a Run, want %v", got, tids)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(threads) != 2 || threads[0] != threads[1] || threads[0] == unix.Gettid() {
			t.Errorf("f ran on threads %v, the test on %d: want one thread, not the test's", threads, unix.Gettid())
		}
		errMine := errors.New("mine")
		if err := tr.Run(func() error { return errMine }); err != errMine {
			t.Errorf("Run returned %v, want f's error", err)
		}
		detach(t, tr)
		if err := tr.Run(func() error { return nil }); !errors.Is(err, ptrace.ErrDetached) {
			t.Errorf("Run after Detach: %v, want ErrDetached", err)
		}
		s.count(t, 20)
	})
}

// TestTracerExit checks what becomes of a tracee when its tracer's process
// exits without detaching.
func TestTracerExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options int
		killed  bool
	}{
		{"detached", 0, false},
		{"exitkill", unix.PTRACE_O_EXITKILL, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSubject(t, "go")
			tracer := exec.Command(os.Args[0])
			tracer.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", tracerEnv, s.pid, tc.options))
			if out, err := tracer.CombinedOutput(); err != nil {
				t.Fatalf("tracer: %v\n%s", err, out)
			}
			if !tc.killed {
				s.count(t, 20)
				return
			}
			s.wantKilled(t)
		})
	}
}

func TestKill(t *testing.T) {
	s := startSubject(t, "go")
	tr := seize(t, s)
	if _, err := tr.Syscall(s.pid, unix.SYS_GETPID); err != nil {
		t.Fatal(err)
	}
	if err := tr.Kill(); err != nil {
		t.Fatal(err)
	}
	s.wantKilled(t)
}

func TestErrors(t *testing.T) {
	s := startSubject(t, "go")
	tr := seize(t, s)
	if _, err := tr.GetRegs(os.Getpid()); !errors.Is(err, ptrace.ErrNotThread) {
		t.Errorf("GetRegs of a thread not traced: got %v, want ErrNotThread", err)
	}
	detach(t, tr)
	if _, err := tr.Syscall(s.pid, unix.SYS_GETPID); !errors.Is(err, ptrace.ErrDetached) {
		t.Errorf("Syscall after Detach: got %v, want ErrDetached", err)
	}
	if _, err := ptrace.Seize(0x7fffffff, 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Seize of a PID that cannot exist: got %v, want not exist", err)
	}
}

func allRegs(t *testing.T, tr *ptrace.Tracer) map[int]unix.PtraceRegs {
	t.Helper()
	regs := map[int]unix.PtraceRegs{}
	for _, tid := range tr.Threads() {
		r, err := tr.GetRegs(tid)
		if err != nil {
			t.Fatal(err)
		}
		regs[tid] = r
	}
	return regs
}

func mappingAt(t *testing.T, pid int, addr uint64) (proc.Mapping, bool) {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Start <= addr && addr < m.End {
			return m, true
		}
	}
	return proc.Mapping{}, false
}

// firstCode returns where the tracer borrows code and the bytes there.
func firstCode(t *testing.T, pid int) (uint64, []byte) {
	t.Helper()
	maps, err := proc.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Perms[2] == 'x' && m.Perms[3] == 'p' && !strings.HasPrefix(m.Path, "[") {
			f, err := os.Open(proc.Path(pid, "mem"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 16)
			if _, err := f.ReadAt(b, int64(m.Start)); err != nil {
				t.Fatal(err)
			}
			return m.Start, b
		}
	}
	t.Fatal("no private code mapping")
	return 0, nil
}

// mapsGlibc reports whether the test binary, the Go subject, has glibc
// mapped.
func mapsGlibc(t *testing.T) bool {
	t.Helper()
	maps, err := proc.ReadMaps(0)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(maps, func(m proc.Mapping) bool { return strings.Contains(m.Path, "/libc.so") })
}

func waitState(t *testing.T, pid int, want byte) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); state(t, pid, pid) != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d in state %c, want %c", pid, state(t, pid, pid), want)
		}
	}
}

func monotonic(t *testing.T) time.Duration {
	t.Helper()
	return clock(t, unix.CLOCK_MONOTONIC)
}

func clock(t *testing.T, id int32) time.Duration {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}
