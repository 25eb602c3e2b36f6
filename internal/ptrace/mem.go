package ptrace

import "fmt"

// ReadMem reads len(b) bytes of the tracee's memory at addr through
// /proc/PID/mem, which also reads pages the tracee cannot (PROT_NONE
// excepted).
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
