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
