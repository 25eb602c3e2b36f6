package dump

import (
	"errors"
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventpoll"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// efdSemaphoreFlag marks an EFD_SEMAPHORE eventfd in the entry's flags.
// The file's own flags cannot say it (the kernel keeps the mode apart);
// bit 0 is O_WRONLY, which an eventfd, always O_RDWR, never has, and which
// F_SETFL (what CRIU's restore does with the flags) ignores.
const efdSemaphoreFlag = unix.EFD_SEMAPHORE

// dumpEventfd records an eventfd with its counter.
func (t *fileTable) dumpEventfd(fd int, id uint32, info proc.Fdinfo) (uint32, fdinfo.FdTypes, error) {
	ev, err := info.Eventfd()
	if err != nil {
		return 0, 0, fmt.Errorf("read eventfd fd %d: %w", fd, err)
	}
	flags := statusFlags(info)
	if ev.Semaphore {
		flags |= efdSemaphoreFlag
	}
	t.files = append(t.files, &fdinfo.FileEntry{
		Type: fdinfo.FdTypes_EVENTFD.Enum(), Id: proto.Uint32(id),
		Efd: &eventfd.EventfdFileEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: zeroFown(), Counter: proto.Uint64(ev.Count),
		},
	})
	return id, fdinfo.FdTypes_EVENTFD, nil
}

// dumpEventpoll records an epoll with its registrations. A registration
// is keyed by the descriptor number it was added with, and a restore adds
// it again through that number: so the number must still be open on the
// very file the epoll watches.
func (t *fileTable) dumpEventpoll(fd int, id uint32, info proc.Fdinfo) (uint32, fdinfo.FdTypes, error) {
	targets, err := info.EpollTargets()
	if err != nil {
		return 0, 0, fmt.Errorf("read epoll fd %d: %w", fd, err)
	}
	e := &eventpoll.EventpollFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(statusFlags(info)), Fown: zeroFown()}
	seen := map[int]uint32{} // registrations per number so far
	for _, tg := range targets {
		// Several registrations share a number when the number was
		// closed and reused; the kernel tells them apart by their rank.
		same, err := kernel.EpollTargetIs(t.pid, fd, tg.Fd, seen[tg.Fd])
		seen[tg.Fd]++
		switch {
		case errors.Is(err, unix.EBADF):
			return 0, 0, fmt.Errorf("%w: epoll fd %d watches fd %d, which is closed (its file is still open elsewhere)", ErrUnsupported, fd, tg.Fd)
		case err != nil:
			return 0, 0, fmt.Errorf("compare epoll fd %d target %d: %w", fd, tg.Fd, err)
		case !same:
			return 0, 0, fmt.Errorf("%w: epoll fd %d watches a file that fd %d no longer refers to", ErrUnsupported, fd, tg.Fd)
		}
		e.Tfd = append(e.Tfd, &eventpoll.EventpollTfdEntry{
			Id: proto.Uint32(id), Tfd: proto.Uint32(uint32(tg.Fd)), Events: proto.Uint32(tg.Events), Data: proto.Uint64(tg.Data),
			Dev: proto.Uint32(tg.Sdev), Inode: proto.Uint64(tg.Ino), Pos: proto.Uint64(uint64(tg.Pos)),
		})
	}
	t.files = append(t.files, &fdinfo.FileEntry{Type: fdinfo.FdTypes_EVENTPOLL.Enum(), Id: proto.Uint32(id), Epfd: e})
	return id, fdinfo.FdTypes_EVENTPOLL, nil
}
