package kernel

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PagemapScan asks an open /proc/PID/pagemap, fd, for the regions of
// [start, end) whose pages are in every category of all and in one or
// more of anyOf (each ignored if 0), into vec; a region's pages are in
// the same of these categories. It returns how many regions it filled
// and where its walk stopped: before end when vec is full, so the caller
// goes on from there. Kernels
// without PAGEMAP_SCAN answer ENOTTY, and those that do not know one of
// the categories EINVAL.
func PagemapScan(fd int, start, end, all, anyOf uint64, vec []PageRegion) (int, uint64, error) {
	arg := pmScanArg{
		Size: uint64(unsafe.Sizeof(pmScanArg{})), Start: start, End: end,
		Vec: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(vec)))), VecLen: uint64(len(vec)),
		CategoryMask: all, AnyofMask: anyOf, ReturnMask: all | anyOf,
	}
	n, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), PagemapScanRequest, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(vec) // the kernel wrote it through a bare address
	if errno != 0 {
		return 0, 0, errno
	}
	return int(n), arg.WalkEnd, nil
}
