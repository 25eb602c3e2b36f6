package kernel

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// KcmpType is a resource kcmp(2) compares, from include/uapi/linux/kcmp.h.
type KcmpType int

// The kcmp types cryo compares.
const (
	KcmpFile    KcmpType = 0
	KcmpVM      KcmpType = 1
	KcmpFiles   KcmpType = 2
	KcmpFS      KcmpType = 3
	KcmpSighand KcmpType = 4
	KcmpIO      KcmpType = 5
	KcmpSysvsem KcmpType = 6
)

// String names the resource as the clone flag that shares it.
func (k KcmpType) String() string {
	switch k {
	case KcmpFile:
		return "open file description"
	case KcmpVM:
		return "address space (CLONE_VM)"
	case KcmpFiles:
		return "descriptor table (CLONE_FILES)"
	case KcmpFS:
		return "root, cwd and umask (CLONE_FS)"
	case KcmpSighand:
		return "signal handlers (CLONE_SIGHAND)"
	case KcmpIO:
		return "I/O context (CLONE_IO)"
	case KcmpSysvsem:
		return "System V semaphore undo list (CLONE_SYSVSEM)"
	}
	return "kcmp type " + strconv.Itoa(int(k))
}

// Kcmp compares resource typ of process pid1 with that of pid2 (for
// KcmpFile, descriptors idx1 and idx2): 0 if they are the same object,
// else 1 or 2, an order the kernel keeps consistent while both exist.
func Kcmp(pid1, pid2 int, typ KcmpType, idx1, idx2 int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), uintptr(typ), uintptr(idx1), uintptr(idx2), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// SameFile reports whether descriptor fd1 of process pid1 and fd2 of
// pid2 refer to the same open file description (dup'ed or inherited
// descriptors share one position).
func SameFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	r, err := Kcmp(pid1, pid2, KcmpFile, fd1, fd2)
	return r == 0 && err == nil, err
}
