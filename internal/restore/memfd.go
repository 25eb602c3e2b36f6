package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
)

// mfdFlags are the memfd_create flags of every restored memfd: sealing is
// allowed so that the image's seals can be added back, F_SEAL_SEAL last
// among them if the memfd had no sealing.
const mfdFlags = unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING

// lateSeals are added after the mappings are made: F_SEAL_FUTURE_WRITE
// forbids shared writable mappings made after it but not those made
// before. F_SEAL_WRITE is the other way round: it fails while a shared
// mapping that may write exists, so it goes first, and the mappings made
// after it get no write permission, as in the dumped process.
const lateSeals = ^uint32(unix.F_SEAL_WRITE)

// loadMemfds reads memfd.img, absent from dumps without memfds.
func (c *checkpoint) loadMemfds() error {
	c.memfds = map[uint32]*memfd.MemfdInodeEntry{}
	es, err := image.ReadAll[memfd.MemfdInodeEntry](c.dir, image.Memfd, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, e := range es {
		if e.GetHugetlbFlag() != 0 {
			return fmt.Errorf("%w: hugetlb memfd %s", ErrUnsupported, e.GetName())
		}
		c.memfds[uint32(e.GetInodeId())] = e
	}
	return nil
}

// checkMemfd checks a MEMFD file entry.
func (c *checkpoint) checkMemfd(f *fdinfo.FileEntry) error {
	if f.Memfd == nil {
		return imageErr("file %d: MEMFD without a memfd entry", f.GetId())
	}
	if c.memfds[f.Memfd.GetInodeId()] == nil {
		return imageErr("file %d: memfd inode %d, which memfd.img lacks", f.GetId(), f.Memfd.GetInodeId())
	}
	return nil
}

// memfd returns the process's descriptor of memfd inode id, making the
// memfd on first use: created, sized and filled, with its early seals.
func (r *restorer) memfd(id uint32) (uint64, error) {
	if n, ok := r.memfds[id]; ok {
		return n, nil
	}
	e := r.c.memfds[id]
	scratch, err := r.scratch()
	if err != nil {
		return 0, err
	}
	if err := r.writeString(scratch, e.GetName()); err != nil {
		return 0, err
	}
	n, err := r.tr.Syscall(r.pid, unix.SYS_MEMFD_CREATE, scratch, mfdFlags)
	if err != nil {
		return 0, fmt.Errorf("memfd_create %s: %w", e.GetName(), err)
	}
	if r.tempBase > 0 {
		// openFiles is under way: out of the way of the target numbers.
		if n, err = r.lift(n); err != nil {
			return 0, err
		}
	}
	if r.memfds == nil {
		r.memfds = map[uint32]uint64{}
	}
	r.memfds[id] = n
	if err := r.sys(unix.SYS_FTRUNCATE, n, e.GetSize()); err != nil {
		return 0, fmt.Errorf("size memfd %s (fd %d) to %d: %w", e.GetName(), n, e.GetSize(), err)
	}
	if mode := e.GetMode() & 0o7777; e.Mode != nil {
		if err := r.sys(unix.SYS_FCHMOD, n, uint64(mode)); err != nil {
			return 0, fmt.Errorf("chmod memfd %s (fd %d): %w", e.GetName(), n, err)
		}
	}
	if err := r.sys(unix.SYS_FCHOWN, n, uint64(e.GetUid()), uint64(e.GetGid())); err != nil {
		return 0, fmt.Errorf("chown memfd %s (fd %d): %w", e.GetName(), n, err)
	}
	if err := r.fillMemfd(n, e); err != nil {
		return 0, fmt.Errorf("fill memfd %s (fd %d): %w", e.GetName(), n, err)
	}
	if early := e.GetSeals() &^ lateSeals; early != 0 {
		if err := r.sys(unix.SYS_FCNTL, n, unix.F_ADD_SEALS, uint64(early)); err != nil {
			return 0, fmt.Errorf("seal memfd %s (fd %d) with %#x: %w", e.GetName(), n, early, err)
		}
	}
	return n, nil
}

// fillMemfd writes the stored contents of a memfd from outside, through a
// duplicate of its descriptor: no mapping of it is needed.
func (r *restorer) fillMemfd(n uint64, e *memfd.MemfdInodeEntry) error {
	pr, err := r.c.dir.OpenShmemPages(uint64(e.GetShmid()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // all holes
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	dup, err := r.getfd(n)
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	return eachRun(pr, func(pe image.PageEntry) error {
		size := pe.NrPages * pageSize
		if pe.Vaddr+size > (e.GetSize()+pageSize-1)&^(pageSize-1) {
			return imageErr("pages at offset %#x-%#x beyond the size %#x", pe.Vaddr, pe.Vaddr+size, e.GetSize())
		}
		// The last page may run past the size: writing it would grow
		// the file.
		size = min(size, e.GetSize()-pe.Vaddr)
		for off := uint64(0); off < size; {
			k := min(writeChunk, size-off)
			data, release, err := pr.Map(pe, int64(off), int64(k))
			if err != nil {
				return err
			}
			_, err = unix.Pwrite(dup, data, int64(pe.Vaddr+off))
			release()
			if err != nil {
				return fmt.Errorf("write at %#x: %w", pe.Vaddr+off, err)
			}
			off += k
		}
		return nil
	})
}

// sealMemfds adds the seals left for after the mappings, to the memfds
// not yet sealed.
func (r *restorer) sealMemfds() error {
	for id, n := range r.memfds {
		if r.sealed[id] {
			continue
		}
		if r.sealed == nil {
			r.sealed = map[uint32]bool{}
		}
		r.sealed[id] = true
		e := r.c.memfds[id]
		if late := e.GetSeals() & lateSeals; late != 0 {
			if err := r.sys(unix.SYS_FCNTL, n, unix.F_ADD_SEALS, uint64(late)); err != nil {
				return fmt.Errorf("seal memfd %s (fd %d) with %#x: %w", e.GetName(), n, late, err)
			}
		}
	}
	return nil
}

// openMemfd opens a new open file description of a memfd, with the
// entry's flags and position: through /proc/self/fd, as a dup would share
// the position with the other entries of the inode.
func (r *restorer) openMemfd(f *fdinfo.FileEntry) (uint64, error) {
	e := f.Memfd
	m, err := r.memfd(e.GetInodeId())
	if err != nil {
		return 0, err
	}
	path := fmt.Sprintf("/proc/self/fd/%d", m)
	flags := uint64(e.GetFlags())&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC) | unix.O_CLOEXEC
	n, err := r.open(path, flags, 0)
	if err != nil {
		return 0, fmt.Errorf("reopen memfd %s: %w", r.c.memfds[e.GetInodeId()].GetName(), err)
	}
	if n, err = r.lift(n); err != nil {
		return 0, err
	}
	if pos := e.GetPos(); pos != 0 {
		if _, err := r.tr.Syscall(r.pid, unix.SYS_LSEEK, n, pos, unix.SEEK_SET); err != nil {
			return 0, fmt.Errorf("seek memfd fd %d to %d: %w", n, pos, err)
		}
	}
	return n, nil
}

// closeAllBut closes every descriptor of the process but keep.
func (r *restorer) closeAllBut(keep []uint64) error {
	slices.Sort(keep)
	from := uint64(0)
	for _, k := range keep {
		if k > from {
			if err := r.sys(unix.SYS_CLOSE_RANGE, from, k-1, 0); err != nil {
				return err
			}
		}
		from = k + 1
	}
	return r.sys(unix.SYS_CLOSE_RANGE, from, ^uint64(0)>>32, 0)
}
