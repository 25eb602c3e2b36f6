package ptrace

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// Batches: one injected system call costs a stop of the thread and
// several ptrace requests; a restore that makes 60,000 mappings would pay
// that 120,000 times. Syscalls writes a list of calls into the scratch
// mapping instead, and a loop in the gadget's page (batchCode) runs them
// one after the other, stopping once at the end: one stop per batchCap
// calls.

const (
	// batchOffset is where batchCode sits in the gadget's page: above the
	// Clone3 arguments, far above the stack of injected calls.
	batchOffset = 512
	// batchSize is the part of the scratch mapping, after the caller's
	// buffer, that holds the entries of a batch.
	batchSize = 16 * pageSize
	// entrySize is the size of an entry: the number, six arguments, the
	// flags and the result, eight bytes each.
	entrySize = 9 * 8
	batchCap  = batchSize / entrySize
	// mayFail is the flag that lets a batch go on past a failed call.
	mayFail = 1
)

// Sys is one system call of a batch that Syscalls injects. Its arguments
// must not point into the scratch mapping's batch area.
type Sys struct {
	Nr   int
	Args [maxArgs]uint64
	// MayFail lets the batch go on past a failure of this call.
	MayFail bool
	// Ret is what the call returned, set by Syscalls: the negated errno
	// if it failed.
	Ret uint64
}

// Failed returns the error of a call that Syscalls ran, nil if it
// succeeded.
func (s *Sys) Failed() error {
	if e := int64(s.Ret); e < 0 && e >= -4095 {
		return unix.Errno(-e)
	}
	return nil
}

// SyscallError is the failure of one call of a batch: the calls before it
// were done, those after it were not.
type SyscallError struct {
	// Index is the failed call's index in the slice given to Syscalls.
	Index int
	Nr    int
	Err   error
}

func (e *SyscallError) Error() string {
	return fmt.Sprintf("call %d (%s): %v", e.Index, kernel.SyscallName(e.Nr), e.Err)
}

func (e *SyscallError) Unwrap() error { return e.Err }

// Syscalls injects calls into thread tid in order and sets their results,
// batchCap calls per stop. It stops at the first call that fails without
// MayFail and returns a *SyscallError naming it.
func (t *Tracer) Syscalls(tid int, calls []Sys) error {
	err := t.onThread(tid, func() error {
		gadget, err := t.gadget(tid)
		if err != nil {
			return err
		}
		for done := 0; done < len(calls); {
			n := min(batchCap, len(calls)-done)
			if err := t.runBatch(tid, gadget, calls[done:done+n], done); err != nil {
				return err
			}
			done += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inject %d system calls into tid %d: %w", len(calls), tid, err)
	}
	return nil
}

// runBatch runs calls, at most batchCap of them, the first of which is
// call number first of the caller's. Tracer thread only.
func (t *Tracer) runBatch(tid int, gadget uint64, calls []Sys, first int) error {
	entries := gadget + 2*pageSize
	if cap(t.batch) < len(calls)*entrySize {
		t.batch = make([]byte, 0, len(calls)*entrySize)
	}
	b := t.batch[:0]
	for _, c := range calls {
		b = binary.NativeEndian.AppendUint64(b, uint64(c.Nr))
		for _, a := range c.Args {
			b = binary.NativeEndian.AppendUint64(b, a)
		}
		var flags uint64
		if c.MayFail {
			flags = mayFail
		}
		b = binary.NativeEndian.AppendUint64(b, flags)
		b = binary.NativeEndian.AppendUint64(b, 0)
	}
	if err := t.WriteMem(entries, b); err != nil {
		return err
	}
	code := gadget + batchOffset
	regs, err := t.run(tid, func(r *unix.PtraceRegs) { setBatch(r, code, entries, len(calls)) }, batchStop(code))
	if err != nil {
		return err
	}
	at, left := batchLeft(&regs)
	ran := len(calls)
	if left != 0 {
		ran = int((at-entries)/entrySize) + 1
	}
	if ran < 1 || ran > len(calls) {
		return fmt.Errorf("%w: batch stopped at %#x with %d left", ErrFault, at, left)
	}
	if err := t.ReadMem(entries, b[:ran*entrySize]); err != nil {
		return err
	}
	for i := range ran {
		calls[i].Ret = binary.NativeEndian.Uint64(b[i*entrySize+8*8:])
	}
	if left != 0 {
		c := &calls[ran-1]
		return &SyscallError{Index: first + ran - 1, Nr: c.Nr, Err: c.Failed()}
	}
	return nil
}
