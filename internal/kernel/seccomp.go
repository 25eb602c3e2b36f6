package kernel

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// SockFprog mirrors struct sock_fprog (include/uapi/linux/filter.h) as a
// tracee passes it to seccomp(2): the number of instructions, then the
// address of the first.
type SockFprog struct {
	Len    uint16
	_      [6]byte
	Filter uint64
}

// SeccompProgram checks that prog is a classic BPF program as seccomp(2)
// takes one: whole struct sock_filter instructions (code, jt, jf, k), 1
// to BPF_MAXINSNS of them. notifies reports whether the program may
// return SECCOMP_RET_USER_NOTIF, which hands the system call to the
// filter's listener (SECCOMP_FILTER_FLAG_NEW_LISTENER): an instruction
// returns it, or returns the accumulator, whose value only running the
// program tells.
func SeccompProgram(prog []byte) (notifies bool, err error) {
	n := len(prog) / unix.SizeofSockFilter
	if len(prog)%unix.SizeofSockFilter != 0 || n == 0 || n > unix.BPF_MAXINSNS {
		return false, fmt.Errorf("%w: %d bytes, not 1 to %d instructions of %d bytes", ErrSeccompProgram, len(prog), unix.BPF_MAXINSNS, unix.SizeofSockFilter)
	}
	for i := range n {
		insn := prog[i*unix.SizeofSockFilter:]
		code := binary.LittleEndian.Uint16(insn)
		if code&bpfClass != unix.BPF_RET {
			continue
		}
		if code&bpfRval == unix.BPF_A {
			return true, nil
		}
		if k := binary.LittleEndian.Uint32(insn[4:]); k&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_USER_NOTIF {
			return true, nil
		}
	}
	return false, nil
}

// The fields of a BPF instruction's code (BPF_CLASS and BPF_RVAL in
// include/uapi/linux/filter.h), which x/sys lacks.
const (
	bpfClass = 0x07
	bpfRval  = 0x18
)
