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

// ioprioWhoProcess is IOPRIO_WHO_PROCESS (include/uapi/linux/ioprio.h):
// the I/O priority calls' who is a thread id.
const ioprioWhoProcess = 1

// IoprioGet returns the I/O priority of thread tid, class and data as
// the kernel encodes them; 0 when none was set, which kernels before 5.15
// or so say as the class none (0) with the data the nice value implies,
// and later ones refuse to be set.
func IoprioGet(tid int) (uint32, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
	if errno != 0 {
		return 0, errno
	}
	if r>>ioprioClassShift == 0 {
		return 0, nil
	}
	return uint32(r), nil
}

// ioprioClassShift is IOPRIO_CLASS_SHIFT (include/uapi/linux/ioprio.h).
const ioprioClassShift = 13

// IoprioSet sets the I/O priority of thread tid.
func IoprioSet(tid int, prio uint32) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(prio)); errno != 0 {
		return errno
	}
	return nil
}
