package files

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// fifoKind is a FIFO: a pipe reached through a path. Its entry refers to
// a REG entry for the path; its buffered data is saved in fifo-data.img.
//
// A FIFO unlinked while open is kept as CRIU keeps it: its REG entry is
// remapped to a ghost file of the FIFO's mode, without contents, one per
// FIFO; the restore makes the node again, opens every entry of the FIFO
// through it and unlinks it.
type fifoKind struct{}

func (fifoKind) typ() fdinfo.FdTypes { return fdinfo.FdTypes_FIFO }

func (fifoKind) claims(d *desc) bool {
	return strings.HasPrefix(d.link, "/") && d.mode() == unix.S_IFIFO
}

func (fifoKind) dump(t *Table, d *desc) (uint32, error) {
	path, deleted := strings.CutSuffix(d.link, " (deleted)")
	if err := t.takePipeData(d, d.st.Ino, &t.fifos); err != nil {
		return 0, err
	}
	regID := t.nextID()
	t.add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(regID), Reg: regEntry(regID, path, d)})
	if deleted {
		node := [2]uint64{d.st.Dev, d.st.Ino}
		gid, ok := t.fifoGhosts[node]
		if !ok {
			gid = t.addGhost(&d.st, nil)
			if t.fifoGhosts == nil {
				t.fifoGhosts = map[[2]uint64]uint32{}
			}
			t.fifoGhosts[node] = gid
		}
		t.remapToGhost(regID, gid)
	} else if err := t.noteStat(regID, d.path); err != nil {
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
	if g, ok := s.ghosts[f.Fifo.GetRegfId()]; ok && g.e.GetMode()&unix.S_IFMT != unix.S_IFIFO {
		return imageErr("file %d: FIFO whose unlinked node is of mode %#o", f.GetId(), g.e.GetMode())
	}
	return nil
}

// open opens a FIFO by its path. A read-only or write-only open would
// block until the other side shows up, so a read-write descriptor holds
// the FIFO open meanwhile.
func (fifoKind) open(r *Restorer, f *fdinfo.FileEntry) (uint64, error) {
	reg := r.set.Files[f.Fifo.GetRegfId()].Reg
	var path string
	var err error
	if g, ok := r.set.ghosts[f.Fifo.GetRegfId()]; ok {
		path, err = r.fifoGhost(reg.GetName(), g)
	} else {
		path, err = r.set.Path(f.Fifo.GetRegfId())
	}
	if err != nil {
		return 0, err
	}
	holder, err := r.open(path, unix.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("open FIFO %s: %w", path, err)
	}
	defer r.sys(unix.SYS_CLOSE, holder)
	n, err := r.openPipe(path, reg.GetFlags())
	if err != nil {
		return 0, err
	}
	if d, ok := r.set.fifos[f.Fifo.GetPipeId()]; ok {
		delete(r.set.fifos, f.Fifo.GetPipeId()) // size and fill once
		if err := r.setPipeSize(holder, d); err != nil {
			return 0, fmt.Errorf("FIFO %s: %w", path, err)
		}
		if err := r.writeThrough(holder, d.data); err != nil {
			return 0, fmt.Errorf("refill FIFO %s: %w", path, err)
		}
	}
	return n, nil
}

// fifoGhost returns the path of the node made again for an unlinked FIFO,
// making it on first use: at its old path if free, else beside it. It is
// unlinked once every descriptor is open.
func (r *Restorer) fifoGhost(name string, g ghost) (string, error) {
	if p, ok := r.fifoNodes[g.id]; ok {
		return p, nil
	}
	mode := g.e.GetMode() & 0o7777
	p := name
	for i := 1; ; i++ {
		err := unix.Mknod(p, unix.S_IFIFO|mode, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return "", fmt.Errorf("make unlinked FIFO %s again at %s: %w", name, p, err)
		}
		p = fmt.Sprintf("%s.cryo-ghost-%d", name, i)
	}
	r.cleanup = append(r.cleanup, p)
	// mknod applied cryo's umask.
	if err := errors.Join(unix.Chmod(p, mode), unix.Lchown(p, int(g.e.GetUid()), int(g.e.GetGid()))); err != nil {
		return "", fmt.Errorf("make unlinked FIFO %s again at %s: %w", name, p, err)
	}
	if r.fifoNodes == nil {
		r.fifoNodes = map[uint32]string{}
	}
	r.fifoNodes[g.id] = p
	return p, nil
}
