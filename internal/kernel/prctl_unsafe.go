package kernel

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PrctlMmMapSize asks the kernel for its size of struct prctl_mm_map.
func PrctlMmMapSize() (int, error) {
	var size uint32
	_, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP_SIZE, uintptr(unsafe.Pointer(&size)), 0, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("get prctl_mm_map size: %w", errno)
	}
	return int(size), nil
}

// SetMmMap sets the calling process's mm fields to m, with auxv as its
// auxiliary vector (m.Auxv and m.AuxvSize are filled from it).
func SetMmMap(m PrctlMmMap, auxv []byte) error {
	if len(auxv) > 0 {
		m.Auxv = uint64(uintptr(unsafe.Pointer(&auxv[0])))
		m.AuxvSize = uint32(len(auxv))
	}
	_, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, uintptr(unsafe.Pointer(&m)), unsafe.Sizeof(m), 0, 0)
	runtime.KeepAlive(auxv)
	if errno != 0 {
		return fmt.Errorf("set mm map: %w", errno)
	}
	return nil
}
