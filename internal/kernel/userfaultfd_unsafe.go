package kernel

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Userfaultfd creates a userfaultfd descriptor with userfaultfd(2) flags
// (O_CLOEXEC, O_NONBLOCK).
func Userfaultfd(flags int) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, fmt.Errorf("userfaultfd: %w", errno)
	}
	return int(fd), nil
}

// UffdHandshake does the UFFDIO_API handshake on a userfaultfd, asking for
// features, and returns the kernel's answer: the features it enabled and
// the ioctls it now accepts.
func UffdHandshake(fd int, features uint64) (UffdioAPI, error) {
	api := UffdioAPI{API: UffdAPI, Features: features}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), UffdioAPIRequest, uintptr(unsafe.Pointer(&api)))
	if errno != 0 {
		return api, fmt.Errorf("userfaultfd api handshake: %w", errno)
	}
	return api, nil
}

// UffdRegister registers the range of n bytes at start with userfaultfd
// fd for its missing pages (UFFDIO_REGISTER_MODE_MISSING).
func UffdRegister(fd int, start, n uint64) error {
	reg := UffdioRegister{Range: UffdioRange{start, n}, Mode: UffdRegisterModeMissing}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), UffdioRegisterRequest, uintptr(unsafe.Pointer(&reg))); errno != 0 {
		return fmt.Errorf("register %d bytes at %#x with userfaultfd: %w", n, start, errno)
	}
	return nil
}

// UffdUnregister unregisters the range of n bytes at start.
func UffdUnregister(fd int, start, n uint64) error {
	r := UffdioRange{start, n}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), UffdioUnregisterRequest, uintptr(unsafe.Pointer(&r))); errno != 0 {
		return fmt.Errorf("unregister %d bytes at %#x from userfaultfd: %w", n, start, errno)
	}
	return nil
}

// UffdCopy fills the missing pages at dst, in the address space of the
// process that made userfaultfd fd, with src, len(src) bytes of this
// process's memory, page aligned: each page allocated and copied into,
// never zeroed first (UFFDIO_COPY). It returns how many bytes it copied,
// all unless it fails.
func UffdCopy(fd int, dst uint64, src []byte) (int, error) {
	defer runtime.KeepAlive(src)
	done, stalls := 0, 0
	for done < len(src) {
		c := UffdioCopy{Dst: dst + uint64(done), Src: uint64(uintptr(unsafe.Pointer(&src[done]))), Len: uint64(len(src) - done)}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), UffdioCopyRequest, uintptr(unsafe.Pointer(&c)))
		if c.Copy > 0 {
			done, stalls = done+int(c.Copy), 0
		} else {
			stalls++
		}
		// EAGAIN: the address space changed while it copied (or a
		// signal); what it copied is counted, and the rest is tried again.
		if errno != 0 && (errno != unix.EAGAIN || stalls > 100) {
			return done, fmt.Errorf("copy %d bytes to %#x through userfaultfd: %w", len(src)-done, dst+uint64(done), errno)
		}
	}
	return done, nil
}
