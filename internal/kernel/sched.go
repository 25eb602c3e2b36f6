package kernel

import "golang.org/x/sys/unix"

// SchedResetOnFork is SCHED_RESET_ON_FORK from include/uapi/linux/sched.h:
// the flag sched_getscheduler ORs into a policy whose children start with
// the default one. /proc/PID/stat leaves it out.
const SchedResetOnFork = 0x40000000

// SchedGetScheduler returns the scheduling policy of thread tid, with
// SchedResetOnFork.
func SchedGetScheduler(tid int) (uint32, error) {
	r, _, errno := unix.Syscall(unix.SYS_SCHED_GETSCHEDULER, uintptr(tid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return uint32(r), nil
}
