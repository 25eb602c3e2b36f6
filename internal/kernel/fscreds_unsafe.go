package kernel

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// threadGroups returns the calling thread's supplementary groups.
func threadGroups() ([]uint32, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_GETGROUPS, 0, 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("getgroups: %w", errno)
	}
	groups := make([]uint32, n+1) // never empty, for &groups[0]
	n, _, errno = unix.RawSyscall(unix.SYS_GETGROUPS, n, uintptr(unsafe.Pointer(&groups[0])), 0)
	runtime.KeepAlive(groups)
	if errno != 0 {
		return nil, fmt.Errorf("getgroups: %w", errno)
	}
	return groups[:n], nil
}

// setThreadGroups sets the calling thread's supplementary groups.
func setThreadGroups(groups []uint32) error {
	p := unsafe.Pointer(nil)
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0)
	runtime.KeepAlive(groups)
	if errno != 0 {
		return fmt.Errorf("setgroups %v: %w", groups, errno)
	}
	return nil
}
