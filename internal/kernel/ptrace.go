package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Siginfo is a siginfo_t (include/uapi/asm-generic/siginfo.h) as the
// kernel copies it out: si_signo, si_errno and si_code are its first three
// ints.
type Siginfo [SiginfoSize]byte

// Signo is si_signo.
func (s *Siginfo) Signo() unix.Signal { return unix.Signal(binary.LittleEndian.Uint32(s[0:])) }

// Code is si_code: positive when the kernel raised the signal, 0 or
// negative (SI_USER, SI_TKILL, SI_QUEUE...) when a process sent it.
func (s *Siginfo) Code() int32 { return int32(binary.LittleEndian.Uint32(s[8:])) }

// SiTimer is si_code SI_TIMER: a POSIX timer's signal.
const SiTimer = -2

// ClearTimerPrivate zeroes, in a POSIX timer's signal, the int after
// si_value in _sifields._timer (_sys_private), which the kernel keeps for
// itself but PTRACE_PEEKSIGINFO copies out. Older kernels (5.10 among
// them) read it when the signal is taken, to rearm the timer it came from.
func (s *Siginfo) ClearTimerPrivate() {
	if s.Code() == SiTimer {
		clear(s[32:36])
	}
}

// RseqConfiguration mirrors struct ptrace_rseq_configuration in
// include/uapi/linux/ptrace.h: a thread's rseq registration as
// PTRACE_GET_RSEQ_CONFIGURATION reports it. RseqAbiPointer is 0 when the
// thread has not registered one.
type RseqConfiguration struct {
	RseqAbiPointer uint64
	RseqAbiSize    uint32
	Signature      uint32
	Flags          uint32
	Pad            uint32
}

// SeccompMetadata mirrors struct seccomp_metadata in
// include/uapi/linux/ptrace.h: which filter PTRACE_SECCOMP_GET_METADATA
// asks about, and the SECCOMP_FILTER_FLAG_* it was installed with that the
// kernel reports (SECCOMP_FILTER_FLAG_LOG only, as of Linux 6.18).
type SeccompMetadata struct {
	FilterOff uint64
	Flags     uint64
}
