package kernel

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// PidfdThread is PIDFD_THREAD (include/uapi/linux/pidfd.h, Linux 6.9):
// pidfd_open of a thread that does not lead its thread group.
const PidfdThread = unix.O_EXCL

// Getfd returns a duplicate, in cryo, of descriptor fd of process pid, or
// of thread pid when the process's leader has exited (which has no
// descriptors any more): pidfd_open refuses a thread that does not lead
// its group (ENOENT) without PIDFD_THREAD.
func Getfd(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ENOENT) {
		pidfd, err = unix.PidfdOpen(pid, PidfdThread)
	}
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd %d of pid %d: %w", fd, pid, err)
	}
	return dup, nil
}
