package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// ReadMem reads len(b) bytes of the tracee's memory at addr through
// /proc/PID/mem, which also reads pages the tracee cannot, PROT_NONE ones
// included (as a debugger does, with FOLL_FORCE).
func (t *Tracer) ReadMem(addr uint64, b []byte) error {
	if _, err := t.mem.ReadAt(b, int64(addr)); err != nil {
		return fmt.Errorf("read %d bytes at %#x of pid %d: %w", len(b), addr, t.pid, err)
	}
	return nil
}

// WriteMem writes b into the tracee's memory at addr through
// /proc/PID/mem, which also writes read-only and executable pages (a
// private file page is copied on write, as for any private write).
func (t *Tracer) WriteMem(addr uint64, b []byte) error {
	if _, err := t.mem.WriteAt(b, int64(addr)); err != nil {
		return fmt.Errorf("write %d bytes at %#x of pid %d: %w", len(b), addr, t.pid, err)
	}
	return nil
}

// ReadValue reads a kernel struct v (see kernel.Decode) at addr.
func (t *Tracer) ReadValue(addr uint64, v any) error {
	b := make([]byte, binary.Size(v))
	if err := t.ReadMem(addr, b); err != nil {
		return err
	}
	return kernel.Decode(b, v)
}

// WriteValue writes a kernel struct v (see kernel.Encode) at addr.
func (t *Tracer) WriteValue(addr uint64, v any) error {
	return t.WriteMem(addr, kernel.Encode(v))
}

// Segment is bytes to write at an address of the tracee.
type Segment struct {
	Addr uint64
	Data []byte
}

// iovMax is IOV_MAX, the most segments process_vm_writev takes at once.
const iovMax = 1024

// WriteMemVM writes b into the tracee's memory at addr, as WriteMemVMBatch
// does.
func (t *Tracer) WriteMemVM(addr uint64, b []byte) error {
	return t.WriteMemVMBatch([]Segment{{addr, b}})
}

// WriteMemVMBatch writes segs into the tracee's memory with
// process_vm_writev, up to IOV_MAX segments a call, which is the fast way
// to fill memory in bulk. A page the tracee itself may not write
// (read-only, executable) is written through /proc/PID/mem instead, like
// WriteMem. An unmapped page fails the write with an error that names its
// address, once everything before it is written. Neither needs the tracer
// thread: WriteMemVMBatch runs on the caller's, and concurrent calls run
// in parallel.
func (t *Tracer) WriteMemVMBatch(segs []Segment) error {
	todo := slices.DeleteFunc(slices.Clone(segs), func(s Segment) bool { return len(s.Data) == 0 })
	for len(todo) > 0 {
		// process_vm_writev stops short, without an error, at the first
		// page it cannot write; it fails only if that is the first.
		n, err := t.writev(todo[:min(len(todo), iovMax)])
		if n > 0 {
			todo = advance(todo, n)
			continue
		}
		if err != nil && !errors.Is(err, unix.EFAULT) {
			return fmt.Errorf("write %d bytes at %#x of pid %d: %w", len(todo[0].Data), todo[0].Addr, t.pid, err)
		}
		s := todo[0]
		page := min(len(s.Data), int(pageSize-s.Addr%pageSize))
		if err := t.WriteMem(s.Addr, s.Data[:page]); err != nil {
			return err
		}
		todo = advance(todo, page)
	}
	return nil
}

func (t *Tracer) writev(segs []Segment) (int, error) {
	local := make([]unix.Iovec, len(segs))
	remote := make([]unix.RemoteIovec, len(segs))
	for i, s := range segs {
		local[i].Base = &s.Data[0]
		local[i].SetLen(len(s.Data))
		remote[i] = unix.RemoteIovec{Base: uintptr(s.Addr), Len: len(s.Data)}
	}
	return unix.ProcessVMWritev(t.view, local, remote, 0)
}

// advance drops the first n bytes of segs, whose first segment it may
// change.
func advance(segs []Segment, n int) []Segment {
	for n >= len(segs[0].Data) {
		n -= len(segs[0].Data)
		if segs = segs[1:]; len(segs) == 0 {
			return segs
		}
	}
	segs[0].Addr += uint64(n)
	segs[0].Data = segs[0].Data[n:]
	return segs
}
