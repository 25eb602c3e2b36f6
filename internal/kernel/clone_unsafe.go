package kernel

import (
	"fmt"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Clone3Exit creates a child process with clone3(2) and set_tid (the PID
// wanted in each PID namespace, innermost first; may be empty), and
// returns its PID. The child calls exit_group(0) at once: Go code cannot
// run in a raw fork child, so this only shows what clone3 grants. The
// caller reaps the child, which exits with SIGCHLD.
func Clone3Exit(setTid []int32) (int, error) {
	args := CloneArgs{ExitSignal: uint64(unix.SIGCHLD), SetTidSize: uint64(len(setTid))}
	if len(setTid) > 0 {
		args.SetTid = uint64(uintptr(unsafe.Pointer(&setTid[0])))
	}
	pid, errno := clone3Exit(&args)
	runtime.KeepAlive(setTid)
	if errno != 0 {
		return 0, fmt.Errorf("clone3 with set_tid %v: %w", setTid, errno)
	}
	return int(pid), nil
}

// clone3Exit is the part that runs in the child too. Like the child side of
// syscall.forkAndExecInChild it must not grow the stack nor call anything
// but raw system calls, hence nosplit and norace.
//
//go:nosplit
//go:norace
func clone3Exit(args *CloneArgs) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(args)), unsafe.Sizeof(*args), 0)
	if errno == 0 && pid == 0 {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return pid, errno
}
