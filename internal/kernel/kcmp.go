package kernel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// kcmpFile is KCMP_FILE from include/uapi/linux/kcmp.h.
const kcmpFile = 0

// SameFile reports whether descriptors fd1 and fd2 of process pid refer to
// the same open file description (dup'ed descriptors share one position).
func SameFile(pid, fd1, fd2 int) (bool, error) {
	c, err := CompareFiles(pid, fd1, fd2)
	return c == 0, err
}

// CompareFiles orders the open file descriptions of descriptors fd1 and
// fd2 of process pid: 0 if they are one, else -1 or 1 by an order the
// kernel keeps for as long as both are open, so that descriptions can be
// sorted and searched.
func CompareFiles(pid, fd1, fd2 int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), kcmpFile, uintptr(fd1), uintptr(fd2), 0)
	if errno != 0 {
		return 0, errno
	}
	switch r {
	case 0:
		return 0, nil
	case 1: // the first is less
		return -1, nil
	case 2:
		return 1, nil
	}
	return 0, fmt.Errorf("kcmp of fds %d and %d of pid %d: no order (%d)", fd1, fd2, pid, r)
}
