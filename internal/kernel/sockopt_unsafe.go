package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// getsockopt reads an option into b, which x/sys offers only for its
// own types, and returns how many bytes the kernel wrote.
func getsockopt(fd, level, opt int, b []byte) (int, error) {
	n := uint32(len(b))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
