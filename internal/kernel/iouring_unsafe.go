package kernel

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// IOUringSetup calls io_uring_setup(2) in cryo with p, which it fills.
func IOUringSetup(entries uint32, p *IOUringParams) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// IOUringEnter calls io_uring_enter(2) in cryo, arg (of size bytes, may
// be nil) as its last arguments.
func IOUringEnter(fd int, toSubmit, minComplete, flags uint32, arg unsafe.Pointer, size uintptr) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), uintptr(arg), size)
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// IOUringRegister calls io_uring_register(2) in cryo.
func IOUringRegister(fd int, op uint32, arg unsafe.Pointer, nr uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(op), uintptr(arg), uintptr(nr), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// IOUringWait waits at most timeout in io_uring_enter for min
// completions (IORING_ENTER_GETEVENTS with a timeout, IORING_ENTER_EXT_ARG).
func IOUringWait(fd int, min uint32, timeout time.Duration) error {
	ts := unix.NsecToTimespec(int64(timeout))
	arg := IOUringGeteventsArg{Ts: uint64(uintptr(unsafe.Pointer(&ts)))}
	_, err := IOUringEnter(fd, 0, min, IORingEnterGetEvents|IORingEnterExtArg, unsafe.Pointer(&arg), unsafe.Sizeof(arg))
	return err
}

// IOUringBufGroupStatus asks for the status of buffer group bgid
// (IORING_REGISTER_PBUF_STATUS).
func IOUringBufGroupStatus(fd int, bgid uint32) error {
	st := IOUringBufStatus{BufGroup: bgid}
	_, err := IOUringRegister(fd, IORingRegisterPbufStatus, unsafe.Pointer(&st), 1)
	return err
}
