package dump

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/files"
	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/proc"
)

// isSysvShm reports whether m attaches a System V shared memory segment.
func isSysvShm(m proc.Mapping) bool {
	_, ok := sysvKey(m)
	return ok
}

// sysvKey returns the key a System V shared memory segment was made with,
// from the name of an attachment: the kernel names its file "SYSV" and
// the key in 8 hex digits, deleted, on the internal shmem mount, with
// the segment's id for inode. Once the segment is removed (IPC_RMID), its
// key reads 0, and only this name keeps it.
func sysvKey(m proc.Mapping) (uint32, bool) {
	hex, ok := strings.CutPrefix(m.Path, "/SYSV")
	if !ok {
		return 0, false
	}
	hex, ok = strings.CutSuffix(hex, " (deleted)")
	if !ok || len(hex) != 8 || m.Major != 0 {
		return 0, false
	}
	key, err := strconv.ParseUint(hex, 16, 32)
	return uint32(key), err == nil
}

// sysvSegment is a System V shared memory segment the tree attaches.
type sysvSegment struct {
	e *pb.IpcShmEntry
	// path is one of its attachments in /proc/PID/map_files, which opens
	// the memory object behind it.
	path string
	// made is the key it was made with, its attachments' name.
	made uint32
}

// dumpSysvShm records each System V shared memory segment the tree has
// attached, once however many attachments it has: its key, id, mode,
// owner and size (copySysvShm copies its contents).
func (t *tree) dumpSysvShm() error {
	var ids []uint64
	segs := map[uint64]*sysvSegment{}
	users := map[uint64]int{}
	others := map[uint64]bool{} // ids of shared anonymous memory and memfds
	for _, d := range t.procs {
		for _, v := range d.objectVMAs {
			id := v.GetShmid()
			if v.GetStatus()&image.VMAAreaSysvIPC == 0 {
				if v.GetStatus()&(image.VMAAnonShared|image.VMAAreaMemfd) != 0 {
					others[id] = true
				}
				continue
			}
			if segs[id] == nil {
				segs[id] = &sysvSegment{path: proc.Path(d.view, fmt.Sprintf("map_files/%x-%x", v.GetStart(), v.GetEnd())), made: d.sysvKeys[id]}
				ids = append(ids, id)
			}
			users[id]++
		}
	}
	if len(ids) == 0 {
		return nil
	}
	for _, m := range t.files.MemfdCopies() {
		others[m.Shmid] = true
	}
	listed, err := proc.ReadSysvShm()
	if err != nil {
		return err
	}
	for _, s := range listed {
		seg := segs[uint64(s.ID)]
		if seg == nil {
			continue
		}
		key := uint32(s.Key)
		if s.Mode&proc.ShmDest != 0 {
			// Removed, its key reads 0: the key it was made with is
			// kept instead, which a restore makes it with again before
			// it removes it, so that its attachments keep their name.
			key = seg.made
		}
		seg.e = &pb.IpcShmEntry{
			Desc: &pb.IpcDescEntry{
				Key: key, Uid: s.UID, Gid: s.GID,
				Cuid: s.CUID, Cgid: s.CGID, Mode: s.Mode, Id: uint32(s.ID),
			},
			Size:       s.Size,
			InPagemaps: pb.Bool(true),
		}
		t.log.Info("System V shared memory", "id", s.ID, "key", fmt.Sprintf("%#x", uint32(s.Key)), "size", s.Size,
			"mode", fmt.Sprintf("%#o", s.Mode), "uid", s.UID, "gid", s.GID, "attachments", users[uint64(s.ID)])
	}
	for _, id := range ids {
		switch {
		case segs[id].e == nil:
			return fmt.Errorf("find System V shared memory %d in /proc/sysvipc/shm: not there", id)
		case others[id]:
			// Their contents would share one pagemap-shmem image.
			return fmt.Errorf("%w: System V shared memory %d has the id of shared memory the tree maps", ErrUnsupported, id)
		}
		t.sysvShm = append(t.sysvShm, *segs[id])
	}
	return nil
}

// copySysvShm copies the contents of each segment, read through the
// memory object an attachment maps (reading it leaves the segment's
// attach time and count alone, and holes are skipped), with the tail of
// its last page past the size, which the process may use too.
func (t *tree) copySysvShm(buf []byte) error {
	for _, s := range t.sysvShm {
		id := s.e.GetDesc().GetId()
		f, err := os.Open(s.path)
		if err != nil {
			return fmt.Errorf("copy System V shared memory %d: %w", id, err)
		}
		err = func() error {
			w, err := t.dir.CreateShmemPages(uint64(id), t.nextPagesID())
			if err != nil {
				return err
			}
			whole := int64(s.e.GetSize()) &^ (pageSize - 1)
			n, err := files.CopyPages(f, whole, w, buf)
			if err == nil && whole < int64(s.e.GetSize()) {
				err = copyLastPage(f, whole, w)
				n++
			}
			t.stats.Pages += n
			return errors.Join(err, w.Close())
		}()
		if err := errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("copy System V shared memory %d: %w", id, err)
		}
	}
	return nil
}

// copyLastPage copies the page of f at off, which the size ends in,
// through a mapping: a read stops at the size.
func copyLastPage(f *os.File, off int64, w *image.PageWriter) error {
	b, err := unix.Mmap(int(f.Fd()), off, pageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the last page: %w", err)
	}
	defer unix.Munmap(b)
	return w.WritePages(uint64(off), b)
}

// writeSysvShm writes the segments into the image of IPC namespace ns.
func (t *tree) writeSysvShm(ns uint32) error {
	if len(t.sysvShm) == 0 {
		return nil
	}
	es := make([]*pb.IpcShmEntry, len(t.sysvShm))
	for i, s := range t.sysvShm {
		es[i] = s.e
	}
	return image.WriteAll(t.dir, image.IpcShm, ns, es)
}
