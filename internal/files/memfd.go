package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

const pageSize = kernel.PageSize

// memfdKind is an open file description of a memfd. The memfd itself, an
// inode with a name, size, mode and seals, is a memfd.img entry whose
// contents are stored once, in the shmem pages of its shmid, however many
// mappings and descriptors share it. Mappings refer to a MEMFD file entry
// through their shmid, as CRIU's do.
type memfdKind struct{}

func (memfdKind) typ() pb.FdTypes { return pb.FdTypes_MEMFD }

// claims a memfd, which reads as a deleted file but is a shmem object: it
// has no path to recreate it at.
func (memfdKind) claims(d *desc) bool {
	if d.link == shmemLink && d.mode() == unix.S_IFREG {
		return true
	}
	_, ok := MemfdName(d.link)
	return ok && strings.HasSuffix(d.link, " (deleted)")
}

// shmemLink is what /proc shows of a descriptor of shared anonymous
// memory (opened through /proc/PID/map_files): a shmem file like a
// memfd's, but made by mmap, without a name or seals of its own. It is
// kept as a memfd entry named shmemName, which a memfd's name (the link
// would read "/memfd:/dev/zero") cannot be told from; the restore makes
// one again by mmap.
const (
	shmemLink = "/dev/zero (deleted)"
	shmemName = "/dev/zero"
)

func (memfdKind) dump(t *Table, d *desc) (uint32, error) {
	name, _ := MemfdName(d.link)
	if d.link == shmemLink {
		name = shmemName
	}
	id := t.nextID()
	if err := t.memfdFile(id, d.path, name, statusFlags(d.info), uint64(d.info.Pos)); err != nil {
		return 0, fmt.Errorf("fd %d: %w", d.fd, err)
	}
	return id, nil
}

// MemfdName is the name a memfd was created with, from the path its
// mappings and descriptors show, "/memfd:NAME (deleted)".
func MemfdName(path string) (string, bool) {
	name, ok := strings.CutPrefix(path, "/memfd:")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(name, " (deleted)"), true
}

// memfdTable is the memfd inodes of a dump, by inode number, in the order
// found.
type memfdTable struct {
	memfds     map[uint64]*memfdObject
	memfdOrder []uint64
}

// memfdObject is one memfd inode: its memfd.img entry and a descriptor of
// cryo's to read its contents through when the pages are copied.
type memfdObject struct {
	e *pb.MemfdInodeEntry
	f *os.File
}

// memfdInode returns the memfd.img entry of the memfd that path (a
// /proc/PID/fd or map_files link) reaches, recording it the first time.
func (t *Table) memfdInode(path, name string) (*pb.MemfdInodeEntry, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("stat memfd %s: %w", name, err)
	}
	if o, ok := t.memfds[st.Ino]; ok {
		return o.e, nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: memfd %s has mode %#o", ErrUnsupported, name, st.Mode)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open memfd %s: %w", name, err)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get seals of memfd %s: %w", name, err)
	}
	e := &pb.MemfdInodeEntry{
		Name: name, Uid: st.Uid, Gid: st.Gid,
		Size: uint64(st.Size), Shmid: uint32(st.Ino),
		Seals: uint32(seals), InodeId: uint64(len(t.memfdOrder) + 1),
		Mode: pb.Uint32(st.Mode),
	}
	t.memfds[st.Ino] = &memfdObject{e: e, f: f}
	t.memfdOrder = append(t.memfdOrder, st.Ino)
	return e, nil
}

// memfdFile adds a MEMFD file entry id for the memfd at path, with the
// open flags and position given.
func (t *Table) memfdFile(id uint32, path, name string, flags uint32, pos uint64) error {
	e, err := t.memfdInode(path, name)
	if err != nil {
		return err
	}
	t.add(&pb.FileEntry{
		Type: pb.FdTypes_MEMFD, Id: id,
		Entry: &pb.MemfdFileEntry{
			Id: id, Flags: flags, Pos: pos,
			Fown: &pb.FownEntry{}, InodeId: uint32(e.GetInodeId()),
		},
	})
	return nil
}

// MemfdMapping returns the id of the MEMFD entry a mapping of the memfd
// called name refers to, reached at path (its map_files link), opened
// with flags: one entry per memfd and flags.
func (t *Table) MemfdMapping(path, name string, flags uint32) (uint32, error) {
	e, err := t.memfdInode(path, name)
	if err != nil {
		return 0, err
	}
	key := fmt.Sprintf("memfd:%d:%o", e.GetInodeId(), flags)
	if id, ok := t.byKey[key]; ok {
		return id, nil
	}
	id := t.nextID()
	if err := t.memfdFile(id, path, name, flags, 0); err != nil {
		return 0, err
	}
	t.byKey[key] = id
	return id, nil
}

// Close closes cryo's descriptors of the memfds and of the TCP
// connections, which leave repair mode and are unlocked first unless
// KeepConnections kept them.
func (t *Table) Close() {
	for _, o := range t.memfds {
		o.f.Close()
	}
	t.closeConnections()
}

// MemfdCopy is the copy of one memfd's contents into its pages file.
type MemfdCopy struct {
	// Name is the memfd's, for messages.
	Name string
	// Shmid names its pages file.
	Shmid uint64
	// Copy writes the pages that hold data into w (holes are skipped),
	// reading through buf, and returns how many pages it wrote.
	Copy func(w *image.PageWriter, buf []byte) (pages uint64, err error)
}

// MemfdCopies lists the memfds whose contents the dump stores, in order:
// read through cryo's descriptor, so that pages no mapping holds belong to
// the object too.
func (t *Table) MemfdCopies() []MemfdCopy {
	var out []MemfdCopy
	for _, ino := range t.memfdOrder {
		o := t.memfds[ino]
		out = append(out, MemfdCopy{Name: o.e.GetName(), Shmid: ino, Copy: func(w *image.PageWriter, buf []byte) (uint64, error) {
			return copyObject(o, w, buf)
		}})
	}
	return out
}

func copyObject(o *memfdObject, w *image.PageWriter, buf []byte) (uint64, error) {
	return CopyPages(o.f, int64(o.e.GetSize()), w, buf)
}

// CopyPages writes the pages of file f, of size bytes, that hold data
// (holes are skipped) into w at their offsets, through buf, and returns
// how many it wrote.
func CopyPages(f *os.File, size int64, w *image.PageWriter, buf []byte) (uint64, error) {
	var pages uint64
	var next int64 // the pages below are written
	err := forData(f, size, func(data, hole int64) error {
		data = max(data&^(pageSize-1), next)
		hole = (hole + pageSize - 1) &^ (pageSize - 1)
		for data < hole {
			n := min(int64(len(buf)), hole-data)
			b := buf[:n]
			got, err := f.ReadAt(b, data)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read at %#x: %w", data, err)
			}
			clear(b[got:]) // the tail of the last page, past the size
			if err := w.WritePages(uint64(data), b); err != nil {
				return err
			}
			pages += uint64(n) / pageSize
			data += n
		}
		next = hole
		return nil
	})
	return pages, err
}

func (m *memfdTable) write(dir *image.Dir) error {
	es := make([]*pb.MemfdInodeEntry, 0, len(m.memfdOrder))
	for _, ino := range m.memfdOrder {
		es = append(es, m.memfds[ino].e)
	}
	return image.WriteSome(dir, image.Memfd, 0, es)
}

// memfdSet is the memfd inodes of a checkpoint, by inode id.
type memfdSet struct {
	memfds map[uint32]*pb.MemfdInodeEntry
}

// loadMemfds reads memfd.img, absent from dumps without memfds.
func (s *Set) loadMemfds() error {
	s.memfds = map[uint32]*pb.MemfdInodeEntry{}
	es, err := image.ReadAll[pb.MemfdInodeEntry](s.dir, image.Memfd, 0)
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
		s.memfds[uint32(e.GetInodeId())] = e
	}
	return nil
}

func (memfdKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetMemfd() == nil {
		return imageErr("file %d: MEMFD without a memfd entry", f.GetId())
	}
	if s.memfds[f.GetMemfd().GetInodeId()] == nil {
		return imageErr("file %d: memfd inode %d, which memfd.img lacks", f.GetId(), f.GetMemfd().GetInodeId())
	}
	return nil
}

// open opens a new open file description of a memfd, with the entry's
// flags and position: through /proc/self/fd, as a dup would share the
// position with the other entries of the inode. The first read-write
// entry of a memfd made by memfd_create gets that very description:
// opened by memfd_create, it does not count as a writer of the inode,
// which one opened again does, and a writer makes executing the memfd
// (execveat, as runc runs itself) fail with ETXTBSY.
func (memfdKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetMemfd()
	m, err := r.memfd(e.GetInodeId())
	if err != nil {
		return -1, err
	}
	if id := e.GetInodeId(); e.GetFlags()&unix.O_ACCMODE == unix.O_RDWR && !r.shared.memfdGiven[id] && r.set.memfds[id].GetName() != shmemName {
		r.shared.memfdGiven[id] = true
		return r.memfdMade(id, e)
	}
	fd, err := r.reopen(fmt.Sprintf("/proc/%d/fd/%d", r.pid, m), e.GetFlags(), e.GetPos())
	if err != nil {
		return -1, fmt.Errorf("reopen memfd %s: %w", r.set.memfds[e.GetInodeId()].GetName(), err)
	}
	return fd, nil
}

// memfdMade returns a descriptor of cryo's of the open file description
// memfd_create made for memfd inode id, with entry e's status flags and
// position.
func (r *Restorer) memfdMade(id uint32, e *pb.MemfdFileEntry) (int, error) {
	name := r.set.memfds[id].GetName()
	fd, err := unix.FcntlInt(uintptr(r.shared.memfds[id]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("duplicate memfd %s: %w", name, err)
	}
	if err := setStatusFlags(fd, e.GetFlags()); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set the flags of memfd %s: %w", name, err)
	}
	return seekTo(fd, name, e.GetPos())
}

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

// fillChunk is how much of a memfd's stored contents one write moves.
const fillChunk = 16 << 20

// memfdRestorer holds the memfds made so far in the process.
type memfdRestorer struct {
	memfds map[uint32]uint64 // inode id -> the process's descriptor
	sealed map[uint32]bool   // memfds with all their seals
}

// MemfdMapping returns the process's descriptor of the memfd that the
// MEMFD entry id stands for, to map it, making the memfd on first use.
func (r *Restorer) MemfdMapping(id uint32) (uint64, error) {
	f := r.set.File(id)
	if f == nil || f.GetMemfd() == nil {
		return 0, imageErr("file %d is not a memfd entry", id)
	}
	return r.memfd(f.GetMemfd().GetInodeId())
}

// memfd returns the process's descriptor of memfd inode id, making the
// memfd on first use: created, sized and filled, with its early seals.
func (r *Restorer) memfd(id uint32) (uint64, error) {
	if n, ok := r.memfds[id]; ok {
		return n, nil
	}
	if r.memfds == nil {
		r.memfds, r.sealed = map[uint32]uint64{}, map[uint32]bool{}
	}
	e := r.set.memfds[id]
	if held, ok := r.shared.memfds[id]; ok {
		// Made by another process of the tree, which sized, filled and
		// sealed it: the same inode, reached through cryo's descriptor.
		n, err := r.open(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), held), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, fmt.Errorf("open memfd %s made by another process: %w", e.GetName(), err)
		}
		r.memfds[id], r.sealed[id] = n, true
		return n, nil
	}
	n, err := r.makeMemfd(e)
	if err != nil {
		return 0, err
	}
	r.memfds[id] = n
	// Shared anonymous memory is born sealed against more seals.
	r.sealed[id] = e.GetName() == shmemName
	held, err := kernel.Getfd(r.pid, int(n))
	if err != nil {
		return 0, err
	}
	r.shared.memfds[id] = held
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

// makeMemfd makes the memfd of entry e in the process, or the shmem file
// of shared anonymous memory (shmemName): mapped, opened through its
// map_files link, unmapped.
func (r *Restorer) makeMemfd(e *pb.MemfdInodeEntry) (uint64, error) {
	if e.GetName() != shmemName {
		scratch, err := r.tr.WriteString(r.pid, e.GetName())
		if err != nil {
			return 0, err
		}
		n, err := r.tr.Syscall(r.pid, unix.SYS_MEMFD_CREATE, scratch, mfdFlags)
		if err != nil {
			return 0, fmt.Errorf("memfd_create %s: %w", e.GetName(), err)
		}
		return n, nil
	}
	addr, err := r.tr.Syscall(r.pid, unix.SYS_MMAP, 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return 0, fmt.Errorf("map shared anonymous memory: %w", err)
	}
	n, err := r.open(fmt.Sprintf("/proc/self/map_files/%x-%x", addr, addr+pageSize), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if uerr := r.sys(unix.SYS_MUNMAP, addr, pageSize); err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		return 0, fmt.Errorf("open shared anonymous memory: %w", err)
	}
	return n, nil
}

// fillMemfd writes the stored contents of a memfd from outside, through a
// duplicate of its descriptor: no mapping of it is needed.
func (r *Restorer) fillMemfd(n uint64, e *pb.MemfdInodeEntry) error {
	pr, err := r.set.dir.OpenShmemPages(uint64(e.GetShmid()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // all holes
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer pr.Close()
	return r.outside(n, func(dup int) error {
		for {
			pe, err := pr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%w: %w", ErrImage, err)
			}
			if pe.Flags&image.PEPresent == 0 {
				return fmt.Errorf("%w: memfd pages at %#x are not in this image (incremental or lazy dumps)", ErrUnsupported, pe.Vaddr)
			}
			size := pe.NrPages * pageSize
			if pe.Vaddr+size > (e.GetSize()+pageSize-1)&^(pageSize-1) {
				return imageErr("pages at offset %#x-%#x beyond the size %#x", pe.Vaddr, pe.Vaddr+size, e.GetSize())
			}
			// The last page may run past the size: writing it would grow
			// the file.
			size = min(size, e.GetSize()-pe.Vaddr)
			for off := uint64(0); off < size; {
				k := min(fillChunk, size-off)
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
		}
	})
}

// opened seals the memfds that only descriptors hold, made just now.
func (memfdKind) opened(r *Restorer) error { return r.SealMemfds() }

// SealMemfds adds the seals left for after the mappings to the memfds not
// yet sealed: once the mappings are made, and again for memfds that only
// descriptors hold.
func (r *Restorer) SealMemfds() error {
	for id, n := range r.memfds {
		if r.sealed[id] {
			continue
		}
		r.sealed[id] = true
		e := r.set.memfds[id]
		if late := e.GetSeals() & lateSeals; late != 0 {
			if err := r.sys(unix.SYS_FCNTL, n, unix.F_ADD_SEALS, uint64(late)); err != nil {
				return fmt.Errorf("seal memfd %s (fd %d) with %#x: %w", e.GetName(), n, late, err)
			}
		}
	}
	return nil
}

// memfdDescriptors are the process's descriptors of the memfds made.
func (r *Restorer) memfdDescriptors() []uint64 {
	var out []uint64
	for _, n := range r.memfds {
		out = append(out, n)
	}
	return out
}

// makeMemfds makes the memfds that the table's entries are opened from,
// and moves every memfd the process holds to a number the table does not
// use, for as long as the table is being made.
func (r *Restorer) makeMemfds() error {
	for _, fd := range r.set.Fds {
		if f := r.set.File(fd.GetId()); f.GetType() == pb.FdTypes_MEMFD {
			if _, err := r.memfd(f.GetMemfd().GetInodeId()); err != nil {
				return fmt.Errorf("fd %d: %w", fd.GetFd(), err)
			}
		}
	}
	for _, n := range r.memfds {
		if !r.isTarget(n) {
			r.kept[n] = true
		}
	}
	for id, n := range r.memfds {
		if r.kept[n] {
			continue
		}
		free := r.free(0, r.isTarget)
		if err := r.sys(unix.SYS_DUP3, n, free, unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("move memfd descriptor %d out of the table to %d: %w", n, free, err)
		}
		if err := r.sys(unix.SYS_CLOSE, n); err != nil {
			return err
		}
		r.memfds[id] = free
		r.kept[free] = true
	}
	return nil
}

// closeMemfds closes the process's own descriptors of the memfds, which
// it holds only through its mappings and its entries' descriptors.
func (r *Restorer) closeMemfds() error {
	for id, n := range r.memfds {
		if err := r.sys(unix.SYS_CLOSE, n); err != nil {
			return err
		}
		delete(r.memfds, id)
		delete(r.kept, n)
	}
	return nil
}
