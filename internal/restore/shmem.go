package restore

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// shmemObjects groups the shared anonymous VMAs by object, in address
// order.
func (c *checkpoint) shmemObjects() map[uint64][]vma {
	objects := map[uint64][]vma{}
	if !c.vmas.any(image.VMAAnonShared) {
		return objects
	}
	for v := range c.vmas.all() {
		if v.status&image.VMAAnonShared != 0 && !isSysv(v) {
			objects[v.shmid] = append(objects[v.shmid], *v)
		}
	}
	return objects
}

// shmemAt is where a shared anonymous object of the tree is mapped: by the
// process that made it, which the others map it from.
type shmemAt struct {
	pid        int
	start, end uint64
}

// shmemSizes are the sizes the shared anonymous objects must have: the
// end of the furthest mapping of each, in any process of the tree.
func (t *tree) shmemSizes() map[uint64]uint64 {
	sizes := map[uint64]uint64{}
	for _, r := range t.procs {
		if !r.c.vmas.any(image.VMAAnonShared) {
			continue
		}
		for v := range r.c.vmas.all() {
			if v.status&image.VMAAnonShared != 0 && !isSysv(v) {
				sizes[v.shmid] = max(sizes[v.shmid], v.pgoff+v.end-v.start)
			}
		}
	}
	return sizes
}

// mapShared maps VMA v of a shared anonymous object that another process
// of the tree made, through that one's mapping of it in map_files.
func (r *restorer) mapShared(v *vma, at shmemAt) error {
	fd, err := r.openObject(at.pid, at.start, at.end)
	if err != nil {
		return fmt.Errorf("open shared memory %d of pid %d: %w", v.shmid, at.pid, err)
	}
	start, length := v.start, v.end-v.start
	// The object's file, not new anonymous memory.
	flags := uint64(v.flags)&^(unix.MAP_LOCKED|unix.MAP_ANONYMOUS) | unix.MAP_FIXED
	_, err = r.tr.Syscall(r.pid, unix.SYS_MMAP, start, length, uint64(r.writableProt(v)), flags, fd, v.pgoff)
	if cerr := r.sys(unix.SYS_CLOSE, fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("map VMA %#x-%#x of shared memory %d of pid %d: %w", start, start+length, v.shmid, at.pid, err)
	}
	return nil
}

// openObject opens, in the restored process, the shared memory object
// that process pid maps at start-end, through map_files. The VMA may have
// merged with a neighbour mapping the next part of the object until the
// protect step makes their protections differ again (a guard page's):
// its entry is then the merged range, found in pid's maps.
func (r *restorer) openObject(pid int, start, end uint64) (uint64, error) {
	fd, err := r.open(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, start, end), unix.O_RDWR, 0)
	if !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	maps, merr := proc.ReadMaps(pid)
	if merr != nil {
		return 0, errors.Join(err, merr)
	}
	i, _ := slices.BinarySearchFunc(maps, start, func(m proc.Mapping, a uint64) int { return cmp.Compare(m.End-1, a) })
	if i == len(maps) || maps[i].Start > start || maps[i].End < end {
		return 0, err
	}
	return r.open(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, maps[i].Start, maps[i].End), unix.O_RDWR, 0)
}

// alone reports whether an object is one VMA that maps it from its start,
// which a plain mmap makes.
func alone(vs []vma) bool { return len(vs) == 1 && vs[0].pgoff == 0 }

// mapObject makes one shared anonymous object for the VMAs vs, as large
// as the tree's mappings of it need, and maps each at its offset in it:
// the object is mapped whole at a free place,
// each VMA is a second mapping of part of it (mremap of old size 0), and
// the whole goes.
func (r *restorer) mapObject(vs []vma) error {
	size := r.shmemSize[vs[0].shmid]
	used, err := r.takenRanges(r.pid)
	if err != nil {
		return err
	}
	shmid := vs[0].shmid
	at, err := findHole(used, size, vs[0].start, vs[0].flags)
	if err != nil {
		return fmt.Errorf("place shared memory %d: %w", shmid, err)
	}
	flags := uint64(vs[0].flags)&^unix.MAP_LOCKED | unix.MAP_FIXED_NOREPLACE
	if _, err := r.tr.Syscall(r.pid, unix.SYS_MMAP, at, size, unix.PROT_READ|unix.PROT_WRITE, flags, ^uint64(0), 0); err != nil {
		return fmt.Errorf("map shared memory %d (%d bytes) at %#x: %w", shmid, size, at, err)
	}
	for _, v := range vs {
		if v.flags&unix.MAP_HUGETLB != 0 {
			// mremap does not map huge pages again (an old size of 0):
			// the VMA maps the object's file, as another process's does.
			if err := r.mapShared(&v, shmemAt{pid: r.pid, start: at, end: at + size}); err != nil {
				return err
			}
			continue
		}
		start, length := v.start, v.end-v.start
		if _, err := r.tr.Syscall(r.pid, unix.SYS_MREMAP, at+v.pgoff, 0, length, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, start); err != nil {
			return fmt.Errorf("map VMA %#x-%#x of shared memory %d at offset %#x: %w", start, start+length, shmid, v.pgoff, err)
		}
	}
	if err := r.sys(unix.SYS_MUNMAP, at, size); err != nil {
		return fmt.Errorf("unmap shared memory %d at %#x: %w", shmid, at, err)
	}
	return nil
}

// findHole finds where in the process to map size bytes of memory of
// mmap flags, near near: at an address its pages' size divides, huge
// pages' (MAP_HUGETLB) too.
func findHole(used []vdso.Range, size, near uint64, flags uint32) (uint64, error) {
	align := uint64(pageSize)
	if flags&unix.MAP_HUGETLB != 0 {
		align = 2 << 20 // the default huge pages' size here
		if shift := flags >> unix.MAP_HUGE_SHIFT & unix.MAP_HUGE_MASK; shift != 0 {
			align = 1 << shift
		}
	}
	at, err := vdso.FindHole(used, size+align-pageSize, near, mmapMinAddr(), taskSize)
	return (at + align - 1) &^ (align - 1), err
}

// writeShmem fills each shared anonymous object, created empty by
// mapVMAs, with its contents.
func (r *restorer) writeShmem() error {
	objects := r.c.shmemObjects()
	if len(objects) == 0 {
		return nil
	}
	for v := range r.c.vmas.all() {
		vs := objects[v.shmid]
		if v.status&image.VMAAnonShared == 0 || isSysv(v) || vs[0].start != v.start || r.shmem[v.shmid].pid != r.pid {
			continue // made, and filled, by another process
		}
		if err := r.writeObject(v.shmid, vs); err != nil {
			return fmt.Errorf("shared memory %d at %#x: %w", v.shmid, v.start, err)
		}
	}
	return nil
}

// writeObject writes the stored pages of object shmid, mapped by the
// VMAs vs, through a mapping of the whole object made for it: a page may
// lie where only another process of the tree maps the object.
func (r *restorer) writeObject(shmid uint64, vs []vma) error {
	pr, err := r.c.dir.OpenShmemPages(shmid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	size := r.shmemSize[shmid]
	fd, err := r.openObject(r.pid, vs[0].start, vs[0].end)
	if err != nil {
		return fmt.Errorf("open the object: %w", err)
	}
	used, err := r.takenRanges(r.pid)
	if err == nil {
		var at uint64
		if at, err = findHole(used, size, vs[0].start, vs[0].flags); err == nil {
			_, err = r.tr.Syscall(r.pid, unix.SYS_MMAP, at, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED_NOREPLACE, fd, 0)
			if err == nil {
				err = r.writeRuns(pr, size, at)
				if uerr := r.sys(unix.SYS_MUNMAP, at, size); err == nil {
					err = uerr
				}
			}
		}
	}
	if cerr := r.sys(unix.SYS_CLOSE, fd); err == nil {
		err = cerr
	}
	return err
}

// writeRuns writes the runs of an object's pages, of size bytes, into
// its mapping at at.
func (r *restorer) writeRuns(pr *image.PageReader, size, at uint64) error {
	var pieces []piece
	err := eachRun(pr, func(e image.PageEntry) error {
		end := e.Vaddr + e.NrPages*pageSize
		if end > size || end < e.Vaddr {
			return imageErr("pages at object offset %#x-%#x are past its end, %#x", e.Vaddr, end, size)
		}
		pieces = append(pieces, piece{e, vdso.Range{Start: e.Vaddr, End: end}, at})
		return nil
	})
	if err != nil {
		return err
	}
	return r.writePieces(pr, pieces, nil)
}
