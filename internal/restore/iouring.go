package restore

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// The mappings of an io_uring's rings (files/iouring.go makes the ring
// again, with its memory): the vmas step reserves their addresses, and
// once the descriptors are made each is mapped from the ring's descriptor
// at its old address. The kernel places a ring's mapping itself: a
// mapping of an io_uring at an address asked for, fixed or hinted, or
// moved there with mremap, fails with EINVAL (io_uring_get_unmapped_area,
// measured on Linux 6.18). It takes the highest free range below the
// mmap base that fits, or the lowest above: so every other free range
// that would fit is filled for the time of the mmap, and the ring lands
// in the one left, the old address.

// ioUringTop is where the kernel places mappings no higher than, unless
// asked for a higher address (x86_64's 47-bit user space, TASK_SIZE).
const ioUringTop = 1<<47 - pageSize

// checkIOUringVMAs checks the io_uring mappings against the files: each
// is a shared mapping of a ring of the checkpoint that the process holds
// a descriptor of, at one of its regions' offsets, no longer than the
// region.
func (c *checkpoint) checkIOUringVMAs() error {
	if !c.vmas.any(image.VMAAreaIOUring) {
		return nil
	}
	for v := range c.vmas.all() {
		if v.status&image.VMAAreaIOUring == 0 {
			continue
		}
		u, ok := c.files.IOUring(uint32(v.shmid))
		if v.status != image.VMAAreaIOUring || v.flags&unix.MAP_TYPE != unix.MAP_SHARED || !ok {
			return imageErr("mm-%d.img: io_uring VMA at %#x-%#x has status %#x, flags %#x, file %d (a shared mapping of that status alone, of an io_uring of %s)", c.pid, v.start, v.end, v.status, v.flags, v.shmid, image.IOUrings.FileName(0))
		}
		if _, ok := c.ioUringFd(uint32(v.shmid)); !ok {
			return imageErr("mm-%d.img: io_uring VMA at %#x-%#x maps file %d, which the process holds no descriptor of", c.pid, v.start, v.end, v.shmid)
		}
		size := uint64(len(u.Rings))
		switch v.pgoff {
		case kernel.IORingOffSQRing, kernel.IORingOffCQRing:
		case kernel.IORingOffSQEs:
			size = uint64(len(u.SQEs))
		default:
			return imageErr("mm-%d.img: io_uring VMA at %#x-%#x has offset %#x", c.pid, v.start, v.end, v.pgoff)
		}
		if v.end-v.start > (size+pageSize-1)&^(pageSize-1) {
			return imageErr("mm-%d.img: io_uring VMA at %#x-%#x is longer than its region of %d bytes", c.pid, v.start, v.end, size)
		}
	}
	return nil
}

// ioUringFd is the lowest descriptor of the process of file id.
func (c *checkpoint) ioUringFd(id uint32) (uint64, bool) {
	for _, fd := range c.files.Fds {
		if fd.GetId() == id {
			return uint64(fd.GetFd()), true
		}
	}
	return 0, false
}

// mapIOUrings maps the process's io_uring VMAs from its rings, made again,
// at their addresses.
func (r *restorer) mapIOUrings() error {
	if !r.c.vmas.any(image.VMAAreaIOUring) {
		return nil
	}
	for v := range r.c.vmas.all() {
		if v.status&image.VMAAreaIOUring == 0 {
			continue
		}
		fd, _ := r.c.ioUringFd(uint32(v.shmid))
		if err := r.mapIOUring(v, fd); err != nil {
			return fmt.Errorf("map io_uring of fd %d at %#x-%#x: %w", fd, v.start, v.end, err)
		}
	}
	return nil
}

// mapIOUring maps v from the ring of descriptor fd, at v's address, where
// the vmas step reserved it.
func (r *restorer) mapIOUring(v *vma, fd uint64) error {
	length := v.end - v.start
	if err := r.sys(unix.SYS_MUNMAP, v.start, length); err != nil {
		return fmt.Errorf("unmap the reservation: %w", err)
	}
	maps, err := proc.ReadMaps(r.pid)
	if err != nil {
		return err
	}
	// The free ranges that would fit, but v's own; and the free ranges
	// next to v's, whatever their size, so that v's is a free range of
	// its own: placed top-down the mapping takes the top of a range,
	// bottom-up (above the mmap base) its bottom.
	var fills [][2]uint64
	fill := func(lo, hi uint64, any bool) {
		if hi > lo && (any || hi-lo >= length) {
			fills = append(fills, [2]uint64{lo, hi})
		}
	}
	gap := func(lo, hi uint64) {
		if lo <= v.start && v.end <= hi {
			fill(lo, v.start, true)
			fill(v.end, hi, true)
			return
		}
		fill(lo, hi, false)
	}
	free := max(mmapMinAddr(), pageSize)
	for _, m := range maps {
		if m.Start >= ioUringTop {
			break
		}
		gap(free, m.Start)
		free = max(free, m.End)
	}
	gap(free, ioUringTop)
	defer func() {
		for _, f := range slices.Backward(fills) {
			if f[1] != 0 {
				r.sys(unix.SYS_MUNMAP, f[0], f[1]-f[0])
			}
		}
	}()
	for i, f := range fills {
		at, err := r.tr.Syscall(r.pid, unix.SYS_MMAP, f[0], f[1]-f[0], unix.PROT_NONE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
		if err == nil && at != f[0] {
			r.sys(unix.SYS_MUNMAP, at, f[1]-f[0])
			err = fmt.Errorf("mapped at %#x", at)
		}
		if err != nil {
			fills[i][1] = 0 // nothing to unmap
			r.log.Debug("io_uring placement: a free range stays open", "pid", r.pid, "start", f[0], "end", f[1], "err", err)
		}
	}
	flags := uint64(unix.MAP_SHARED) | uint64(v.flags&unix.MAP_LOCKED)
	at, err := r.tr.Syscall(r.pid, unix.SYS_MMAP, 0, length, uint64(v.prot), flags, fd, v.pgoff)
	if err != nil {
		return fmt.Errorf("mmap fd %d at offset %#x: %w", fd, v.pgoff, err)
	}
	if at != v.start {
		r.sys(unix.SYS_MUNMAP, at, length)
		return fmt.Errorf("the kernel placed it at %#x, and cryo cannot ask for an address (a free range below the stack's guard gap?)", at)
	}
	for bit := range uint64(64) {
		if v.madv&(1<<bit) == 0 {
			continue
		}
		if err := r.sys(unix.SYS_MADVISE, v.start, length, bit); err != nil {
			return fmt.Errorf("madvise %d: %w", bit, err)
		}
	}
	return nil
}
