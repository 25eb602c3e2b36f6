package kernel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Userfaultfd creates a userfaultfd descriptor with userfaultfd(2) flags
// (O_CLOEXEC, O_NONBLOCK).
func Userfaultfd(flags int) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, fmt.Errorf("userfaultfd: %w", errno)
	}
	return int(fd), nil
}

// UffdHandshake does the UFFDIO_API handshake on a userfaultfd, asking for
// features, and returns the kernel's answer: the features it enabled and
// the ioctls it now accepts.
func UffdHandshake(fd int, features uint64) (UffdioAPI, error) {
	api := UffdioAPI{API: UffdAPI, Features: features}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), UffdioAPIRequest, uintptr(unsafe.Pointer(&api)))
	if errno != 0 {
		return api, fmt.Errorf("userfaultfd api handshake: %w", errno)
	}
	return api, nil
}
