package kernel

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
