package dump

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// System V semaphore sets and message queues are named by id, never
// attached: which ones a process uses is what the kernel says last used
// them, or what its threads wait on. The tree uses a message queue whose
// last sender or receiver (lspid, lrpid) is one of its processes, or
// that one of its threads was blocked sending to or receiving from when
// frozen (msgsnd, msgrcv: the call and the id in its registers), and a
// semaphore set one of whose semaphores was last changed (sempid: semop,
// SETVAL, SETALL) by one, or that one was blocked in a semop on. The
// kernel keeps no creator pid for either (cuid is a user, not a
// process). Those are kept, with their key, id, mode, owner and
// contents; the others are left alone, as they are left in the kernel.

// gone reports whether a System V object went away while it was read.
func gone(err error) bool { return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) }

// dumpSysvIPC records the semaphore sets and message queues the tree
// uses, and refuses a process that may have semaphore adjustments to
// undo (checkSemUndo).
func (t *tree) dumpSysvIPC() error {
	ours := map[int32]bool{}
	for _, d := range t.procs {
		ours[int32(d.pid)] = true
	}
	semWaits, msgWaits := t.sysvWaits()
	sets, err := proc.ReadSysvSem()
	if err != nil {
		return err
	}
	for _, s := range sets {
		used, err := semWaits[s.ID], error(nil)
		if !used {
			used, err = semUsed(s, ours)
		}
		if gone(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("read the pids of System V semaphore set %d: %w", s.ID, err)
		}
		if !used {
			continue
		}
		vals, err := kernel.SemGetAll(int(s.ID), int(s.Nsems))
		if gone(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("read System V semaphore set %d (GETALL): %w", s.ID, err)
		}
		t.sysvSem = append(t.sysvSem, image.SemSet{
			Entry:  &pb.IpcSemEntry{Desc: ipcDesc(s.Key, s.ID, s.Mode, s.UID, s.GID, s.CUID, s.CGID), Nsems: s.Nsems},
			Values: vals,
		})
		t.log.Info("System V semaphore set", "id", s.ID, "key", fmt.Sprintf("%#x", uint32(s.Key)), "values", vals,
			"mode", fmt.Sprintf("%#o", s.Mode), "uid", s.UID, "gid", s.GID)
	}
	if len(t.sysvSem) > 0 {
		if err := t.checkSemUndo(); err != nil {
			return err
		}
	}
	queues, err := proc.ReadSysvMsg()
	if err != nil {
		return err
	}
	for _, q := range queues {
		if !ours[q.Lspid] && !ours[q.Lrpid] && !msgWaits[q.ID] {
			continue
		}
		e, err := t.dumpMsgQueue(q)
		if gone(err) {
			continue
		} else if err != nil {
			return err
		}
		t.sysvMsg = append(t.sysvMsg, e)
	}
	return nil
}

// noteSysvWait notes the id of the semaphore set or message queue that
// a thread of the process, with registers r, was blocked on when frozen:
// the call it was in (orig_rax) was interrupted (rax holds EINTR, which
// semop returns even to a stop, or a restart code), and its first
// argument is the id.
func (d *dumper) noteSysvWait(r *pb.UserX86RegsEntry) {
	switch unix.Errno(-r.GetAx()) {
	case unix.EINTR, kernel.ErestartSys, kernel.ErestartNoIntr, kernel.ErestartNoHand, kernel.ErestartRestartBlock:
	default:
		return
	}
	switch r.GetOrigAx() {
	case unix.SYS_SEMOP, unix.SYS_SEMTIMEDOP:
		d.semWaits = append(d.semWaits, int32(r.GetDi()))
	case unix.SYS_MSGSND, unix.SYS_MSGRCV:
		d.msgWaits = append(d.msgWaits, int32(r.GetDi()))
	}
}

// sysvWaits returns the ids of the semaphore sets and message queues
// that threads of the tree were blocked on when frozen (noteSysvWait).
func (t *tree) sysvWaits() (sems, queues map[int32]bool) {
	sems, queues = map[int32]bool{}, map[int32]bool{}
	for _, d := range t.procs {
		for _, id := range d.semWaits {
			sems[id] = true
		}
		for _, id := range d.msgWaits {
			queues[id] = true
		}
	}
	return sems, queues
}

// semUsed reports whether a process of ours last changed a semaphore of
// set s.
func semUsed(s proc.SysvSem, ours map[int32]bool) (bool, error) {
	for i := range int(s.Nsems) {
		pid, err := kernel.SemGetPid(int(s.ID), i)
		if err != nil || ours[int32(pid)] {
			return err == nil, err
		}
	}
	return false, nil
}

// dumpMsgQueue reads the messages of queue q in order without taking
// them off (MSG_COPY), and its byte limit.
func (t *tree) dumpMsgQueue(q proc.SysvMsg) (image.MsgQueue, error) {
	qbytes, err := kernel.MsgQbytes(int(q.ID))
	if err != nil {
		return image.MsgQueue{}, fmt.Errorf("stat System V message queue %d: %w", q.ID, err)
	}
	mq := image.MsgQueue{Entry: &pb.IpcMsgEntry{
		Desc:   ipcDesc(q.Key, q.ID, q.Mode, q.UID, q.GID, q.CUID, q.CGID),
		Qbytes: uint32(qbytes),
	}}
	// A message is no larger than the queue's bytes when listed, unless
	// one came since: then the buffer grows.
	buf := make([]byte, 8+max(q.Cbytes, 64))
	for i := 0; ; {
		typ, text, err := kernel.MsgPeek(int(q.ID), i, buf)
		switch {
		case errors.Is(err, unix.ENOMSG):
			t.log.Info("System V message queue", "id", q.ID, "key", fmt.Sprintf("%#x", uint32(q.Key)), "messages", len(mq.Msgs),
				"qbytes", qbytes, "mode", fmt.Sprintf("%#o", q.Mode), "uid", q.UID, "gid", q.GID, "lspid", q.Lspid, "lrpid", q.Lrpid)
			return mq, nil
		case errors.Is(err, unix.E2BIG) && len(buf) < 1<<31:
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return mq, fmt.Errorf("copy message %d of System V message queue %d (MSG_COPY): %w", i, q.ID, err)
		}
		mq.Msgs = append(mq.Msgs, image.Msg{Type: uint64(typ), Text: append([]byte(nil), text...)})
		i++
	}
}

// ipcDesc is the ipc_desc_entry of a System V object.
func ipcDesc(key, id int32, mode, uid, gid, cuid, cgid uint32) *pb.IpcDescEntry {
	return &pb.IpcDescEntry{
		Key: uint32(key), Id: uint32(id), Mode: mode,
		Uid: uid, Gid: gid, Cuid: cuid, Cgid: cgid,
	}
}

// checkSemUndo refuses a process with a semaphore undo list, if the
// tree uses a semaphore set: a semop with SEM_UNDO leaves adjustments the
// kernel applies when the process exits, which no interface reads, and a
// restore would lose. The list outlives its adjustments, and a thread
// made with CLONE_SYSVSEM (every pthread) makes one too, so which
// processes have none is all the kernel tells: kcmp finds a process's
// list the same as a process just spawned, which has none. A
// multi-threaded process is thus refused, and one that used SEM_UNDO
// once, for good. (A process of a tree that uses no semaphore set may
// hold adjustments for a set another process changed since; that is
// not seen.)
func (t *tree) checkSemUndo() error {
	ref, err := ptrace.Spawn("/proc/self/exe", []string{"cryo-no-semundo"}, nil, unix.PTRACE_O_EXITKILL)
	if err != nil {
		return fmt.Errorf("start a process without a semaphore undo list: %w", err)
	}
	defer ref.KillAll()
	for _, d := range t.procs {
		for _, tid := range d.tids() {
			r, err := kernel.Kcmp(tid, ref.Pid(), kernel.KcmpSysvsem, 0, 0)
			if err != nil {
				return t.named(d.pid, fmt.Errorf("compare the semaphore undo list of thread %d: %w", tid, err))
			}
			if r != 0 {
				return t.named(d.pid, fmt.Errorf("%w: thread %d has a System V semaphore undo list (a semop with SEM_UNDO, or threads), whose adjustments no interface reads, and the tree uses System V semaphores", ErrUnsupported, tid))
			}
		}
	}
	return nil
}

// writeSysvIPC writes the semaphore sets and message queues into the
// images of IPC namespace ns.
func (t *tree) writeSysvIPC(ns uint32) error {
	if len(t.sysvSem) > 0 {
		if err := image.WriteSemSets(t.dir, ns, t.sysvSem); err != nil {
			return err
		}
	}
	if len(t.sysvMsg) > 0 {
		return image.WriteMsgQueues(t.dir, ns, t.sysvMsg)
	}
	return nil
}
