package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kcmpEpollTFD is KCMP_EPOLL_TFD from include/uapi/linux/kcmp.h.
const kcmpEpollTFD = 7

// kcmpEpollSlot mirrors struct kcmp_epoll_slot in
// include/uapi/linux/kcmp.h.
type kcmpEpollSlot struct{ efd, tfd, toff uint32 }

// EpollTargetIs reports whether descriptor fd of process pid is the file
// that the toff-th registration under number tfd of epoll epfd, a
// descriptor of process epPid, watches; fd need not be tfd, which may be
// closed or reused.
func EpollTargetIs(pid, fd, epPid, epfd, tfd int, toff uint32) (bool, error) {
	slot := kcmpEpollSlot{uint32(epfd), uint32(tfd), toff}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(epPid), kcmpEpollTFD,
		uintptr(fd), uintptr(unsafe.Pointer(&slot)), 0)
	if errno != 0 {
		return false, errno
	}
	return r == 0, nil
}
