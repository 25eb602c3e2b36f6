package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// GetsockoptBytes reads socket option opt of level into buf and returns
// the length the kernel reports (which, for SO_GET_FILTER, counts
// instructions, and with an empty buf is all it does). x/sys's
// GetsockoptString stops at the first zero byte, which binary options
// hold.
func GetsockoptBytes(fd, level, opt int, buf []byte) (int, error) {
	n := uint32(len(buf))
	p := unsafe.Pointer(nil)
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
