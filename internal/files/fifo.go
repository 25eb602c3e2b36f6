package files

import (
	"fmt"
	"strings"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"golang.org/x/sys/unix"
)

// fifoKind is a FIFO: a pipe reached through a path. Its entry refers to
// a REG entry for the path; its buffered data is saved in fifo-data.img.
//
// A FIFO unlinked while open is kept as CRIU keeps it: its REG entry is
// remapped to a ghost file of the FIFO's mode, without contents, one per
// FIFO (ghost.go); the restore makes the node again and opens every entry
// of the FIFO through it.
type fifoKind struct{}

func (fifoKind) typ() pb.FdTypes { return pb.FdTypes_FIFO }

func (fifoKind) claims(d *desc) bool {
	return strings.HasPrefix(d.link, "/") && d.mode() == unix.S_IFIFO
}

func (fifoKind) dump(t *Table, d *desc) (uint32, error) {
	path, deleted := strings.CutSuffix(d.link, " (deleted)")
	if err := t.takePipeData(d, d.st.Ino, &t.fifos); err != nil {
		return 0, err
	}
	regID := t.nextID()
	t.add(&pb.FileEntry{Type: pb.FdTypes_REG, Id: regID, Entry: regEntry(regID, path, d)})
	if deleted {
		if err := t.unlinked(regID, path, d.path, &d.st); err != nil {
			return 0, err
		}
	} else if err := t.noteStat(regID, d.path); err != nil {
		return 0, err
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_FIFO, Id: id,
		Entry: &pb.FifoEntry{Id: id, PipeId: uint32(d.st.Ino), RegfId: pb.Uint32(regID)},
	}), nil
}

func (fifoKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetFifo() == nil || s.File(f.GetFifo().GetRegfId()) == nil || s.File(f.GetFifo().GetRegfId()).GetReg() == nil {
		return imageErr("file %d: FIFO without its path entry", f.GetId())
	}
	if t, ok := s.remaps[f.GetFifo().GetRegfId()]; ok && t.typ == pb.RemapType_GHOST && s.ghosts[t.id].GetMode()&unix.S_IFMT != unix.S_IFIFO {
		return imageErr("file %d: FIFO whose unlinked node is of mode %#o", f.GetId(), s.ghosts[t.id].GetMode())
	}
	return nil
}

// open opens a FIFO by its path. A read-only or write-only open would
// block until the other side shows up, so a read-write descriptor holds
// the FIFO open meanwhile.
func (fifoKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	reg := r.set.File(f.GetFifo().GetRegfId()).GetReg()
	// An unlinked one is made again, and reached through cryo.
	path, err := r.Path(f.GetFifo().GetRegfId())
	if err != nil {
		return -1, err
	}
	holder, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open FIFO %s: %w", path, err)
	}
	defer unix.Close(holder)
	fd, err := openCryoPipe(path, reg.GetFlags())
	if err != nil {
		return -1, err
	}
	if d, ok := r.set.fifos[f.GetFifo().GetPipeId()]; ok && !r.shared.filled[f.GetFifo().GetPipeId()] {
		r.shared.filled[f.GetFifo().GetPipeId()] = true // size and fill once in the tree
		if err := fillPipeFd(holder, int(d.e.GetSize()), d.data); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("FIFO %s: %w", path, err)
		}
	}
	return fd, nil
}
