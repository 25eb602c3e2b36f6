package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// GetRegs reads the general-purpose registers of thread tid.
func (t *Tracer) GetRegs(tid int) (unix.PtraceRegs, error) {
	var regs unix.PtraceRegs
	err := t.onThread(tid, func() error { return getRegs(tid, &regs) })
	return regs, err
}

// SetRegs writes the general-purpose registers of thread tid.
func (t *Tracer) SetRegs(tid int, regs unix.PtraceRegs) error {
	return t.onThread(tid, func() error { return setRegs(tid, &regs) })
}

// PC is the instruction pointer in registers r.
func PC(r unix.PtraceRegs) uint64 { return pc(&r) }

// getRegs reads the general registers of stopped thread tid. Tracer
// thread only.
func getRegs(tid int, regs *unix.PtraceRegs) error {
	assertTracer(tid)
	if err := unix.PtraceGetRegs(tid, regs); err != nil {
		return fmt.Errorf("get registers of tid %d: %w", tid, err)
	}
	return nil
}

// setRegs writes the general registers of stopped thread tid. Tracer
// thread only.
func setRegs(tid int, regs *unix.PtraceRegs) error {
	assertTracer(tid)
	if err := unix.PtraceSetRegs(tid, regs); err != nil {
		return fmt.Errorf("set registers of tid %d: %w", tid, err)
	}
	return nil
}

// GetRegset reads register set note (an NT_* value such as
// unix.NT_X86_XSTATE) of thread tid, as many bytes as the kernel has.
func (t *Tracer) GetRegset(tid, note int) ([]byte, error) {
	var out []byte
	err := t.onThread(tid, func() (err error) {
		out, err = getRegset(tid, note)
		return err
	})
	return out, err
}

// getRegset reads register set note of stopped thread tid. Tracer thread
// only.
func getRegset(tid, note int) ([]byte, error) {
	assertTracer(tid)
	// The kernel silently cuts a set short to the buffer: grow the buffer
	// until the set fits with room to spare.
	for size := 4096; ; size *= 2 {
		buf := make([]byte, size)
		n, err := kernel.PtraceGetRegset(tid, note, buf)
		if err != nil {
			return nil, err
		}
		if n < size {
			return buf[:n:n], nil
		}
	}
}

// SetRegset writes register set note of thread tid.
func (t *Tracer) SetRegset(tid, note int, data []byte) error {
	return t.onThread(tid, func() error { return kernel.PtraceSetRegset(tid, note, data) })
}

// GetRseqConfiguration reads the rseq registration of thread tid.
func (t *Tracer) GetRseqConfiguration(tid int) (kernel.RseqConfiguration, error) {
	var c kernel.RseqConfiguration
	err := t.onThread(tid, func() (err error) {
		c, err = kernel.PtraceGetRseqConfiguration(tid)
		return err
	})
	return c, err
}
