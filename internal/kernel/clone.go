package kernel

// CloneArgs mirrors struct clone_args in include/uapi/linux/sched.h
// (CLONE_ARGS_SIZE_VER2, 88 bytes).
type CloneArgs struct {
	Flags      uint64
	Pidfd      uint64
	ChildTid   uint64
	ParentTid  uint64
	ExitSignal uint64
	Stack      uint64
	StackSize  uint64
	TLS        uint64
	// SetTid points to an array of SetTidSize pid_t: the PID wanted in
	// each PID namespace, innermost first.
	SetTid     uint64
	SetTidSize uint64
	Cgroup     uint64
}
