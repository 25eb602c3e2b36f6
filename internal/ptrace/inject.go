package ptrace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// Injection runs code in a stopped thread: its registers are saved, pointed
// at a "syscall; int3" gadget (or at a function whose return address is the
// int3), the thread is continued until the int3's SIGTRAP, and the
// registers are put back at that signal stop. Putting them back at a
// signal stop rather than a syscall-exit stop matters: on resume the kernel
// then restarts a system call the thread was interrupted in exactly as it
// would have.
//
// The first injection borrows a few bytes of the tracee's code (put back
// right after) to map a scratch mapping: its first page holds the
// gadget, the arguments Clone3 passes and, below its end, the stack of
// injected function calls, and the loop that runs a batch of system calls
// (Syscalls); the second is a buffer for the caller (Scratch); the rest
// holds the batch. Detach and Resume unmap it.
//
// Signals: for the duration of an injection the thread blocks every signal
// but the synchronous ones (SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE). A
// SIGCHLD, SIGALRM or Go's SIGURG arriving then stays pending and reaches
// the task's handler after detach, with its siginfo, as if the stop had
// merely delayed it. Blocking a synchronous signal instead would make a
// fault reset the task's handler. Of the signals that get through, those
// sent by a process (SIGSTOP, or a kill of a synchronous one) are held back
// and re-sent to the thread at detach (see detach and DeferredSignals); one
// the kernel raised for the injected code itself, other than the gadget's
// trap, is a fault (ErrFault), and is discarded.
//
// Known limit: the int3 resets a SIGTRAP disposition of SIG_IGN to SIG_DFL,
// as the kernel does for every forced trap.

// ScratchSize is the size of the buffer Scratch returns.
const ScratchSize = pageSize

// injectMask blocks every signal but the synchronous ones.
var injectMask = ^(sigbit(unix.SIGTRAP) | sigbit(unix.SIGSEGV) | sigbit(unix.SIGBUS) | sigbit(unix.SIGILL) | sigbit(unix.SIGFPE))

func sigbit(s unix.Signal) uint64 { return 1 << (s - 1) }

// Syscall injects system call nr with up to six arguments into thread tid
// and returns its result; a failure is returned as the unix.Errno.
func (t *Tracer) Syscall(tid, nr int, args ...uint64) (uint64, error) {
	var ret uint64
	err := t.onThread(tid, func() error {
		gadget, err := t.gadgetFor(tid, args)
		if err != nil {
			return err
		}
		ret, err = t.syscallAt(tid, gadget, nr, args)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("inject %s into tid %d: %w", kernel.SyscallName(nr), tid, err)
	}
	return ret, nil
}

// Call calls the function at fn in thread tid with up to six integer
// arguments, following the platform's C calling convention, on a stack in
// the scratch mapping, and returns what it returns. Unlike a system call,
// a function may change the floating-point and vector registers: Call
// puts them back too.
func (t *Tracer) Call(tid int, fn uint64, args ...uint64) (uint64, error) {
	var ret uint64
	err := t.onThread(tid, func() error {
		gadget, err := t.gadgetFor(tid, args)
		if err != nil {
			return err
		}
		sp, err := t.pushReturn(gadget+pageSize, gadget+trapOffset)
		if err != nil {
			return err
		}
		fpregs, err := getRegset(tid, fpRegset)
		if err != nil {
			return err
		}
		regs, err := t.run(tid, func(r *unix.PtraceRegs) { setCall(r, fn, sp, args) }, trapStop(gadget))
		ret = result(&regs)
		if errors.Is(err, ErrExited) {
			return err
		}
		return errors.Join(err, kernel.PtraceSetRegset(tid, fpRegset, fpregs))
	})
	if err != nil {
		return 0, fmt.Errorf("call %#x in tid %d: %w", fn, tid, err)
	}
	return ret, nil
}

// Scratch returns the address of ScratchSize bytes of the tracee's memory
// that the caller may use for the arguments of injected calls. It maps
// the scratch mapping with an injection into thread tid if no injection
// has done so yet.
func (t *Tracer) Scratch(tid int) (uint64, error) {
	var addr uint64
	err := t.onThread(tid, func() error {
		gadget, err := t.gadget(tid)
		addr = gadget + pageSize
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("map scratch in tid %d: %w", tid, err)
	}
	return addr, nil
}

// WriteString writes s, NUL-terminated, at the start of thread tid's
// scratch buffer and returns its address: the path argument of an
// injected call.
func (t *Tracer) WriteString(tid int, s string) (uint64, error) {
	if len(s)+1 > ScratchSize {
		return 0, fmt.Errorf("string of %d bytes does not fit the scratch buffer", len(s))
	}
	addr, err := t.Scratch(tid)
	if err != nil {
		return 0, err
	}
	return addr, t.WriteMem(addr, append([]byte(s), 0))
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
const atFDCWD = 1<<64 - 100

// OpenAt opens path in thread tid's process, relative to its working
// directory, with an injected openat, and returns the descriptor.
func (t *Tracer) OpenAt(tid int, path string, flags, mode uint64) (uint64, error) {
	addr, err := t.WriteString(tid, path)
	if err != nil {
		return 0, err
	}
	return t.Syscall(tid, unix.SYS_OPENAT, atFDCWD, addr, flags, mode)
}

// ScratchRange returns where the scratch mapping is, mapping it first with
// an injection into thread tid if need be: a restore must keep it out of
// the way of the memory it rebuilds.
func (t *Tracer) ScratchRange(tid int) (start, end uint64, err error) {
	addr, err := t.Scratch(tid)
	return addr - pageSize, addr - pageSize + scratchSize, err
}

// PlaceScratch asks for the scratch mapping at addr, which must be free, in
// place of where the kernel would put it; it must be called before the
// first injection.
func (t *Tracer) PlaceScratch(addr uint64) error {
	return t.do(func() error {
		if t.scratch != 0 {
			return fmt.Errorf("place scratch at %#x: already mapped at %#x", addr, t.scratch)
		}
		t.scratchHint = addr
		return nil
	})
}

// gadgetFor checks the arguments of an injected call into thread tid and
// returns the gadget's address. Tracer thread only.
func (t *Tracer) gadgetFor(tid int, args []uint64) (uint64, error) {
	if len(args) > maxArgs {
		return 0, fmt.Errorf("%d arguments, at most %d", len(args), maxArgs)
	}
	return t.gadget(tid)
}

// gadget returns the address of the gadget in the scratch mapping, which
// it maps first, with an injection into thread tid, if need be.
// Tracer thread only.
func (t *Tracer) gadget(tid int) (uint64, error) {
	if t.scratch != 0 {
		return t.scratch, nil
	}
	flags := uint64(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS)
	if t.scratchHint != 0 {
		flags |= unix.MAP_FIXED_NOREPLACE
	}
	err := t.borrow(func(site uint64) error {
		mmap := func(prot uint64) (uint64, error) {
			return t.syscallAt(tid, site, unix.SYS_MMAP, []uint64{t.scratchHint, scratchSize, prot, flags, ^uint64(0), 0})
		}
		addr, err := mmap(unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC)
		if errors.Is(err, unix.EACCES) {
			// The process denies itself memory both writable and
			// executable (PR_SET_MDWE): the gadget's page is
			// executable only (the tracer writes it through
			// /proc/PID/mem all the same), the rest writable only.
			if addr, err = mmap(unix.PROT_READ | unix.PROT_EXEC); err == nil {
				_, err = t.syscallAt(tid, site, unix.SYS_MPROTECT, []uint64{addr + pageSize, scratchSize - pageSize, unix.PROT_READ | unix.PROT_WRITE})
				if err != nil {
					t.syscallAt(tid, site, unix.SYS_MUNMAP, []uint64{addr, scratchSize})
				}
			}
		}
		if err != nil {
			return fmt.Errorf("map scratch: %w", err)
		}
		t.scratch = addr
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = errors.Join(t.WriteMem(t.scratch, gadgetCode), t.WriteMem(t.scratch+batchOffset, batchCode))
	if err != nil {
		return 0, errors.Join(err, t.unmapScratch(tid))
	}
	return t.scratch, nil
}

// unmapScratch unmaps the scratch mapping with an injection into thread
// tid. Tracer thread only.
func (t *Tracer) unmapScratch(tid int) error {
	err := t.borrow(func(site uint64) error {
		_, err := t.syscallAt(tid, site, unix.SYS_MUNMAP, []uint64{t.scratch, scratchSize})
		return err
	})
	if err != nil {
		return fmt.Errorf("unmap scratch at %#x: %w", t.scratch, err)
	}
	t.scratch = 0
	return nil
}

// borrow writes the gadget over the start of the tracee's first private
// executable mapping, runs f with its address and puts the bytes back (the
// page stays the private copy the write made of it). Never the [vdso]
// (the write would leave the process a private copy of the kernel's
// page, which a later dump would take for the vDSO itself) and never a
// shared mapping (the write would reach the file). Tracer thread only.
func (t *Tracer) borrow(f func(site uint64) error) error {
	m, ok, err := proc.FindMapping(t.view, func(m proc.Mapping) bool {
		return m.Perms[2] == 'x' && m.Perms[3] == 'p' && !strings.HasPrefix(m.Path, "[")
	})
	switch {
	case err != nil:
		return fmt.Errorf("find code to borrow: %w", err)
	case !ok:
		return fmt.Errorf("find code to borrow: %w", ErrNoBorrowSite)
	}
	site := m.Start
	saved := make([]byte, len(gadgetCode))
	if err := t.ReadMem(site, saved); err != nil {
		return err
	}
	if err := t.WriteMem(site, gadgetCode); err != nil {
		return err
	}
	return errors.Join(f(site), t.WriteMem(site, saved))
}

// syscallAt injects system call nr with a gadget at address gadget.
// Tracer thread only.
func (t *Tracer) syscallAt(tid int, gadget uint64, nr int, args []uint64) (uint64, error) {
	regs, err := t.run(tid, func(r *unix.PtraceRegs) { setSyscall(r, gadget, nr, args) }, trapStop(gadget))
	if err != nil {
		return 0, err
	}
	ret := result(&regs)
	if e := int64(ret); e < 0 && e >= -4095 {
		return 0, unix.Errno(-e)
	}
	return ret, nil
}

// pushReturn writes a return address below the stack top and returns the
// new stack pointer. Tracer thread only.
func (t *Tracer) pushReturn(top, ret uint64) (uint64, error) {
	sp := top - 8
	return sp, t.WriteMem(sp, binary.NativeEndian.AppendUint64(nil, ret))
}

// stop is where an injection ends: a signal-delivery-stop for sig at pc.
type stop struct {
	sig unix.Signal
	pc  uint64
}

// run sets up thread tid's registers with setup, applied to a copy of the
// current ones, continues it until it stops at want, and returns the
// registers there. The thread's registers and signal mask are put back
// afterwards, at that stop, also when the injection fails, unless the
// thread is gone. Tracer thread only.
func (t *Tracer) run(tid int, setup func(*unix.PtraceRegs), want stop) (unix.PtraceRegs, error) {
	var saved unix.PtraceRegs
	if err := getRegs(tid, &saved); err != nil {
		return saved, err
	}
	mask, err := kernel.PtraceGetSigmask(tid)
	if err != nil {
		return saved, err
	}
	if err := kernel.PtraceSetSigmask(tid, injectMask); err != nil {
		return saved, err
	}
	regs := saved
	setup(&regs)
	out, err := t.runTo(tid, &regs, want, mask)
	if errors.Is(err, ErrExited) {
		return out, err
	}
	return out, errors.Join(err, setRegs(tid, &saved), kernel.PtraceSetSigmask(tid, mask))
}

// runTo runs thread tid from regs until it stops at want. A task it creates
// on the way is adopted (see Clone3) with mask, the thread's own signal
// mask; failing to adopt one fails the injection, but only once the thread
// has reached want, so that it is never left inside the system call.
// Tracer thread only.
func (t *Tracer) runTo(tid int, regs *unix.PtraceRegs, want stop, mask uint64) (unix.PtraceRegs, error) {
	var out unix.PtraceRegs
	if err := setRegs(tid, regs); err != nil {
		return out, err
	}
	var adoptErr error
	for {
		if err := unix.PtraceCont(tid, 0); err != nil {
			return out, errors.Join(adoptErr, fmt.Errorf("continue tid %d: %w", tid, err))
		}
		ws, err := wait(tid)
		if err != nil {
			return out, errors.Join(adoptErr, err)
		}
		switch event(ws) {
		case 0:
		case unix.PTRACE_EVENT_CLONE, unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK:
			adoptErr = errors.Join(adoptErr, t.adopt(tid, mask))
			continue
		default:
			continue // another event the caller asked for with the options
		}
		si, err := kernel.PtraceGetSiginfo(tid)
		if err != nil {
			return out, errors.Join(adoptErr, err)
		}
		if si.Code() <= 0 { // SI_USER, SI_TKILL, SI_QUEUE...: sent by a process
			t.deferSignal(tid, si)
			continue
		}
		if err := getRegs(tid, &out); err != nil {
			return out, errors.Join(adoptErr, err)
		}
		if ws.StopSignal() == want.sig && pc(&out) == want.pc {
			return out, adoptErr
		}
		return out, errors.Join(adoptErr, fmt.Errorf("%w: %v at %#x", ErrFault, ws.StopSignal(), pc(&out)))
	}
}

// SyscallSite returns the address of a system call instruction in the
// process's own code: a private executable mapping of a file (never the
// vDSO nor a shared mapping), which a restore maps at the same place with
// the same contents. ErrNoBorrowSite if it has none.
func (t *Tracer) SyscallSite() (uint64, error) {
	insn := gadgetCode[:trapOffset]
	maps, err := proc.ReadMaps(t.view)
	if err != nil {
		return 0, fmt.Errorf("find a system call instruction: %w", err)
	}
	buf := make([]byte, 64<<10)
	for _, m := range maps {
		if m.Perms[2] != 'x' || m.Perms[3] != 'p' || m.Path == "" || strings.HasPrefix(m.Path, "[") {
			continue
		}
		// Chunks overlap by an instruction's length less one, so that
		// none is missed across their boundary.
		for at := m.Start; at < m.End; at += uint64(len(buf) - len(insn) + 1) {
			b := buf[:min(uint64(len(buf)), m.End-at)]
			if err := t.ReadMem(at, b); err != nil {
				return 0, fmt.Errorf("find a system call instruction: %w", err)
			}
			if i := bytes.Index(b, insn); i >= 0 {
				return at + uint64(i), nil
			}
			if uint64(len(b)) < uint64(len(buf)) {
				break
			}
		}
	}
	return 0, fmt.Errorf("find a system call instruction: %w", ErrNoBorrowSite)
}

// SyscallRegs returns r set up so that the thread, resumed, makes system
// call nr with args at pc, the address of a system call instruction
// (SyscallSite), and is not taken to be inside one already.
func SyscallRegs(r unix.PtraceRegs, pc uint64, nr int, args ...uint64) unix.PtraceRegs {
	setSyscall(&r, pc, nr, args)
	return r
}
