package kernel

import "golang.org/x/sys/unix"

// kcmpFile is KCMP_FILE from include/uapi/linux/kcmp.h.
const kcmpFile = 0

// SameFile reports whether descriptors fd1 and fd2 of process pid refer to
// the same open file description (dup'ed descriptors share one position).
func SameFile(pid, fd1, fd2 int) (bool, error) {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), kcmpFile, uintptr(fd1), uintptr(fd2), 0)
	if errno != 0 {
		return false, errno
	}
	return r == 0, nil
}
