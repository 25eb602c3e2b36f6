package kernel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ptrace(req, tid int, addr, data uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// PtraceGetRegset reads register set note (an NT_* value) of a stopped
// thread into buf with PTRACE_GETREGSET and returns how many bytes the
// kernel wrote; a set larger than buf is cut short.
func PtraceGetRegset(tid, note int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: unsafe.SliceData(buf)}
	iov.SetLen(len(buf))
	if _, err := ptrace(unix.PTRACE_GETREGSET, tid, uintptr(note), uintptr(unsafe.Pointer(&iov))); err != nil {
		return 0, fmt.Errorf("get regset %#x of tid %d: %w", note, tid, err)
	}
	return int(iov.Len), nil
}

// PtraceSetRegset writes register set note of a stopped thread with
// PTRACE_SETREGSET.
func PtraceSetRegset(tid, note int, buf []byte) error {
	iov := unix.Iovec{Base: unsafe.SliceData(buf)}
	iov.SetLen(len(buf))
	if _, err := ptrace(unix.PTRACE_SETREGSET, tid, uintptr(note), uintptr(unsafe.Pointer(&iov))); err != nil {
		return fmt.Errorf("set regset %#x of tid %d: %w", note, tid, err)
	}
	return nil
}

// PtraceGetRseqConfiguration reads the rseq registration of a stopped
// thread.
func PtraceGetRseqConfiguration(tid int) (RseqConfiguration, error) {
	var c RseqConfiguration
	n, err := ptrace(unix.PTRACE_GET_RSEQ_CONFIGURATION, tid, unsafe.Sizeof(c), uintptr(unsafe.Pointer(&c)))
	if err != nil {
		return c, fmt.Errorf("get rseq configuration of tid %d: %w", tid, err)
	}
	if n != unsafe.Sizeof(c) {
		return c, fmt.Errorf("get rseq configuration of tid %d: %w: %d bytes, want %d", tid, ErrStructSize, n, unsafe.Sizeof(c))
	}
	return c, nil
}

// PtraceGetSigmask reads the blocked-signal mask of a stopped thread: bit
// N-1 stands for signal N.
func PtraceGetSigmask(tid int) (uint64, error) {
	var mask uint64
	if _, err := ptrace(unix.PTRACE_GETSIGMASK, tid, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); err != nil {
		return 0, fmt.Errorf("get signal mask of tid %d: %w", tid, err)
	}
	return mask, nil
}

// PtraceSetSigmask sets the blocked-signal mask of a stopped thread; the
// kernel never blocks SIGKILL and SIGSTOP whatever the mask says.
func PtraceSetSigmask(tid int, mask uint64) error {
	if _, err := ptrace(unix.PTRACE_SETSIGMASK, tid, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))); err != nil {
		return fmt.Errorf("set signal mask of tid %d: %w", tid, err)
	}
	return nil
}

// PtraceGetSiginfo reads the siginfo of the signal that put a thread in
// its current signal-delivery-stop.
func PtraceGetSiginfo(tid int) (Siginfo, error) {
	var si Siginfo
	if _, err := ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(&si))); err != nil {
		return si, fmt.Errorf("get siginfo of tid %d: %w", tid, err)
	}
	return si, nil
}

// PtraceSetSiginfo replaces the siginfo of the signal of a thread's
// signal-delivery-stop: resumed with that signal, the thread takes it with
// this siginfo.
func PtraceSetSiginfo(tid int, si *Siginfo) error {
	if _, err := ptrace(unix.PTRACE_SETSIGINFO, tid, 0, uintptr(unsafe.Pointer(si))); err != nil {
		return fmt.Errorf("set siginfo of tid %d: %w", tid, err)
	}
	return nil
}

// PtraceDetachSignal detaches a thread and, if it is at a
// signal-delivery-stop, delivers sig to it (0 for none).
func PtraceDetachSignal(tid int, sig unix.Signal) error {
	if _, err := ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig)); err != nil {
		return fmt.Errorf("ptrace detach tid %d: %w", tid, err)
	}
	return nil
}

// PtraceSeccompGetFilter returns the BPF program (struct sock_filter
// instructions, unix.SizeofSockFilter bytes each) of seccomp filter index
// of a stopped thread. Index 0 is the oldest filter, the first installed
// (whatever ptrace(2) says); past the newest the kernel answers ENOENT.
func PtraceSeccompGetFilter(tid, index int) ([]byte, error) {
	// A first call without a buffer answers the length.
	n, err := ptrace(unix.PTRACE_SECCOMP_GET_FILTER, tid, uintptr(index), 0)
	if err != nil {
		return nil, fmt.Errorf("get seccomp filter %d of tid %d: %w", index, tid, err)
	}
	if n == 0 {
		return nil, nil
	}
	// A filter never changes once installed.
	prog := make([]unix.SockFilter, n)
	if _, err := ptrace(unix.PTRACE_SECCOMP_GET_FILTER, tid, uintptr(index), uintptr(unsafe.Pointer(&prog[0]))); err != nil {
		return nil, fmt.Errorf("get seccomp filter %d of tid %d: %w", index, tid, err)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*unix.SizeofSockFilter), nil
}

// PtraceSeccompGetMetadata returns the metadata of seccomp filter index of
// a stopped thread (indexes as for PtraceSeccompGetFilter).
func PtraceSeccompGetMetadata(tid, index int) (SeccompMetadata, error) {
	md := SeccompMetadata{FilterOff: uint64(index)}
	n, err := ptrace(unix.PTRACE_SECCOMP_GET_METADATA, tid, unsafe.Sizeof(md), uintptr(unsafe.Pointer(&md)))
	if err != nil {
		return md, fmt.Errorf("get seccomp metadata %d of tid %d: %w", index, tid, err)
	}
	if n != unsafe.Sizeof(md) {
		return md, fmt.Errorf("get seccomp metadata %d of tid %d: %w: %d bytes, want %d", index, tid, ErrStructSize, n, unsafe.Sizeof(md))
	}
	return md, nil
}
