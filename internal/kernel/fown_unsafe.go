package kernel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fGetownerUids is F_GETOWNER_UIDS (include/uapi/linux/fcntl.h, with
// CONFIG_CHECKPOINT_RESTORE): the real and effective uid an open file's
// owner was set with.
const fGetownerUids = 17

// The owner types of struct f_owner_ex (include/uapi/asm-generic/fcntl.h),
// which x/sys lacks.
const (
	FOwnerTID  = 0
	FOwnerPID  = 1
	FOwnerPGRP = 2
)

// fOwnerEx mirrors struct f_owner_ex in include/uapi/asm-generic/fcntl.h.
type fOwnerEx struct {
	Type int32
	Pid  int32
}

// Owner is who gets an open file's signal-driven I/O signals (F_SETOWN,
// F_SETSIG): a thread, process or process group (Type, one of FOwnerTID,
// FOwnerPID, FOwnerPGRP) of Pid, with the
// credentials whoever set it had, which decide whether the signal may
// be sent; Sig 0 is SIGIO.
type Owner struct {
	Type, Pid, Sig int
	UID, EUID      uint32
}

// Kind names what o.Pid is: a thread, process or process group.
func (o Owner) Kind() string {
	switch o.Type {
	case FOwnerTID:
		return "thread"
	case FOwnerPGRP:
		return "process group"
	}
	return "process"
}

// GetOwner reads the owner of open file fd.
func GetOwner(fd int) (Owner, error) {
	var ex fOwnerEx
	if _, _, errno := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETOWN_EX, uintptr(unsafe.Pointer(&ex))); errno != 0 {
		return Owner{}, fmt.Errorf("read owner (F_GETOWN_EX): %w", errno)
	}
	sig, err := unix.FcntlInt(uintptr(fd), unix.F_GETSIG, 0)
	if err != nil {
		return Owner{}, fmt.Errorf("read owner's signal (F_GETSIG): %w", err)
	}
	o := Owner{Type: int(ex.Type), Pid: int(ex.Pid), Sig: sig}
	if o.Pid == 0 {
		return o, nil
	}
	var uids [2]uint32
	if _, _, errno := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), fGetownerUids, uintptr(unsafe.Pointer(&uids[0]))); errno != 0 {
		return Owner{}, fmt.Errorf("read owner's credentials (F_GETOWNER_UIDS): %w", errno)
	}
	o.UID, o.EUID = uids[0], uids[1]
	return o, nil
}

// SetOwner makes o the owner of open file fd. The caller's real and
// effective uids become the owner's credentials.
func SetOwner(fd int, o Owner) error {
	ex := fOwnerEx{Type: int32(o.Type), Pid: int32(o.Pid)}
	if o.Pid != 0 {
		if _, _, errno := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETOWN_EX, uintptr(unsafe.Pointer(&ex))); errno != 0 {
			return fmt.Errorf("set owner %d (F_SETOWN_EX type %d): %w", o.Pid, o.Type, errno)
		}
	}
	if o.Sig != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETSIG, o.Sig); err != nil {
			return fmt.Errorf("set owner's signal %d (F_SETSIG): %w", o.Sig, err)
		}
	}
	return nil
}
