package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// semNextID and msgNextID make the next semaphore set and message queue
// of cryo's IPC namespace take the id written there, as shmNextID does.
const (
	semNextID = "/proc/sys/kernel/sem_next_id"
	msgNextID = "/proc/sys/kernel/msg_next_id"
)

// Limits of semaphores (<linux/sem.h>): SEMMSL, the most semaphores of a
// set, and SEMVMX, the highest value.
const (
	semMSL = 32000
	semVMX = 32767
)

// sysvSemSet is a semaphore set of the checkpoint; created says this
// restore made it (removed if the restore fails).
type sysvSemSet struct {
	image.SemSet
	created bool
}

// sysvQueue is a message queue of the checkpoint; created as for sets.
type sysvQueue struct {
	image.MsgQueue
	created bool
}

// loadSysvIPC reads the semaphore sets and message queues of the
// processes' IPC namespace, which a dump writes only when they use some.
func (t *tree) loadSysvIPC() error {
	ns := t.procs[0].ids().GetIpcNsId()
	sets, err := readSysvImage(t, image.IpcSem, ns, image.ReadSemSets)
	if err != nil {
		return err
	}
	seen := map[uint32]bool{}
	for _, s := range sets {
		d := s.Entry.GetDesc()
		switch {
		case d == nil:
			return imageErr("%s: a set without its ipc_desc_entry", image.IpcSem.FileName(ns))
		case d.GetId() > math.MaxInt32 || s.Entry.GetNsems() == 0 || s.Entry.GetNsems() > semMSL || d.GetMode()&^0o777 != 0:
			return imageErr("%s: set %d of %d semaphores, mode %#o", image.IpcSem.FileName(ns), d.GetId(), s.Entry.GetNsems(), d.GetMode())
		case seen[d.GetId()]:
			return imageErr("%s: set %d twice", image.IpcSem.FileName(ns), d.GetId())
		}
		for i, v := range s.Values {
			if v > semVMX {
				return imageErr("%s: semaphore %d of set %d is %d, above %d", image.IpcSem.FileName(ns), i, d.GetId(), v, semVMX)
			}
		}
		seen[d.GetId()] = true
		t.sysvSem = append(t.sysvSem, &sysvSemSet{SemSet: s})
	}
	queues, err := readSysvImage(t, image.IpcMsg, ns, image.ReadMsgQueues)
	if err != nil {
		return err
	}
	clear(seen)
	for _, q := range queues {
		d := q.Entry.GetDesc()
		switch {
		case d == nil:
			return imageErr("%s: a queue without its ipc_desc_entry", image.IpcMsg.FileName(ns))
		case d.GetId() > math.MaxInt32 || d.GetMode()&^0o777 != 0 || q.Entry.GetQbytes() > math.MaxInt32:
			return imageErr("%s: queue %d of mode %#o, %d bytes", image.IpcMsg.FileName(ns), d.GetId(), d.GetMode(), q.Entry.GetQbytes())
		case seen[d.GetId()]:
			return imageErr("%s: queue %d twice", image.IpcMsg.FileName(ns), d.GetId())
		}
		for i, m := range q.Msgs {
			if m.Type == 0 || m.Type > math.MaxInt64 {
				return imageErr("%s: message %d of queue %d has type %d", image.IpcMsg.FileName(ns), i, d.GetId(), m.Type)
			}
		}
		seen[d.GetId()] = true
		t.sysvMsg = append(t.sysvMsg, &sysvQueue{MsgQueue: q})
	}
	return nil
}

// readSysvImage reads the image of kind k of IPC namespace ns with read;
// none is none.
func readSysvImage[T any](t *tree, k image.Kind, ns uint32, read func(*image.Reader) ([]T, error)) ([]T, error) {
	r, err := t.dir.Open(k, ns)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer r.Close()
	out, err := read(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImage, err)
	}
	return out, nil
}

// prepareSysvIPC finds each semaphore set and message queue again, or
// makes it, as prepareSysvShm does segments: one of the same id, key,
// owner and mode (and number of semaphores) is the dumped one, never
// removed, which other processes may use, and is left as it is; one of
// that id but otherwise, or another that holds the key, is refused.
// Without one, it is made with its id, key, owner and mode; it gets its
// values or messages once the processes exist (fillSysvIPC).
func (t *tree) prepareSysvIPC() error {
	if len(t.sysvSem) > 0 {
		listed, err := proc.ReadSysvSem()
		if err != nil {
			return err
		}
		for _, s := range t.sysvSem {
			if err := t.prepareSemSet(s, listed); err != nil {
				return err
			}
		}
	}
	if len(t.sysvMsg) > 0 {
		listed, err := proc.ReadSysvMsg()
		if err != nil {
			return err
		}
		for _, q := range t.sysvMsg {
			if err := t.prepareQueue(q, listed); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *tree) prepareSemSet(s *sysvSemSet, listed []proc.SysvSem) error {
	d := s.Entry.GetDesc()
	for _, o := range listed {
		switch {
		case uint32(o.ID) == d.GetId() && uint32(o.Key) == d.GetKey() && o.Nsems == s.Entry.GetNsems() && o.Mode == d.GetMode() &&
			o.UID == d.GetUid() && o.GID == d.GetGid() && o.CUID == d.GetCuid() && o.CGID == d.GetCgid():
			t.log.Info("System V semaphore set still there: left as it is, shared with whoever else uses it", "id", o.ID, "key", fmt.Sprintf("%#x", d.GetKey()))
			return nil
		case uint32(o.ID) == d.GetId() || d.GetKey() != unix.IPC_PRIVATE && uint32(o.Key) == d.GetKey():
			return fmt.Errorf("%w: semaphore set %d (key %#x, %d semaphores, owner %d:%d, mode %#o) is there, not the dumped set %d (key %#x, %d semaphores, owner %d:%d, mode %#o)",
				ErrSysvIPCTaken, o.ID, uint32(o.Key), o.Nsems, o.UID, o.GID, o.Mode, d.GetId(), d.GetKey(), s.Entry.GetNsems(), d.GetUid(), d.GetGid(), d.GetMode())
		}
	}
	id, err := createSysv(semNextID, d, "semaphore set", func(key, flags int) (int, error) {
		return kernel.SemGet(key, int(s.Entry.GetNsems()), flags)
	}, kernel.SemRemove)
	if err != nil {
		return err
	}
	s.created = true
	if err := kernel.SemSetPerm(id, d.GetUid(), d.GetGid(), d.GetMode()); err != nil {
		return fmt.Errorf("set owner %d:%d and mode %#o of semaphore set %d: %w", d.GetUid(), d.GetGid(), d.GetMode(), id, err)
	}
	return nil
}

func (t *tree) prepareQueue(q *sysvQueue, listed []proc.SysvMsg) error {
	d := q.Entry.GetDesc()
	for _, o := range listed {
		switch {
		case uint32(o.ID) == d.GetId() && uint32(o.Key) == d.GetKey() && o.Mode == d.GetMode() &&
			o.UID == d.GetUid() && o.GID == d.GetGid() && o.CUID == d.GetCuid() && o.CGID == d.GetCgid():
			t.log.Info("System V message queue still there: left as it is, shared with whoever else uses it",
				"id", o.ID, "key", fmt.Sprintf("%#x", d.GetKey()), "messages", o.Qnum, "dumped", len(q.Msgs))
			return nil
		case uint32(o.ID) == d.GetId() || d.GetKey() != unix.IPC_PRIVATE && uint32(o.Key) == d.GetKey():
			return fmt.Errorf("%w: message queue %d (key %#x, owner %d:%d, mode %#o) is there, not the dumped queue %d (key %#x, owner %d:%d, mode %#o)",
				ErrSysvIPCTaken, o.ID, uint32(o.Key), o.UID, o.GID, o.Mode, d.GetId(), d.GetKey(), d.GetUid(), d.GetGid(), d.GetMode())
		}
	}
	id, err := createSysv(msgNextID, d, "message queue", kernel.MsgGet, kernel.MsgRemove)
	if err != nil {
		return err
	}
	q.created = true
	// Room for the messages first: a limit above kernel.msgmnb, the
	// default, needs CAP_SYS_RESOURCE.
	room, err := kernel.MsgQbytes(id)
	if err != nil {
		return fmt.Errorf("stat message queue %d: %w", id, err)
	}
	// The limit bounds the bytes queued, and the number of messages.
	var size uint64
	for _, m := range q.Msgs {
		size += uint64(len(m.Text))
	}
	room = max(room, uint64(q.Entry.GetQbytes()), size, uint64(len(q.Msgs)))
	if err := kernel.MsgSetPerm(id, d.GetUid(), d.GetGid(), d.GetMode(), room); err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (a limit above kernel.msgmnb needs CAP_SYS_RESOURCE)", err)
		}
		return fmt.Errorf("set owner %d:%d, mode %#o and byte limit %d of message queue %d: %w", d.GetUid(), d.GetGid(), d.GetMode(), room, id, err)
	}
	return nil
}

// createSysv makes the System V object of d, with its id through the
// next_id file next, and its key and mode, by get(key, flags), and leaves
// next at -1 whatever happens.
func createSysv(next string, d *pb.IpcDescEntry, what string, get func(key, flags int) (int, error), remove func(int) error) (int, error) {
	if err := writeProcFile(next, strconv.Itoa(int(d.GetId()))); err != nil {
		return 0, fmt.Errorf("choose %s id %d: %w", what, d.GetId(), err)
	}
	got, err := get(int(int32(d.GetKey())), unix.IPC_CREAT|unix.IPC_EXCL|int(d.GetMode()))
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%w: key %#x is another %s's: %w", ErrSysvIPCTaken, d.GetKey(), what, err)
		}
		return 0, errors.Join(fmt.Errorf("create %s %d: %w", what, d.GetId(), err), resetNextID(next, get, remove))
	}
	if got != int(d.GetId()) {
		return 0, errors.Join(fmt.Errorf("create %s %d: the kernel gave id %d", what, d.GetId(), got), remove(got))
	}
	return got, nil
}

// resetNextID leaves the next_id file next at -1: an object that could
// not be made left the id chosen for the next, which a private one made
// by get and removed at once takes.
func resetNextID(next string, get func(key, flags int) (int, error), remove func(int) error) error {
	b, err := os.ReadFile(next)
	if err != nil || strings.TrimSpace(string(b)) == "-1" {
		return err
	}
	id, err := get(unix.IPC_PRIVATE, unix.IPC_CREAT|0o600)
	if err != nil {
		return fmt.Errorf("reset %s: %w", next, err)
	}
	return remove(id)
}

// fillSysvIPC gives the objects this restore made what the processes
// find in them, once the processes exist. The root process sets each
// semaphore (SETVAL), and sends and receives a message of each queue
// before its messages are sent, so that the kernel says the tree used
// them last (sempid, lrpid), as a dump decides: the dumped pids of the
// last users are in no image. Each queue gets its messages in order,
// the last from the root process too if it fits its scratch page (else
// cryo is the last sender), then its byte limit.
func (t *tree) fillSysvIPC() error {
	r := t.procs[0]
	for _, s := range t.sysvSem {
		if !s.created {
			continue
		}
		d := s.Entry.GetDesc()
		calls := make([]ptrace.Sys, len(s.Values))
		for i, v := range s.Values {
			calls[i] = ptrace.Sys{Nr: unix.SYS_SEMCTL, Args: [6]uint64{uint64(d.GetId()), uint64(i), kernel.SemSetval, uint64(v)}}
		}
		if err := r.syscalls(r.pid, calls, func(i int) string {
			return fmt.Sprintf("set semaphore %d of set %d to %d (SETVAL) in the process", i, d.GetId(), s.Values[i])
		}); err != nil {
			return err
		}
		t.log.Info("System V semaphore set made again", "id", d.GetId(), "key", fmt.Sprintf("%#x", d.GetKey()), "values", s.Values,
			"mode", fmt.Sprintf("%#o", d.GetMode()), "uid", d.GetUid(), "gid", d.GetGid())
	}
	var scratch uint64
	for _, q := range t.sysvMsg {
		if !q.created {
			continue
		}
		d := q.Entry.GetDesc()
		if scratch == 0 {
			var err error
			if scratch, err = r.scratch(); err != nil {
				return err
			}
		}
		if err := r.tr.WriteMem(scratch, kernel.MsgBuf(1, nil)); err != nil {
			return err
		}
		if err := r.sys(unix.SYS_MSGSND, uint64(d.GetId()), scratch, 0, unix.IPC_NOWAIT); err != nil {
			return fmt.Errorf("send a message to queue %d in the process: %w", d.GetId(), err)
		}
		if err := r.sys(unix.SYS_MSGRCV, uint64(d.GetId()), scratch, 0, 0, unix.IPC_NOWAIT); err != nil {
			return fmt.Errorf("receive a message of queue %d in the process: %w", d.GetId(), err)
		}
		for i, m := range q.Msgs {
			var err error
			if b := kernel.MsgBuf(int64(m.Type), m.Text); i == len(q.Msgs)-1 && len(b) <= scratchSize {
				// The last from the process, which the kernel then
				// says sent last (lspid), if it fits the scratch page.
				err = r.tr.WriteMem(scratch, b)
				if err == nil {
					err = r.sys(unix.SYS_MSGSND, uint64(d.GetId()), scratch, uint64(len(m.Text)), unix.IPC_NOWAIT)
				}
			} else {
				err = kernel.MsgSend(int(d.GetId()), int64(m.Type), m.Text)
			}
			if err != nil {
				return fmt.Errorf("send message %d (type %d, %d bytes) to queue %d: %w", i, m.Type, len(m.Text), d.GetId(), err)
			}
		}
		if err := kernel.MsgSetPerm(int(d.GetId()), d.GetUid(), d.GetGid(), d.GetMode(), uint64(q.Entry.GetQbytes())); err != nil {
			return fmt.Errorf("set the byte limit %d of message queue %d: %w", q.Entry.GetQbytes(), d.GetId(), err)
		}
		t.log.Info("System V message queue made again", "id", d.GetId(), "key", fmt.Sprintf("%#x", d.GetKey()), "messages", len(q.Msgs),
			"qbytes", q.Entry.GetQbytes(), "mode", fmt.Sprintf("%#o", d.GetMode()), "uid", d.GetUid(), "gid", d.GetGid())
	}
	return nil
}

// removeSysvIPC removes the semaphore sets and message queues a failed
// restore made.
func (t *tree) removeSysvIPC() {
	for _, s := range t.sysvSem {
		if s.created {
			if err := kernel.SemRemove(int(s.Entry.GetDesc().GetId())); err != nil {
				t.log.Warn("remove the semaphore set made by the failed restore", "id", s.Entry.GetDesc().GetId(), "err", err)
			}
		}
	}
	for _, q := range t.sysvMsg {
		if q.created {
			if err := kernel.MsgRemove(int(q.Entry.GetDesc().GetId())); err != nil {
				t.log.Warn("remove the message queue made by the failed restore", "id", q.Entry.GetDesc().GetId(), "err", err)
			}
		}
	}
}
