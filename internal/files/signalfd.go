package files

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/signalfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// signalfdKind is a signalfd with the signals it reads. The signals
// themselves are the reading process's, queued or blocked as dumped.
type signalfdKind struct{}

func (signalfdKind) typ() fdinfo.FdTypes { return fdinfo.FdTypes_SIGNALFD }

func (signalfdKind) claims(d *desc) bool { return d.link == "anon_inode:[signalfd]" }

func (signalfdKind) dump(t *Table, d *desc) (uint32, error) {
	mask, err := d.info.Signalfd()
	if err != nil {
		return 0, fmt.Errorf("read signalfd fd %d: %w", d.fd, err)
	}
	id := t.nextID()
	return t.add(&fdinfo.FileEntry{
		Type: fdinfo.FdTypes_SIGNALFD.Enum(), Id: proto.Uint32(id),
		Sgfd: &signalfd.SignalfdEntry{Id: proto.Uint32(id), Flags: proto.Uint32(statusFlags(d.info)), Fown: zeroFown(), Sigmask: proto.Uint64(mask)},
	}), nil
}

func (signalfdKind) check(s *Set, f *fdinfo.FileEntry) error {
	if f.Sgfd == nil {
		return imageErr("file %d: SIGNALFD without a sgfd entry", f.GetId())
	}
	return nil
}

// open makes a signalfd in the process reading the dumped signals.
func (signalfdKind) open(r *Restorer, f *fdinfo.FileEntry) (uint64, error) {
	e := f.Sgfd
	flags := r.cloexec // SFD_CLOEXEC is O_CLOEXEC
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.SFD_NONBLOCK
	}
	scratch, err := r.scratch()
	if err != nil {
		return 0, err
	}
	if err := r.tr.WriteValue(scratch, e.GetSigmask()); err != nil {
		return 0, err
	}
	n, err := r.tr.Syscall(r.pid, unix.SYS_SIGNALFD4, ^uint64(0), scratch, 8, flags)
	if err != nil {
		return 0, fmt.Errorf("make signalfd of mask %#x: %w", e.GetSigmask(), err)
	}
	return n, nil
}
