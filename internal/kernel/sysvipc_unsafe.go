package kernel

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SemGetAll returns the values of the n semaphores of set id (GETALL).
func SemGetAll(id, n int) ([]uint16, error) {
	vals := make([]uint16, max(n, 1))
	_, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), 0, SemGetall, uintptr(unsafe.Pointer(&vals[0])), 0, 0)
	if errno != 0 {
		return nil, errno
	}
	return vals[:n], nil
}

// SemSetPerm sets the owner and mode of semaphore set id (IPC_SET).
func SemSetPerm(id int, uid, gid, mode uint32) error {
	ds := semidDs{Perm: unix.SysvIpcPerm{Uid: uid, Gid: gid, Mode: mode}}
	_, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), 0, unix.IPC_SET, uintptr(unsafe.Pointer(&ds)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// MsgSetPerm sets the owner, mode and byte limit of message queue id
// (IPC_SET); a limit above kernel.msgmnb needs CAP_SYS_RESOURCE.
func MsgSetPerm(id int, uid, gid, mode uint32, qbytes uint64) error {
	ds := msqidDs{Perm: unix.SysvIpcPerm{Uid: uid, Gid: gid, Mode: mode}, Qbytes: qbytes}
	_, _, errno := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_SET, uintptr(unsafe.Pointer(&ds)))
	if errno != 0 {
		return errno
	}
	return nil
}

// MsgQbytes returns the byte limit of message queue id (IPC_STAT).
func MsgQbytes(id int) (uint64, error) {
	var ds msqidDs
	_, _, errno := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_STAT, uintptr(unsafe.Pointer(&ds)))
	if errno != 0 {
		return 0, errno
	}
	return ds.Qbytes, nil
}

// MsgPeek copies the message at index i of queue id without taking it
// off (MSG_COPY), into buf, which must hold its type (8 bytes) and text:
// it returns the type and the text, within buf.
func MsgPeek(id, i int, buf []byte) (int64, []byte, error) {
	if len(buf) < 8 {
		return 0, nil, unix.EINVAL
	}
	r, _, errno := unix.Syscall6(unix.SYS_MSGRCV, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)-8),
		uintptr(i), MsgCopy|unix.IPC_NOWAIT, 0)
	if errno != 0 {
		return 0, nil, errno
	}
	return int64(binary.LittleEndian.Uint64(buf)), buf[8 : 8+r], nil
}

// MsgSend queues a message of type mtype and text text on queue id,
// without waiting for room (IPC_NOWAIT).
func MsgSend(id int, mtype int64, text []byte) error {
	b := MsgBuf(mtype, text)
	_, _, errno := unix.Syscall6(unix.SYS_MSGSND, uintptr(id), uintptr(unsafe.Pointer(&b[0])), uintptr(len(text)), unix.IPC_NOWAIT, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
