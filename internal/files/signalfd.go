package files

import (
	"fmt"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// signalfdKind is a signalfd with the signals it reads. The signals
// themselves are the reading process's, queued or blocked as dumped.
type signalfdKind struct{}

func (signalfdKind) typ() pb.FdTypes { return pb.FdTypes_SIGNALFD }

func (signalfdKind) claims(d *desc) bool { return d.link == "anon_inode:[signalfd]" }

func (signalfdKind) dump(t *Table, d *desc) (uint32, error) {
	mask, err := d.info.Signalfd()
	if err != nil {
		return 0, fmt.Errorf("read signalfd fd %d: %w", d.fd, err)
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_SIGNALFD, Id: id,
		Entry: &pb.SignalfdEntry{Id: id, Flags: statusFlags(d.info), Fown: &pb.FownEntry{}, Sigmask: mask},
	}), nil
}

func (signalfdKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetSgfd() == nil {
		return imageErr("file %d: SIGNALFD without a sgfd entry", f.GetId())
	}
	return nil
}

// open makes a signalfd in the process reading the dumped signals.
func (signalfdKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetSgfd()
	flags := unix.SFD_CLOEXEC
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.SFD_NONBLOCK
	}
	// A signalfd reads the signals of whoever reads it: made in cryo, it
	// is the process's once there.
	mask := unix.Sigset_t{Val: [16]uint64{e.GetSigmask()}}
	fd, err := unix.Signalfd(-1, &mask, flags)
	if err != nil {
		return -1, fmt.Errorf("make signalfd of mask %#x: %w", e.GetSigmask(), err)
	}
	return fd, nil
}
