//go:build amd64

package ptrace_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

const (
	pageSize = 4096
	// stubOptions are those of a restore.
	stubOptions = unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK
	// threadFlags are pthread_create's, but for the TLS and tid pointers.
	threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM
	rw          = unix.PROT_READ | unix.PROT_WRITE
	unmapped    = -1 // for mapPages: a page left unmapped
)

func TestSpawn(t *testing.T) {
	stub := spawnStub(t)
	pid := stub.Pid()
	if got := stub.Threads(); !slices.Equal(got, []int{pid}) {
		t.Errorf("threads %v, want [%d]", got, pid)
	}
	if st := state(t, pid, pid); st != 't' {
		t.Errorf("stub in state %c, want t (tracing stop)", st)
	}
	if got := inject(t, stub, pid, unix.SYS_GETPID); got != uint64(pid) {
		t.Errorf("getpid in the stub = %d, want %d", got, pid)
	}
	if err := stub.Kill(); err != nil {
		t.Fatal(err)
	}
	wantGone(t, pid)

	if _, err := ptrace.Spawn("/nonexistent", nil, nil, stubOptions); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Spawn of a missing program: got %v, want not exist", err)
	}
}

func TestClone3Process(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  uint64
		parent func(stub int) int
	}{
		{"child of the stub", 0, func(stub int) int { return stub }},
		{"CLONE_PARENT", unix.CLONE_PARENT, func(int) int { return os.Getpid() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stub := spawnStub(t)
			spid := stub.Pid()
			page := mmap(t, stub, spid, pageSize, rw)
			mask, err := stub.GetSigmask(spid)
			if err != nil {
				t.Fatal(err)
			}
			child := cloneProcess(t, stub, tc.flags)
			pid := child.Pid()
			if got := child.Threads(); !slices.Equal(got, []int{pid}) {
				t.Errorf("threads %v, want [%d]", got, pid)
			}
			if st, err := proc.ReadStat(pid); err != nil || st.PPid != tc.parent(spid) {
				t.Errorf("parent of the child: %d (%v), want %d", st.PPid, err, tc.parent(spid))
			}
			if st := state(t, pid, pid); st != 't' {
				t.Errorf("child in state %c, want t (tracing stop)", st)
			}
			wantBorn(t, stub, child, pid)
			if got, err := child.GetSigmask(pid); err != nil || got != mask {
				t.Errorf("child's signal mask %#x (%v), want the stub's %#x", got, err, mask)
			}
			if got := inject(t, child, pid, unix.SYS_GETPID); got != uint64(pid) {
				t.Errorf("getpid in the child = %d, want %d", got, pid)
			}
			inject(t, child, pid, unix.SYS_MUNMAP, page, pageSize)
			if m, ok := mappingAt(t, pid, page); ok {
				t.Errorf("child still maps %+v", m)
			}
			if _, ok := mappingAt(t, spid, page); !ok {
				t.Errorf("the stub lost its page at %#x with the child's", page)
			}
		})
	}
}

func TestClone3Thread(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (tr *ptrace.Tracer, end func(t *testing.T))
	}{
		{"spawned", func(t *testing.T) (*ptrace.Tracer, func(*testing.T)) {
			return cloneProcess(t, spawnStub(t), 0), func(*testing.T) {}
		}},
		{"seized", func(t *testing.T) (*ptrace.Tracer, func(*testing.T)) {
			s := startSubject(t, "c")
			tr := seize(t, s)
			return tr, func(t *testing.T) {
				// Detached, the new thread would run into the unmapped gadget.
				if err := tr.Kill(); err != nil {
					t.Error(err)
				}
				s.wantKilled(t)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, end := tc.start(t)
			pid := tr.Pid()
			tid, stackTop := cloneThread(t, tr, pid)
			if !slices.Contains(tr.Threads(), tid) {
				t.Errorf("threads %v lack the new %d", tr.Threads(), tid)
			}
			if tids, err := proc.ReadTasks(pid); err != nil || !slices.Contains(tids, tid) {
				t.Errorf("tasks of pid %d: %v (%v), want %d among them", pid, tids, err, tid)
			}
			if st := state(t, pid, tid); st != 't' {
				t.Errorf("new thread in state %c, want t (tracing stop)", st)
			}
			regs := wantBorn(t, tr, tr, tid)
			if regs.Rsp != stackTop {
				t.Errorf("new thread's rsp %#x, want the stack top %#x", regs.Rsp, stackTop)
			}
			if got := inject(t, tr, tid, unix.SYS_GETTID); got != uint64(tid) {
				t.Errorf("gettid in the new thread = %d, want %d", got, tid)
			}
			changed := regs
			changed.R15 ^= 0xdead
			if err := tr.SetRegs(tid, changed); err != nil {
				t.Fatal(err)
			}
			if got, err := tr.GetRegs(tid); err != nil || got != changed {
				t.Errorf("registers read back as %+v, %v; want %+v", got, err, changed)
			}
			end(t)
		})
	}
}

func TestClone3Errors(t *testing.T) {
	stub := spawnStub(t)
	spid := stub.Pid()
	pidMax := readInt(t, "/proc/sys/kernel/pid_max")
	for _, tc := range []struct {
		name   string
		flags  uint64
		setTid int
		want   error
	}{
		{"pid in use", 0, spid, unix.EEXIST},
		{"pid beyond pid_max", 0, pidMax, unix.EINVAL},
		{"vfork", unix.CLONE_VFORK | unix.CLONE_VM, freeID(t), ptrace.ErrVfork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := kernel.CloneArgs{Flags: tc.flags, ExitSignal: uint64(unix.SIGCHLD)}
			if _, err := stub.Clone3(spid, args, tc.setTid); !errors.Is(err, tc.want) {
				t.Errorf("clone3 with set_tid %d: got %v, want %v", tc.setTid, err, tc.want)
			}
		})
	}
	if _, err := stub.Child(spid); !errors.Is(err, ptrace.ErrNotChild) {
		t.Errorf("Child of the stub's own pid: got %v, want ErrNotChild", err)
	}
	if got := stub.Threads(); !slices.Equal(got, []int{spid}) {
		t.Errorf("threads %v after failed clones, want [%d]", got, spid)
	}
}

// TestTimeNamespace builds a process in a time namespace of its own as a
// restore does.
func TestTimeNamespace(t *testing.T) {
	const offset = 1000 * time.Second
	stub := spawnStub(t)
	spid := stub.Pid()
	inject(t, stub, spid, unix.SYS_UNSHARE, unix.CLONE_NEWTIME)
	offsets := fmt.Sprintf("monotonic %d 0\nboottime %d 0\n", offset/time.Second, offset/time.Second)
	if err := os.WriteFile(proc.Path(spid, "timens_offsets"), []byte(offsets), 0); err != nil {
		t.Fatal(err)
	}
	child := cloneProcess(t, stub, 0)
	for _, tc := range []struct {
		name string
		id   int32
	}{{"monotonic", unix.CLOCK_MONOTONIC}, {"boottime", unix.CLOCK_BOOTTIME}} {
		t.Run(tc.name, func(t *testing.T) {
			// unshare moves the stub's children, not the stub.
			for _, c := range []struct {
				tr     *ptrace.Tracer
				offset time.Duration
			}{{stub, 0}, {child, offset}} {
				before := clock(t, tc.id)
				got := tracerClock(t, c.tr, tc.id)
				after := clock(t, tc.id)
				if got < before+c.offset || got > after+c.offset {
					t.Errorf("pid %d reads %v, want %v ahead of this process's %v..%v", c.tr.Pid(), got, c.offset, before, after)
				}
			}
		})
	}
}

func TestWriteMemVM(t *testing.T) {
	child := cloneProcess(t, spawnStub(t), 0)
	pid := child.Pid()
	for _, tc := range []struct {
		name   string
		pages  []int // the protection of each page, or unmapped
		failAt int   // the page the write fails at, -1 for none
	}{
		{"16 MiB", slices.Repeat([]int{rw}, 4096), -1},
		{"read-only and executable pages", []int{rw, unix.PROT_READ | unix.PROT_EXEC, unix.PROT_READ, rw}, -1},
		{"unmapped page", []int{rw, rw, unmapped, rw}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := mapPages(t, child, tc.pages)
			data := randomBytes(len(tc.pages) * pageSize)
			err := child.WriteMemVM(addr, data)
			written := len(data)
			if tc.failAt >= 0 {
				written = tc.failAt * pageSize
				if bad := fmt.Sprintf("%#x", addr+uint64(written)); err == nil || !strings.Contains(err.Error(), bad) {
					t.Errorf("write over an unmapped page at %s: got %v, want an error naming it", bad, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			back := make([]byte, written)
			if err := child.ReadMem(addr, back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, data[:written]) {
				t.Errorf("pid %d: the %d bytes at %#x read back differ from those written", pid, written, addr)
			}
		})
	}
}

func TestWriteMemVMBatch(t *testing.T) {
	child := cloneProcess(t, spawnStub(t), 0)
	// More segments than one process_vm_writev takes, some across page
	// boundaries, some into an executable page.
	pages := slices.Repeat([]int{rw}, 1024)
	pages[100] = unix.PROT_READ | unix.PROT_EXEC
	addr := mapPages(t, child, pages)
	var segs []ptrace.Segment
	for i := range 3000 {
		segs = append(segs, ptrace.Segment{Addr: addr + uint64(i)*1000 + uint64(i%7), Data: randomBytes(100 + i%200)})
	}
	segs = append(segs, ptrace.Segment{Addr: addr}) // empty: skipped
	orig := slices.Clone(segs)
	if err := child.WriteMemVMBatch(segs); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(segs, orig, func(a, b ptrace.Segment) bool { return a.Addr == b.Addr && len(a.Data) == len(b.Data) }) {
		t.Errorf("WriteMemVMBatch changed its argument")
	}
	for _, s := range segs {
		back := make([]byte, len(s.Data))
		if err := child.ReadMem(s.Addr, back); err != nil || !bytes.Equal(back, s.Data) {
			t.Fatalf("%d bytes at %#x read back differ from those written (%v)", len(s.Data), s.Addr, err)
		}
	}
}

// errno is the return register of a system call failing with e.
func errno(e unix.Errno) uint64 { return -uint64(e) }

func TestRestartRegs(t *testing.T) {
	const nr = unix.SYS_CLOCK_NANOSLEEP
	block, noHand := errno(kernel.ErestartRestartBlock), errno(kernel.ErestartNoHand)
	// The arguments: clock_nanosleep(clock 1, flags, req 3, rem 4) and
	// nanosleep(req 1, rem).
	args := func(rdi, rsi, rdx, r10 uint64) unix.PtraceRegs {
		return unix.PtraceRegs{Rdi: rdi, Rsi: rsi, Rdx: rdx, R10: r10}
	}
	for _, tc := range []struct {
		name             string
		origRax, rax     uint64
		in               unix.PtraceRegs
		wantRax, wantRip uint64
		// want are the arguments the call is re-issued with.
		want unix.PtraceRegs
	}{
		{"not in a system call", ^uint64(0), block, args(1, 0, 3, 4), block, 0x1002, args(1, 0, 3, 4)},
		{"returned", nr, 0, args(1, 0, 3, 4), 0, 0x1002, args(1, 0, 3, 4)},
		{"EINTR", nr, errno(unix.EINTR), args(1, 0, 3, 4), errno(unix.EINTR), 0x1002, args(1, 0, 3, 4)},
		{"ERESTARTSYS", nr, errno(kernel.ErestartSys), args(1, 0, 3, 4), errno(kernel.ErestartSys), 0x1002, args(1, 0, 3, 4)},
		{"ERESTARTNOINTR", nr, errno(kernel.ErestartNoIntr), args(1, 0, 3, 4), errno(kernel.ErestartNoIntr), 0x1002, args(1, 0, 3, 4)},
		{"ERESTARTNOHAND", nr, noHand, args(1, 0, 3, 4), noHand, 0x1002, args(1, 0, 3, 4)},
		// The time left, which the kernel wrote into rem, is the request.
		{"clock_nanosleep relative", nr, block, args(1, 0, 3, 4), noHand, 0x1002, args(1, 0, 4, 4)},
		{"clock_nanosleep without rem", nr, block, args(1, 0, 3, 0), noHand, 0x1002, args(1, 0, 3, 0)},
		{"clock_nanosleep absolute", nr, block, args(1, unix.TIMER_ABSTIME, 3, 4), noHand, 0x1002, args(1, unix.TIMER_ABSTIME, 3, 4)},
		{"nanosleep", unix.SYS_NANOSLEEP, block, args(1, 2, 0, 0), noHand, 0x1002, args(2, 2, 0, 0)},
		{"nanosleep without rem", unix.SYS_NANOSLEEP, block, args(1, 0, 0, 0), noHand, 0x1002, args(1, 0, 0, 0)},
		{"poll", unix.SYS_POLL, block, args(1, 2, 3, 0), noHand, 0x1002, args(1, 2, 3, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Orig_rax, in.Rax, in.Rip = tc.origRax, tc.rax, 0x1002
			want := tc.want
			want.Orig_rax, want.Rax, want.Rip = tc.origRax, tc.wantRax, tc.wantRip
			if got := ptrace.RestartRegs(in); got != want {
				t.Errorf("RestartRegs(%+v) = %+v, want %+v", in, got, want)
			}
		})
	}
}

// TestResumeRestartsSyscalls stops a subject whose threads sleep, injects
// into each, and resumes them with their registers through RestartRegs:
// no sleep may fail (the strict subject exits on any error, EINTR and 516
// included).
func TestResumeRestartsSyscalls(t *testing.T) {
	s := startSubject(t, "c", "strict")
	site, code := firstCode(t, s.pid)
	tr := seize(t, s)
	saved := allRegs(t, tr)
	sleeping := 0
	for tid, r := range saved {
		t.Logf("tid %d stopped with orig_rax %d, rax %d", tid, int64(r.Orig_rax), int64(r.Rax))
		if r.Orig_rax == unix.SYS_CLOCK_NANOSLEEP && r.Rax == errno(kernel.ErestartRestartBlock) {
			sleeping++
		}
	}
	if sleeping == 0 {
		t.Errorf("no thread stopped in clock_nanosleep with -ERESTART_RESTARTBLOCK")
	}
	scratch, err := tr.Scratch(s.pid)
	if err != nil {
		t.Fatal(err)
	}
	final := map[int]unix.PtraceRegs{}
	for tid, r := range saved {
		addr := mmap(t, tr, tid, pageSize, rw)
		inject(t, tr, tid, unix.SYS_MUNMAP, addr, pageSize)
		final[tid] = ptrace.RestartRegs(r)
	}
	if err := tr.Resume(final); err != nil {
		t.Fatal(err)
	}
	if m, ok := mappingAt(t, s.pid, scratch); ok {
		t.Errorf("scratch still mapped after Resume: %+v", m)
	}
	if _, after := firstCode(t, s.pid); !bytes.Equal(after, code) {
		t.Errorf("code at %#x is % x after Resume, was % x", site, after, code)
	}
	// Long enough for every sleeper to come out of its restarted nap.
	s.count(t, 300)
}

// TestResumeBornProcess restores the simplest process: a copy of the stub
// at its exec, cloned with a PID of our choosing and resumed with the
// stub's registers there, runs the test binary from its start and prints
// its PID. The copy may also be resumed as if it had been dumped inside a
// nanosleep, in code that goes on to the start only if the sleep
// succeeds: a new task has no restart_block to resume it from.
func TestResumeBornProcess(t *testing.T) {
	for _, tc := range []struct {
		name string
		regs func(t *testing.T, child *ptrace.Tracer, start unix.PtraceRegs) unix.PtraceRegs
	}{
		{"at its start", func(_ *testing.T, _ *ptrace.Tracer, start unix.PtraceRegs) unix.PtraceRegs {
			return start
		}},
		{"in an interrupted nanosleep", sleepingRegs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			stub := spawnStub(t, nil, w, os.Stderr)
			w.Close()
			start, err := stub.GetRegs(stub.Pid())
			if err != nil {
				t.Fatal(err)
			}
			child := cloneProcess(t, stub, unix.CLONE_PARENT)
			pid := child.Pid()
			if err := child.Resume(nil); err == nil {
				t.Fatal("Resume without registers succeeded")
			}
			regs := ptrace.RestartRegs(tc.regs(t, child, start))
			if err := child.Resume(map[int]unix.PtraceRegs{pid: regs}); err != nil {
				t.Fatal(err)
			}
			var ws unix.WaitStatus
			if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
				t.Fatal(err)
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Fatalf("resumed pid %d ended with status %#x, want exit 0", pid, ws)
			}
			line, err := bufio.NewReader(r).ReadString('\n')
			if want := strconv.Itoa(pid) + "\n"; err != nil || line != want {
				t.Errorf("resumed pid %d printed %q (%v), want %q", pid, line, err, want)
			}
		})
	}
}

// sleepingRegs writes into child code that sleeps and then jumps to
// start.Rip, or exits with the errno if the sleep fails, and returns the
// registers of a thread stopped in that sleep.
func sleepingRegs(t *testing.T, child *ptrace.Tracer, start unix.PtraceRegs) unix.PtraceRegs {
	t.Helper()
	code := []byte{
		0x0f, 0x05, // syscall
		0x48, 0x85, 0xc0, // test %rax,%rax
		0x75, 0x0c, // jne fail
		0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, // movabs $start,%rax
		0xff, 0xe0, // jmp *%rax
		0x89, 0xc7, // fail: mov %eax,%edi
		0xf7, 0xdf, // neg %edi
		0xb8, 0xe7, 0, 0, 0, // mov $SYS_exit_group,%eax
		0x0f, 0x05, // syscall
	}
	binary.NativeEndian.PutUint64(code[9:], start.Rip)
	addr := mapPages(t, child, []int{unix.PROT_READ | unix.PROT_EXEC, rw})
	req := binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(nil, 0), uint64(time.Millisecond))
	err := child.WriteMemVMBatch([]ptrace.Segment{{Addr: addr, Data: code}, {Addr: addr + pageSize, Data: req}})
	if err != nil {
		t.Fatal(err)
	}
	regs := start
	regs.Orig_rax, regs.Rax, regs.Rip = unix.SYS_NANOSLEEP, errno(kernel.ErestartRestartBlock), addr+2
	regs.Rdi, regs.Rsi = addr+pageSize, 0
	return regs
}

func TestKillAll(t *testing.T) {
	stub := spawnStub(t)
	orphan := cloneProcess(t, stub, 0) // its parent dies first
	sibling := cloneProcess(t, stub, unix.CLONE_PARENT)
	tid, _ := cloneThread(t, orphan, orphan.Pid())
	if err := stub.KillAll(); err != nil {
		t.Fatal(err)
	}
	wantGone(t, stub.Pid(), orphan.Pid(), sibling.Pid(), tid)
	for _, tr := range []*ptrace.Tracer{stub, orphan, sibling} {
		if _, err := tr.Syscall(tr.Pid(), unix.SYS_GETPID); !errors.Is(err, ptrace.ErrDetached) {
			t.Errorf("Syscall into pid %d after KillAll: got %v, want ErrDetached", tr.Pid(), err)
		}
	}
}

// TestSpawnerExit checks that what a tracer spawned dies with it.
func TestSpawnerExit(t *testing.T) {
	spawner := exec.Command(os.Args[0])
	spawner.Env = append(os.Environ(), spawnerEnv+"=1")
	spawner.Stderr = os.Stderr
	out, err := spawner.Output()
	if err != nil {
		t.Fatalf("spawner: %v", err)
	}
	var stub, child int
	if _, err := fmt.Sscan(string(out), &stub, &child); err != nil {
		t.Fatalf("spawner printed %q: %v", out, err)
	}
	// Their parents gone, this process inherits them as a subreaper.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range []int{stub, child} {
		for !gone(t, pid) {
			unix.Wait4(pid, nil, unix.WALL|unix.WNOHANG, nil)
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still there after its tracer exited", pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// spawnStub spawns the test binary as a stub, with files as its
// descriptors, and kills whatever it has become at the end of the test.
func spawnStub(t *testing.T, files ...*os.File) *ptrace.Tracer {
	t.Helper()
	tr, err := spawnStubProcess(files...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.KillAll() })
	return tr
}

func spawnStubProcess(files ...*os.File) (*ptrace.Tracer, error) {
	attr := &os.ProcAttr{Env: append(os.Environ(), stubEnv+"=1"), Files: files}
	return ptrace.Spawn(os.Args[0], []string{os.Args[0]}, attr, stubOptions)
}

// cloneProcess clones a process from tr's process with a free PID and
// returns its Tracer.
func cloneProcess(t *testing.T, tr *ptrace.Tracer, flags uint64) *ptrace.Tracer {
	t.Helper()
	args := kernel.CloneArgs{Flags: flags}
	if flags&unix.CLONE_PARENT == 0 { // else the exit signal is the parent's
		args.ExitSignal = uint64(unix.SIGCHLD)
	}
	pid := withFreeID(t, func(id int) (int, error) { return tr.Clone3(tr.Pid(), args, id) })
	child, err := tr.Child(pid)
	if err != nil {
		t.Fatal(err)
	}
	if child.Pid() != pid {
		t.Fatalf("Child(%d) traces pid %d", pid, child.Pid())
	}
	return child
}

// cloneThread clones a thread with a free TID from thread tid, on a fresh
// stack, and returns its TID and the top of its stack.
func cloneThread(t *testing.T, tr *ptrace.Tracer, tid int) (int, uint64) {
	t.Helper()
	const stackSize = 64 << 10
	stack := mmap(t, tr, tid, stackSize, rw)
	args := kernel.CloneArgs{Flags: threadFlags, Stack: stack, StackSize: stackSize}
	return withFreeID(t, func(id int) (int, error) { return tr.Clone3(tid, args, id) }), stack + stackSize
}

// wantBorn checks the registers of task tid, just born of a clone3 that
// parent injected, and returns them.
func wantBorn(t *testing.T, parent, tr *ptrace.Tracer, tid int) unix.PtraceRegs {
	t.Helper()
	scratch, err := parent.Scratch(parent.Pid())
	if err != nil {
		t.Fatal(err)
	}
	regs, err := tr.GetRegs(tid)
	if err != nil {
		t.Fatal(err)
	}
	// Right after the gadget's syscall, at the start of the scratch.
	if gadget := scratch - pageSize; regs.Rip != gadget+2 || regs.Rax != 0 {
		t.Errorf("tid %d born at rip %#x with rax %d, want rip %#x (after the gadget's syscall) and rax 0", tid, regs.Rip, regs.Rax, gadget+2)
	}
	if got, err := tr.Scratch(tid); err != nil || got != scratch {
		t.Errorf("tid %d has its scratch at %#x (%v), want the parent's %#x", tid, got, err, scratch)
	}
	return regs
}

// withFreeID calls clone with a free id, again if another task takes it
// meanwhile, and checks that the task clone creates has that id.
func withFreeID(t *testing.T, clone func(id int) (int, error)) int {
	t.Helper()
	for range 10 {
		id := freeID(t)
		got, err := clone(id)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got != id {
			t.Fatalf("clone3 with set_tid %d created %d", id, got)
		}
		return got
	}
	t.Fatal("no free id found")
	return 0
}

// freeID returns an id that no task has, some way above the last one the
// kernel handed out, so that it stays free for a while.
func freeID(t *testing.T) int {
	t.Helper()
	last, max := readInt(t, "/proc/sys/kernel/ns_last_pid"), readInt(t, "/proc/sys/kernel/pid_max")
	for i := range max {
		id := (last+200+i)%(max-300) + 300 // the kernel hands out ids from 300 on after a wrap
		if gone(t, id) {
			return id
		}
	}
	t.Fatal("no free id")
	return 0
}

func readInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// gone reports whether no task has id, not even a zombie.
func gone(t *testing.T, id int) bool {
	t.Helper()
	_, err := os.Stat("/proc/" + strconv.Itoa(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err != nil
}

func wantGone(t *testing.T, ids ...int) {
	t.Helper()
	for _, id := range ids {
		if !gone(t, id) {
			st, _ := proc.ReadStat(id)
			t.Errorf("task %d still there, in state %c", id, st.State)
		}
	}
}

// inject injects a system call and fails the test if it fails.
func inject(t *testing.T, tr *ptrace.Tracer, tid, nr int, args ...uint64) uint64 {
	t.Helper()
	ret, err := tr.Syscall(tid, nr, args...)
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// mmap maps size bytes of anonymous memory with protection prot in tr's
// process, through thread tid.
func mmap(t *testing.T, tr *ptrace.Tracer, tid int, size uint64, prot int) uint64 {
	t.Helper()
	return inject(t, tr, tid, unix.SYS_MMAP, 0, size, uint64(prot), unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
}

// mapPages maps anonymous pages with the protections prots (or leaves a
// hole for unmapped) into tr's process and returns their address.
func mapPages(t *testing.T, tr *ptrace.Tracer, prots []int) uint64 {
	t.Helper()
	addr := mmap(t, tr, tr.Pid(), uint64(len(prots))*pageSize, rw)
	for i, prot := range prots {
		page := addr + uint64(i)*pageSize
		switch prot {
		case rw:
		case unmapped:
			inject(t, tr, tr.Pid(), unix.SYS_MUNMAP, page, pageSize)
		default:
			inject(t, tr, tr.Pid(), unix.SYS_MPROTECT, page, pageSize, uint64(prot))
		}
	}
	return addr
}

// tracerClock reads clock id in tr's process, with an injected
// clock_gettime.
func tracerClock(t *testing.T, tr *ptrace.Tracer, id int32) time.Duration {
	t.Helper()
	buf, err := tr.Scratch(tr.Pid())
	if err != nil {
		t.Fatal(err)
	}
	inject(t, tr, tr.Pid(), unix.SYS_CLOCK_GETTIME, uint64(id), buf)
	b := make([]byte, 16)
	if err := tr.ReadMem(buf, b); err != nil {
		t.Fatal(err)
	}
	return time.Duration(binary.NativeEndian.Uint64(b))*time.Second + time.Duration(binary.NativeEndian.Uint64(b[8:]))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n)}).Read(b)
	return b
}
