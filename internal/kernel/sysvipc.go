package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// System V semaphore and message queue commands and flags x/sys lacks
// (<linux/sem.h>, <linux/msg.h>).
const (
	SemGetpid = 11 // semctl GETPID: the last process that changed a semaphore
	SemGetall = 13 // semctl GETALL
	SemSetval = 16 // semctl SETVAL
	// MsgCopy makes msgrcv copy the message at an index, leaving it
	// queued (MSG_COPY; CONFIG_CHECKPOINT_RESTORE), with IPC_NOWAIT.
	MsgCopy = 0o40000
)

// semidDs mirrors struct semid64_ds of arch/x86/include/uapi/asm/sembuf.h
// on x86_64.
type semidDs struct {
	Perm               unix.SysvIpcPerm
	Otime, _, Ctime, _ int64
	Nsems              uint64
	_, _               uint64
}

// msqidDs mirrors struct msqid64_ds of include/uapi/asm-generic/msgbuf.h
// on 64-bit.
type msqidDs struct {
	Perm                 unix.SysvIpcPerm
	Stime, Rtime, Ctime  int64
	Cbytes, Qnum, Qbytes uint64
	Lspid, Lrpid         int32
	_, _                 uint64
}

// SemGet is semget(2).
func SemGet(key, nsems, flags int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_SEMGET, uintptr(key), uintptr(nsems), uintptr(flags))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// SemGetPid returns the pid of the last process that changed semaphore
// num of set id (semop, SETVAL, SETALL), 0 if none has.
func SemGetPid(id, num int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), SemGetpid, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// SemRemove removes semaphore set id (IPC_RMID).
func SemRemove(id int) error {
	_, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), 0, unix.IPC_RMID, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// MsgGet is msgget(2).
func MsgGet(key, flags int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_MSGGET, uintptr(key), uintptr(flags), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// MsgRemove removes message queue id (IPC_RMID).
func MsgRemove(id int) error {
	_, _, errno := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_RMID, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// MsgBuf lays out a message as msgsnd takes it (struct msgbuf of
// <linux/msg.h>): its type, a long, then its text.
func MsgBuf(mtype int64, text []byte) []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(text)), uint64(mtype))
	return append(b, text...)
}
