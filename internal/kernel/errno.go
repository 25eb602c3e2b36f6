package kernel

import "golang.org/x/sys/unix"

// The codes a system call interrupted by a signal returns inside the kernel
// (include/linux/errno.h; not uapi, but a tracer sees them in the return
// register of a thread it stopped in such a call). On the way back to user
// space the kernel turns them into a restart of the call or into EINTR,
// depending on the code and on whether a signal handler runs first.
const (
	// ErestartSys restarts unless a handler without SA_RESTART runs.
	ErestartSys = unix.Errno(512)
	// ErestartNoIntr always restarts.
	ErestartNoIntr = unix.Errno(513)
	// ErestartNoHand restarts unless a handler runs.
	ErestartNoHand = unix.Errno(514)
	// ErestartRestartBlock is ErestartNoHand, but the restart goes through
	// restart_syscall(2) and the thread's restart_block, which holds what
	// the call still has to do (e.g. the end of a relative sleep).
	ErestartRestartBlock = unix.Errno(516)
)
