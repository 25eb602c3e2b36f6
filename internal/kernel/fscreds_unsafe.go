package kernel

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
