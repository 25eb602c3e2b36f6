package files

import (
	"fmt"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// fifoKind is a FIFO: a pipe reached through a path. Its entry refers to
// a REG entry for the path; its buffered data is saved in fifo-data.img.
type fifoKind struct{}

func (fifoKind) typ() fdinfo.FdTypes { return fdinfo.FdTypes_FIFO }

func (fifoKind) claims(d *desc) bool {
	return strings.HasPrefix(d.link, "/") && d.mode() == unix.S_IFIFO
}

func (fifoKind) dump(t *Table, d *desc) (uint32, error) {
	path, deleted := strings.CutSuffix(d.link, " (deleted)")
	if deleted {
		return 0, fmt.Errorf("%w: fd %d is a deleted FIFO", ErrUnsupported, d.fd)
	}
	if err := t.takePipeData(d, d.st.Ino, &t.fifos); err != nil {
		return 0, err
	}
	regID := t.nextID()
	t.add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(regID), Reg: regEntry(regID, path, d)})
	if err := t.noteStat(regID, d.path); err != nil {
		return 0, err
	}
	id := t.nextID()
	return t.add(&fdinfo.FileEntry{
		Type: fdinfo.FdTypes_FIFO.Enum(), Id: proto.Uint32(id),
		Fifo: &fifo.FifoEntry{Id: proto.Uint32(id), PipeId: proto.Uint32(uint32(d.st.Ino)), RegfId: proto.Uint32(regID)},
	}), nil
}

func (fifoKind) check(s *Set, f *fdinfo.FileEntry) error {
	if f.Fifo == nil || s.Files[f.Fifo.GetRegfId()] == nil || s.Files[f.Fifo.GetRegfId()].Reg == nil {
		return imageErr("file %d: FIFO without its path entry", f.GetId())
	}
	return nil
}

// open opens a FIFO by its path. A read-only or write-only open would
// block until the other side shows up, so a read-write descriptor holds
// the FIFO open meanwhile.
func (fifoKind) open(r *Restorer, f *fdinfo.FileEntry) (uint64, error) {
	reg := r.set.Files[f.Fifo.GetRegfId()].Reg
	path, err := r.set.Path(f.Fifo.GetRegfId())
	if err != nil {
		return 0, err
	}
	holder, err := r.open(path, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("open FIFO %s: %w", path, err)
	}
	defer r.sys(unix.SYS_CLOSE, holder)
	n, err := r.reopen(path, reg.GetFlags(), reg.GetPos())
	if err != nil {
		return 0, err
	}
	if data := r.set.fifos[f.Fifo.GetPipeId()]; len(data) > 0 {
		delete(r.set.fifos, f.Fifo.GetPipeId()) // fill once
		if err := r.writeThrough(holder, data); err != nil {
			return 0, fmt.Errorf("refill FIFO %s: %w", path, err)
		}
	}
	return n, nil
}
