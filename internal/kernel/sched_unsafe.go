package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// CurrentCPU returns the CPU the calling thread runs on (getcpu(2)),
// which x/sys lacks.
func CurrentCPU() (int, error) {
	var cpu uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); errno != 0 {
		return 0, errno
	}
	return int(cpu), nil
}
