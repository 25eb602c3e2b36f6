package kernel

// Sigaction mirrors the struct sigaction that rt_sigaction(2) takes on
// x86_64 (struct sigaction in arch/x86/include/uapi/asm/signal.h, as the
// kernel uses it: no libc reordering): handler, flags, restorer, mask.
type Sigaction struct {
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// StackT mirrors stack_t (arch/x86/include/uapi/asm/signal.h), the
// alternate signal stack of sigaltstack(2).
type StackT struct {
	Sp    uint64
	Flags int32
	_     int32
	Size  uint64
}

// SsDisable is SS_DISABLE (include/uapi/linux/signal.h), StackT's flag
// for no alternate signal stack.
const SsDisable = 2

// Itimerval mirrors struct itimerval (include/uapi/linux/time.h): the
// interval, then the time left, each a struct timeval.
type Itimerval struct {
	IntervalSec, IntervalUsec int64
	ValueSec, ValueUsec       int64
}

// SchedParam mirrors struct sched_param
// (include/uapi/linux/sched/types.h).
type SchedParam struct {
	Priority int32
}

// Flock mirrors struct flock (include/uapi/asm-generic/fcntl.h) on
// x86_64, with the padding after l_whence that x/sys's Flock_t leaves to
// the Go compiler (encoding/binary would not add it).
type Flock struct {
	Type   int16
	Whence int16
	_      int32
	Start  int64
	Len    int64
	Pid    int32
	_      int32
}

// Sigevent mirrors struct sigevent (include/uapi/asm-generic/siginfo.h)
// on x86_64, as timer_create(2) takes it: the value, the signal, how to
// notify, the thread of SIGEV_THREAD_ID, padding to 64 bytes.
type Sigevent struct {
	Value  uint64
	Signo  int32
	Notify int32
	Tid    int32
	_      [44]byte
}

// How a POSIX timer notifies, its sigev_notify
// (include/uapi/asm-generic/siginfo.h); SigevThreadID goes with a signal.
const (
	SigevSignal   = 0
	SigevNone     = 1
	SigevThread   = 2
	SigevThreadID = 4
)

// CPUClock is what a negative clock id names, a CPU-time clock
// (include/linux/posix-timers_types.h): of process or thread Pid, 0 for
// the caller (the calling thread, for a thread clock), and which time.
type CPUClock struct {
	Pid    int
	Thread bool
	// Which is CPUCLOCK_PROF, CPUCLOCK_VIRT or CPUCLOCK_SCHED (0 to 2).
	Which int
}

// DecodeCPUClock splits a clock id into its CPU-time clock; ok is false
// for a clock id that is not one.
func DecodeCPUClock(id int32) (c CPUClock, ok bool) {
	if id >= 0 || id&3 == 3 {
		return CPUClock{}, false
	}
	return CPUClock{Pid: int(^(id >> 3)), Thread: id&4 != 0, Which: int(id & 3)}, true
}

// Msghdr mirrors struct user_msghdr (include/linux/socket.h) on x86_64,
// as recvmsg(2) takes it in another process's memory: x/sys's Msghdr
// holds Go pointers. ControlLen and Flags are what the kernel writes
// back.
type Msghdr struct {
	Name       uint64
	NameLen    uint32
	_          uint32
	Iov        uint64
	IovLen     uint64
	Control    uint64
	ControlLen uint64
	Flags      int32
	_          int32
}

// Iovec mirrors struct iovec (include/uapi/linux/uio.h).
type Iovec struct {
	Base, Len uint64
}
