package kernel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SiginfoSize is the size of one siginfo_t as the kernel copies it out.
const SiginfoSize = 128

// peekSiginfoArgs mirrors struct ptrace_peeksiginfo_args in
// include/uapi/linux/ptrace.h.
type peekSiginfoArgs struct {
	Off   uint64
	Flags uint32
	Nr    int32
}

// ptracePeekSiginfoShared selects the process-wide queue instead of the
// thread's own (PTRACE_PEEKSIGINFO_SHARED).
const ptracePeekSiginfoShared = 1

// PtracePeekSiginfo copies the queued signals of a stopped thread, or of its
// process when shared, without dequeuing them: each is SiginfoSize bytes of
// the result.
func PtracePeekSiginfo(tid int, shared bool) ([]byte, error) {
	const batch = 32
	var out []byte
	buf := make([]byte, batch*SiginfoSize)
	args := peekSiginfoArgs{Nr: batch}
	if shared {
		args.Flags = ptracePeekSiginfoShared
	}
	for {
		n, err := ptrace(unix.PTRACE_PEEKSIGINFO, tid, uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
		if err != nil {
			return nil, fmt.Errorf("peek queued signals of tid %d: %w", tid, err)
		}
		out = append(out, buf[:n*SiginfoSize]...)
		if n < batch {
			return out, nil
		}
		args.Off += uint64(n)
	}
}
