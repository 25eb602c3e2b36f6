package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Getfd returns a duplicate, in cryo, of descriptor fd of process pid.
func Getfd(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
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
