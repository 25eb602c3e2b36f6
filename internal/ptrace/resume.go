package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// Resume ends a restore: it gives every traced thread the registers regs
// holds for it and detaches them all, so that the process runs from there,
// and re-sends the signals held back during injections. regs must hold
// every thread of Threads and no other. On failure the Tracer stays: kill
// what it holds with KillAll.
//
// The scratch mapping is unmapped first, by an injected munmap whose
// gadget is in it, so that no other code of the process is touched (Detach
// borrows some); the thread that runs the munmap then faults fetching the
// int3 that is gone, and the SIGSEGV is discarded at detach. A SIGSEGV
// disposition of SIG_IGN becomes SIG_DFL with that fault, as the kernel
// does for every forced signal.
//
// The registers are set at a signal stop, never at a syscall-exit stop
// (the tracer never asks for those): on resume from a signal stop the
// kernel applies its system call restart to the registers it finds, so a
// thread dumped in an interrupted system call restarts exactly as the
// kernel would have restarted it, with registers from RestartRegs; a
// syscall-exit stop would hand RAX to the program as it is. The stops are:
// for the thread that unmapped the scratch, the SIGSEGV of that fault; for
// another that ran an injection, the SIGTRAP of the last one's int3; for a
// thread born of Clone3 and given no injection, its first stop (SIGSTOP,
// or PTRACE_EVENT_STOP under a seized tracer); for a seized one, the
// PTRACE_EVENT_STOP of its interrupt; for a spawned one, its exec's
// SIGTRAP.
func (t *Tracer) Resume(regs map[int]unix.PtraceRegs) error {
	err := t.do(func() error {
		if len(regs) != len(t.threads) {
			return fmt.Errorf("registers for %d threads, want %d", len(regs), len(t.threads))
		}
		for _, tid := range t.threads {
			if _, ok := regs[tid]; !ok {
				return fmt.Errorf("no registers for tid %d", tid)
			}
		}
		if t.scratch != 0 {
			if err := t.dropScratch(t.threads[0]); err != nil {
				return err
			}
		}
		for _, tid := range t.threads {
			r := regs[tid]
			if err := setRegs(tid, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = t.leave(t.detach)
	}
	if err != nil {
		return fmt.Errorf("resume pid %d: %w", t.pid, err)
	}
	return nil
}

// dropScratch unmaps the scratch mapping with an injection into thread tid
// that runs the gadget inside it, which leaves the thread at the signal
// stop of the fault that follows. Tracer thread only.
func (t *Tracer) dropScratch(tid int) error {
	gadget := t.scratch
	_, err := t.run(tid, func(r *unix.PtraceRegs) {
		setSyscall(r, gadget, unix.SYS_MUNMAP, []uint64{gadget, scratchSize})
	}, faultStop(gadget))
	if err != nil {
		return fmt.Errorf("unmap scratch at %#x: %w", gadget, err)
	}
	t.scratch = 0
	return nil
}

// Exit ends the process as wait status ws says, leaving it a zombie for
// its parent to wait for: exit_group with the exit code, or death by the
// signal, which must take its default action, terminate, in the process
// (the caller sets it so). The signal is sent as the tracer's resumption
// of the stop, with every signal unblocked. A core dump is not made
// again, so WCOREDUMP stays clear. The Tracer takes no more requests.
func (t *Tracer) Exit(ws unix.WaitStatus) error {
	err := t.leave(func() error {
		tid := t.pid
		if len(t.threads) != 1 {
			return fmt.Errorf("%d threads, want the leader alone", len(t.threads))
		}
		if err := kernel.PtraceSetSigmask(tid, 0); err != nil {
			return err
		}
		sig := 0
		switch {
		case ws.Exited():
			gadget, err := t.gadget(tid)
			if err != nil {
				return err
			}
			var regs unix.PtraceRegs
			if err := getRegs(tid, &regs); err != nil {
				return err
			}
			setSyscall(&regs, gadget, unix.SYS_EXIT_GROUP, []uint64{uint64(ws.ExitStatus())})
			if err := setRegs(tid, &regs); err != nil {
				return err
			}
		case ws.Signaled():
			sig = int(ws.Signal())
		default:
			return fmt.Errorf("wait status %#x is neither an exit nor a death by a signal", int(ws))
		}
		if err := unix.PtraceCont(tid, sig); err != nil {
			return fmt.Errorf("continue tid %d: %w", tid, err)
		}
		// The tracer's wait hands the zombie to its parent.
		return reap(tid)
	})
	if err != nil {
		return fmt.Errorf("end pid %d with status %#x: %w", t.pid, int(ws), err)
	}
	return nil
}
