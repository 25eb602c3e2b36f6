package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// GetsockoptBytes reads socket option opt of level into buf and returns
// the length the kernel reports (which, for SO_GET_FILTER, counts
// instructions, and with an empty buf is all it does). x/sys's
// GetsockoptString stops at the first zero byte, which binary options
// hold.
func GetsockoptBytes(fd, level, opt int, buf []byte) (int, error) {
	n := uint32(len(buf))
	p := unsafe.Pointer(nil)
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Recvmsg is recvmsg(2) that returns the sender's address as the kernel
// gives it: the bytes of sun_path it names, an abstract name's zero bytes
// all kept (x/sys cuts one at its first zero byte past the leading one),
// a path's ending zero byte too.
func Recvmsg(fd int, p, oob []byte, flags int) (n, oobn, recvflags int, from []byte, err error) {
	var rsa unix.RawSockaddrUnix
	iov := unix.Iovec{}
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&rsa)), Namelen: uint32(unsafe.Sizeof(rsa)), Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if errno != 0 {
		return 0, 0, 0, nil, errno
	}
	if l := int(msg.Namelen) - int(unsafe.Offsetof(rsa.Path)); l > 0 && rsa.Family == unix.AF_UNIX {
		from = make([]byte, min(l, len(rsa.Path)))
		for i := range from {
			from[i] = byte(rsa.Path[i])
		}
	}
	return int(r), int(msg.Controllen), int(msg.Flags), from, nil
}
