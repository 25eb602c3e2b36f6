package restore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/vdso"
)

// shmNextID makes the next System V shared memory segment of cryo's IPC
// namespace take the id written there; writing needs
// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN. The kernel sets it back to -1,
// its own choice, once a segment took it, and takes no -1 written.
const shmNextID = "/proc/sys/kernel/shm_next_id"

// capIPCOwner is CAP_IPC_OWNER, which bypasses System V IPC permissions.
const capIPCOwner = 15

// sysvSegment is a System V shared memory segment of the checkpoint.
type sysvSegment struct {
	e *pb.IpcShmEntry
	// created says this restore made it (removed if the restore fails);
	// filled that its contents are written.
	created, filled bool
}

func (s *sysvSegment) id() int      { return int(s.e.GetDesc().GetId()) }
func (s *sysvSegment) mode() uint32 { return s.e.GetDesc().GetMode() }

// pages is the segment's size in whole pages, as the kernel maps it.
func (s *sysvSegment) pages() uint64 { return (s.e.GetSize() + pageSize - 1) &^ (pageSize - 1) }

func isSysv(v *vma) bool { return v.status&image.VMAAreaSysvIPC != 0 }

// sysvReadOnly says whether an attachment was made read-only
// (SHM_RDONLY): its file open read-only, which the dump records in
// fdflags; images without it (CRIU's) say it by the protection.
func sysvReadOnly(v *pb.VmaEntry) bool {
	if v.Fdflags == nil {
		return v.GetProt()&unix.PROT_WRITE == 0
	}
	return v.GetFdflags()&unix.O_ACCMODE == unix.O_RDONLY
}

// loadSysvShm reads the segments the processes attach from the image of
// their IPC namespace, and checks every attachment refers to one.
func (t *tree) loadSysvShm() error {
	var attached []vma
	for _, r := range t.procs {
		if !r.c.vmas.any(image.VMAAreaSysvIPC) {
			continue
		}
		for v := range r.c.vmas.all() {
			if isSysv(v) {
				attached = append(attached, *v)
			}
		}
	}
	t.sysv = map[uint64]*sysvSegment{}
	if len(attached) == 0 {
		return nil
	}
	ns := t.procs[0].ids().GetIpcNsId()
	es, err := image.ReadAll[pb.IpcShmEntry](t.dir, image.IpcShm, ns)
	if errors.Is(err, fs.ErrNotExist) {
		return imageErr("System V shared memory is attached, and %s is missing", image.IpcShm.FileName(ns))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, e := range es {
		d := e.GetDesc()
		id := uint64(d.GetId())
		switch {
		case d == nil:
			return imageErr("%s: a segment without its ipc_desc_entry", image.IpcShm.FileName(ns))
		case d.GetId() > math.MaxInt32 || e.GetSize() == 0 || e.GetSize() > math.MaxInt64/2:
			return imageErr("%s: segment %d of %d bytes", image.IpcShm.FileName(ns), d.GetId(), e.GetSize())
		case d.GetMode()&^(0o777|proc.ShmDest|proc.ShmLocked) != 0:
			return imageErr("%s: segment %d has mode %#o", image.IpcShm.FileName(ns), d.GetId(), d.GetMode())
		case e.GetHugetlbFlag() != 0:
			return fmt.Errorf("%w: System V shared memory %d of huge pages", ErrUnsupported, d.GetId())
		case t.sysv[id] != nil:
			return imageErr("%s: segment %d twice", image.IpcShm.FileName(ns), d.GetId())
		}
		t.sysv[id] = &sysvSegment{e: e}
		t.sysvOrder = append(t.sysvOrder, id)
	}
	for _, v := range attached {
		s := t.sysv[v.shmid]
		switch {
		case s == nil:
			return imageErr("the System V shared memory %d attached at %#x is not in %s", v.shmid, v.start, image.IpcShm.FileName(ns))
		case v.flags&unix.MAP_SHARED == 0 || v.pgoff%pageSize != 0 || v.pgoff > s.pages() || v.end-v.start > s.pages()-v.pgoff:
			return imageErr("System V shared memory %d attached at %#x-%#x, offset %#x, flags %#x: not within its %d bytes",
				v.shmid, v.start, v.end, v.pgoff, v.flags, s.e.GetSize())
		}
	}
	return nil
}

// prepareSysvShm finds each segment again, or makes it: a segment of
// the same id, key, size, owner and mode is the dumped one, never
// removed (ids are not reused at once), and other processes may share
// it, so the processes attach it again, if their credentials let them;
// one of that id but otherwise is another segment, and is refused.
// Without one, the segment is made with its id, key, mode and owner; its
// contents are written at its first attachment (attachSysvShm).
func (t *tree) prepareSysvShm() error {
	for _, id := range t.sysvOrder {
		s := t.sysv[id]
		var ds unix.SysvShmDesc
		_, err := unix.SysvShmCtl(s.id(), unix.IPC_STAT, &ds)
		switch {
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM):
			if err := t.createSysvShm(s); err != nil {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("stat System V shared memory %d: %w", id, err)
		}
		d := s.e.GetDesc()
		p := ds.Perm
		key := d.GetKey()
		if d.GetMode()&proc.ShmDest != 0 {
			key = 0 // the key it was made with, which reads 0 once removed
		}
		if uint32(p.Key) != key || ds.Segsz != s.e.GetSize() || p.Uid != d.GetUid() || p.Gid != d.GetGid() ||
			p.Cuid != d.GetCuid() || p.Cgid != d.GetCgid() || p.Mode&(0o777|proc.ShmDest) != d.GetMode()&(0o777|proc.ShmDest) {
			return fmt.Errorf("%w: id %d is another segment's now (key %#x, %d bytes, owner %d:%d, mode %#o), not the dumped one's (key %#x, %d bytes, owner %d:%d, mode %#o)",
				ErrSysvShmTaken, id, uint32(p.Key), ds.Segsz, p.Uid, p.Gid, p.Mode, key, s.e.GetSize(), d.GetUid(), d.GetGid(), d.GetMode())
		}
		for _, r := range t.procs {
			if err := r.mayAttach(s, p); err != nil {
				return t.named(r.pid, err)
			}
		}
		t.log.Info("System V shared memory still there: attaching the same segment, shared with whoever else attaches it",
			"id", id, "key", fmt.Sprintf("%#x", d.GetKey()), "size", ds.Segsz, "attached", ds.Nattch)
		s.filled = true
	}
	return nil
}

// mayAttach checks that the process's credentials let it attach the
// segment of permissions p as it did, as the kernel's ipcperms decides:
// owner, group or other bits, or CAP_IPC_OWNER. The restore attaches as
// root, and an image may name any segment there is: one the process
// could not attach itself would be given to it. (One made again holds
// what the images hold, and needs no check.)
func (r *restorer) mayAttach(s *sysvSegment, p unix.SysvIpcPerm) error {
	cr := r.c.cores[uint32(r.pid)].GetThreadCore().GetCreds()
	for v := range r.c.vmas.all() {
		if !isSysv(v) || v.shmid != uint64(s.id()) {
			continue
		}
		want := uint32(0o4)
		if !v.readOnly {
			want |= 0o2
		}
		granted := p.Mode
		switch {
		case cr.GetEuid() == p.Uid || cr.GetEuid() == p.Cuid:
			granted >>= 6
		case inGroup(cr, p.Gid) || inGroup(cr, p.Cgid):
			granted >>= 3
		}
		if want&^granted&0o7 != 0 && !hasCap(cr.GetCapEff(), capIPCOwner) {
			return fmt.Errorf("%w: segment %d (mode %#o, owner %d:%d) at %#x, with the process's credentials (euid %d, fsgid %d, groups %v)",
				ErrSysvShmDenied, s.id(), p.Mode, p.Uid, p.Gid, v.start, cr.GetEuid(), cr.GetFsgid(), cr.GetGroups())
		}
	}
	return nil
}

// inGroup reports whether gid is the fsgid or a supplementary group of
// the credentials, as in_group_p does.
func inGroup(cr *pb.CredsEntry, gid uint32) bool {
	return cr.GetFsgid() == gid || slices.Contains(cr.GetGroups(), gid)
}

// hasCap reports whether capability c is in the set of 32-bit words.
func hasCap(set []uint32, c uint) bool {
	return int(c/32) < len(set) && set[c/32]&(1<<(c%32)) != 0
}

// createSysvShm makes segment s with its id, through shm_next_id, its
// key, size, mode and owner. One that had been removed is made with the
// key it was made with, which names its attachments (it reads 0 once
// removed again), or none if another segment holds that key now.
func (t *tree) createSysvShm(s *sysvSegment) (err error) {
	d := s.e.GetDesc()
	if err := writeProcFile(shmNextID, strconv.Itoa(s.id())); err != nil {
		return fmt.Errorf("choose System V shared memory id %d: %w", s.id(), err)
	}
	defer func() {
		if rerr := resetShmNextID(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("reset %s: %w", shmNextID, rerr))
		}
	}()
	flags := unix.IPC_CREAT | unix.IPC_EXCL | int(d.GetMode()&0o777)
	id, err := unix.SysvShmGet(int(int32(d.GetKey())), int(s.e.GetSize()), flags)
	if errors.Is(err, unix.EEXIST) && d.GetMode()&proc.ShmDest != 0 {
		t.log.Warn("the key a removed System V shared memory segment was made with is taken: made without a key, its attachments' names in /proc/PID/maps say SYSV00000000",
			"id", s.id(), "key", fmt.Sprintf("%#x", d.GetKey()))
		id, err = unix.SysvShmGet(unix.IPC_PRIVATE, int(s.e.GetSize()), flags)
	}
	if err != nil {
		return fmt.Errorf("create System V shared memory %d (key %#x, %d bytes): %w%s", s.id(), d.GetKey(), s.e.GetSize(), err, t.sysvHolder(s))
	}
	if id != s.id() {
		_, rerr := unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		return errors.Join(fmt.Errorf("create System V shared memory %d: the kernel gave id %d", s.id(), id), rerr)
	}
	s.created = true
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		return fmt.Errorf("stat System V shared memory %d: %w", id, err)
	}
	ds.Perm.Uid, ds.Perm.Gid, ds.Perm.Mode = d.GetUid(), d.GetGid(), d.GetMode()&0o777
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		return fmt.Errorf("set owner %d:%d and mode %#o of System V shared memory %d: %w", d.GetUid(), d.GetGid(), d.GetMode()&0o777, id, err)
	}
	if d.GetMode()&proc.ShmLocked != 0 {
		if _, err := unix.SysvShmCtl(id, kernel.ShmLock, nil); err != nil {
			return fmt.Errorf("lock System V shared memory %d (SHM_LOCK): %w", id, err)
		}
	}
	t.log.Info("System V shared memory made again", "id", id, "key", fmt.Sprintf("%#x", d.GetKey()), "size", s.e.GetSize(),
		"mode", fmt.Sprintf("%#o", d.GetMode()), "uid", d.GetUid(), "gid", d.GetGid())
	return nil
}

// resetShmNextID leaves shm_next_id at -1 (resetNextID).
func resetShmNextID() error {
	return resetNextID(shmNextID, func(key, flags int) (int, error) { return unix.SysvShmGet(key, 1, flags) },
		func(id int) error { _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); return err })
}

// sysvHolder names the segment that holds s's key, or the slot of its
// id, for an error that says it cannot be made.
func (t *tree) sysvHolder(s *sysvSegment) string {
	segs, err := proc.ReadSysvShm()
	if err != nil {
		return ""
	}
	for _, o := range segs {
		switch {
		case s.e.GetDesc().GetKey() != 0 && uint32(o.Key) == s.e.GetDesc().GetKey():
			return fmt.Sprintf(" (segment %d holds key %#x)", o.ID, uint32(o.Key))
		case o.ID%ipcMNI == int32(s.id())%ipcMNI:
			return fmt.Sprintf(" (segment %d holds the slot of id %d)", o.ID, s.id())
		}
	}
	return ""
}

// ipcMNI is the number of slots of System V ids (IPCMNI): an id is a
// slot and a sequence number.
const ipcMNI = 32768

// destroySysvShm marks the segments made again that had been removed
// (IPC_RMID) for destruction once every process attaches them, as they
// were: they go at the last detach.
func (t *tree) destroySysvShm() error {
	for _, id := range t.sysvOrder {
		s := t.sysv[id]
		if !s.created || s.mode()&proc.ShmDest == 0 {
			continue
		}
		if _, err := unix.SysvShmCtl(s.id(), unix.IPC_RMID, nil); err != nil {
			return fmt.Errorf("remove System V shared memory %d (IPC_RMID): %w", id, err)
		}
		s.created = false
	}
	return nil
}

// removeSysvShm removes the segments a failed restore made.
func (t *tree) removeSysvShm() {
	for _, id := range t.sysvOrder {
		if s := t.sysv[id]; s.created {
			if _, err := unix.SysvShmCtl(s.id(), unix.IPC_RMID, nil); err != nil {
				t.log.Warn("remove System V shared memory made by the failed restore", "id", id, "err", err)
			}
		}
	}
}

// attachSysvShm attaches the segment of VMA v in the process, once for
// all the VMAs of that attachment (those of the segment at the same
// address less offset; an mprotect splits one): at a free place, whole,
// read-only if it was, and then each VMA is moved to its address, which
// keeps its offset; what no VMA keeps is unmapped. A segment this
// restore made is filled at its first attachment.
func (r *restorer) attachSysvShm(v *vma) error {
	base := v.start - v.pgoff
	var vs []vma
	for o := range r.c.vmas.all() {
		if isSysv(o) && o.shmid == v.shmid && o.start-o.pgoff == base {
			vs = append(vs, *o)
		}
	}
	if vs[0].start != v.start {
		return nil // attached with the first
	}
	s := r.sysv[v.shmid]
	size := s.pages()
	used, err := r.takenRanges(r.pid)
	if err != nil {
		return err
	}
	at, err := vdso.FindHole(used, size, base, mmapMinAddr(), taskSize)
	if err != nil {
		return fmt.Errorf("place System V shared memory %d: %w", s.id(), err)
	}
	flags := uint64(0)
	if v.readOnly {
		flags = unix.SHM_RDONLY
	}
	if _, err := r.tr.Syscall(r.pid, unix.SYS_SHMAT, uint64(s.id()), at, flags); err != nil {
		return fmt.Errorf("attach System V shared memory %d at %#x (flags %#x): %w", s.id(), at, flags, err)
	}
	if !s.filled {
		if err := r.fillSysvShm(s, at); err != nil {
			return fmt.Errorf("fill System V shared memory %d: %w", s.id(), err)
		}
		s.filled = true
	}
	left := []vdso.Range{{Start: at, End: at + size}}
	for _, o := range vs {
		start, length := o.start, o.end-o.start
		from := at + o.pgoff
		if from != start {
			if _, err := r.tr.Syscall(r.pid, unix.SYS_MREMAP, from, length, length, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, start); err != nil {
				return fmt.Errorf("move VMA %#x-%#x of System V shared memory %d from %#x: %w", start, start+length, s.id(), from, err)
			}
		}
		var rest []vdso.Range
		for _, l := range left {
			rest = append(rest, subtract(l, vdso.Range{Start: from, End: from + length})...)
		}
		left = rest
	}
	for _, l := range left {
		if err := r.sys(unix.SYS_MUNMAP, l.Start, l.End-l.Start); err != nil {
			return fmt.Errorf("unmap System V shared memory %d at %#x-%#x: %w", s.id(), l.Start, l.End, err)
		}
	}
	return nil
}

// fillSysvShm writes the stored contents of segment s, attached at at
// in the process, through the memory object behind that attachment,
// mapped whole in cryo: the last page past the size included.
func (r *restorer) fillSysvShm(s *sysvSegment, at uint64) error {
	size := s.pages()
	f, err := os.OpenFile(proc.Path(r.pid, fmt.Sprintf("map_files/%x-%x", at, at+size)), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open its memory: %w", err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map its memory: %w", err)
	}
	defer unix.Munmap(m)
	pr, err := r.c.dir.OpenShmemPages(uint64(s.id()))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	return eachRun(pr, func(e image.PageEntry) error {
		end := e.Vaddr + e.NrPages*pageSize
		if end > size || end < e.Vaddr {
			return imageErr("pages at offset %#x-%#x are past its end, %#x", e.Vaddr, end, size)
		}
		if _, err := io.ReadFull(pr.Data(e), m[e.Vaddr:end]); err != nil {
			return fmt.Errorf("%w: read pages at offset %#x: %w", ErrImage, e.Vaddr, err)
		}
		return nil
	})
}
