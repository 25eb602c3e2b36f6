package ptrace

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// GetSigmask returns thread tid's blocked-signal mask (bit N-1 is signal N).
func (t *Tracer) GetSigmask(tid int) (uint64, error) {
	var mask uint64
	err := t.onThread(tid, func() (err error) {
		mask, err = kernel.PtraceGetSigmask(tid)
		return err
	})
	return mask, err
}

// SetSigmask sets thread tid's blocked-signal mask.
func (t *Tracer) SetSigmask(tid int, mask uint64) error {
	return t.onThread(tid, func() error { return kernel.PtraceSetSigmask(tid, mask) })
}

// QueuedSignals returns the siginfos (kernel.SiginfoSize bytes each) of the
// signals queued for thread tid, or for the whole process when shared,
// leaving them queued.
func (t *Tracer) QueuedSignals(tid int, shared bool) ([]byte, error) {
	var b []byte
	err := t.onThread(tid, func() (err error) {
		b, err = kernel.PtracePeekSiginfo(tid, shared)
		return err
	})
	return b, err
}

// StepOut single-steps thread tid until its instruction pointer leaves
// [start, end), at most limit steps, and returns its registers there. A
// dump uses it to take a thread out of the vDSO, whose code a restore on
// another kernel replaces.
//
// The thread steps with every signal blocked but the synchronous ones and
// SIGSTOP, as during an injection: a signal that arrives meanwhile stays
// queued where it was, with its siginfo, for the dump to record. One sent
// by a process that gets through is held back like one that comes during
// an injection (DeferredSignals); a fault raised by the vDSO code itself
// fails the step (ErrFault).
func (t *Tracer) StepOut(tid int, start, end uint64, limit int) (unix.PtraceRegs, error) {
	var regs unix.PtraceRegs
	err := t.onThread(tid, func() error {
		mask, err := kernel.PtraceGetSigmask(tid)
		if err != nil {
			return err
		}
		if err := kernel.PtraceSetSigmask(tid, injectMask); err != nil {
			return err
		}
		err = t.stepOut(tid, start, end, limit, &regs)
		if errors.Is(err, ErrExited) {
			return err
		}
		return errors.Join(err, kernel.PtraceSetSigmask(tid, mask))
	})
	return regs, err
}

// stepOut does the work of StepOut. Tracer thread only.
func (t *Tracer) stepOut(tid int, start, end uint64, limit int, regs *unix.PtraceRegs) error {
	if err := getRegs(tid, regs); err != nil {
		return err
	}
	for n := 0; pc(regs) >= start && pc(regs) < end; n++ {
		if n == limit {
			return fmt.Errorf("step tid %d out of [%#x, %#x): still at %#x after %d steps", tid, start, end, pc(regs), limit)
		}
		if err := unix.PtraceSingleStep(tid); err != nil {
			return fmt.Errorf("single-step tid %d: %w", tid, err)
		}
		ws, err := wait(tid)
		if err != nil {
			return err
		}
		if event(ws) == 0 {
			si, err := kernel.PtraceGetSiginfo(tid)
			if err != nil {
				return err
			}
			switch {
			case si.Code() <= 0: // sent by a process: the step is still to come
				t.deferSignal(tid, si)
			case ws.StopSignal() != unix.SIGTRAP:
				return fmt.Errorf("%w: %v stepping tid %d at %#x", ErrFault, ws.StopSignal(), tid, pc(regs))
			}
		}
		if err := getRegs(tid, regs); err != nil {
			return err
		}
	}
	return nil
}
