package files

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// eventfdKind is an eventfd with its counter and mode.
type eventfdKind struct{}

// efdSemaphoreFlag marks an EFD_SEMAPHORE eventfd in the entry's flags.
// The file's own flags cannot say it (the kernel keeps the mode apart);
// bit 0 is O_WRONLY, which an eventfd, always O_RDWR, never has, and which
// F_SETFL (what CRIU's restore does with the flags) ignores.
const efdSemaphoreFlag = unix.EFD_SEMAPHORE

// efdMaxCount is the largest value an eventfd counter holds.
const efdMaxCount = math.MaxUint64 - 1

func (eventfdKind) typ() pb.FdTypes { return pb.FdTypes_EVENTFD }

func (eventfdKind) claims(d *desc) bool { return d.link == "anon_inode:[eventfd]" }

func (eventfdKind) dump(t *Table, d *desc) (uint32, error) {
	ev, err := d.info.Eventfd()
	if err != nil {
		return 0, fmt.Errorf("read eventfd fd %d: %w", d.fd, err)
	}
	flags := statusFlags(d.info)
	if ev.Semaphore {
		flags |= efdSemaphoreFlag
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_EVENTFD, Id: id,
		Entry: &pb.EventfdFileEntry{
			Id: id, Flags: flags, Fown: &pb.FownEntry{}, Counter: ev.Count,
		},
	}), nil
}

func (eventfdKind) check(s *Set, f *pb.FileEntry) error {
	switch {
	case f.GetEfd() == nil:
		return imageErr("file %d: EVENTFD without an efd entry", f.GetId())
	case f.GetEfd().GetCounter() > efdMaxCount:
		return imageErr("file %d: eventfd counter %#x is above the largest, %#x", f.GetId(), f.GetEfd().GetCounter(), uint64(efdMaxCount))
	}
	return nil
}

// open makes an eventfd in the process with its counter and mode.
func (eventfdKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetEfd()
	flags := unix.EFD_CLOEXEC
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.EFD_NONBLOCK
	}
	if e.GetFlags()&efdSemaphoreFlag != 0 {
		flags |= unix.EFD_SEMAPHORE
	}
	// eventfd2 takes the initial count as an unsigned int: a larger one is
	// written in afterwards.
	count := e.GetCounter()
	initial := count
	if count > math.MaxUint32 {
		initial = 0
	}
	fd, err := unix.Eventfd(uint(initial), flags)
	if err != nil {
		return -1, fmt.Errorf("make eventfd: %w", err)
	}
	if initial != count {
		if _, err := unix.Write(fd, binary.NativeEndian.AppendUint64(nil, count)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set eventfd counter to %#x: %w", count, err)
		}
	}
	return fd, nil
}
