package kernel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GetRobustList reads thread tid's robust futex list registration, which a
// tracer may read from outside.
func GetRobustList(tid int) (RobustList, error) {
	var r RobustList
	_, _, errno := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid), uintptr(unsafe.Pointer(&r.Head)), uintptr(unsafe.Pointer(&r.Len)))
	if errno != 0 {
		return r, fmt.Errorf("get robust list of tid %d: %w", tid, errno)
	}
	return r, nil
}
