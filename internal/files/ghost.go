package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// An unlinked file a process holds (by a descriptor, a mapping or as its
// working directory) is a REG entry under its old name, tied by a
// remap-fpath.img entry to what a restore reaches it through, once per
// inode however many entries refer to it:
//
//   - a ghost, when no name is left (link count 0): the file's type,
//     owner, mode, times and, for a regular file, its data ranges (holes
//     left out) are saved in a ghost file image; a restore recreates it
//     under its old name (or beside it), removes the name at once and
//     opens every entry from the one inode;
//   - a link remap, when the file is still linked elsewhere: with
//     --link-remap the dump links it back beside its old name, as
//     link_remap.ID, a REG entry of its own; a restore opens that and
//     removes it once the process is restored. Without --link-remap such
//     a file is refused, as CRIU does: a copy would not be the same file.

// ghostChunksFrom is the size from which a regular file's ghost saves
// its data ranges rather than all of it, as CRIU's does.
const ghostChunksFrom = 3 * 4096

// remapTarget is what an unlinked file's entries are remapped to: a ghost
// file image, or a REG entry (a link remap), by id.
type remapTarget struct {
	typ pb.RemapType
	id  uint32
}

type inode struct{ dev, ino uint64 }

// ghostTable is what a dump saves of unlinked files.
type ghostTable struct {
	linkRemap bool
	// dir is the image directory, where a ghost's image is written as
	// the dump finds the file (SaveGhosts): its data is not held.
	dir *image.Dir
	// limit is the largest unlinked file saved, 0 for any.
	limit   int64
	targets map[inode]remapTarget
	ghosts  uint32 // how many ghost file images are written
	remaps  []*pb.RemapFilePathEntry
	// links are the link remaps this dump made, removed if it fails.
	links []string
}

// SaveGhosts tells the table the image directory, where it writes the
// image of each unlinked file it saves as it finds it, while the process
// is frozen (held until the images step, a deleted log file of 500 MB
// took as much of cryo's memory), and the largest file it saves, 0 for
// any (criu's --ghost-limit): a larger one is refused.
func (t *Table) SaveGhosts(dir *image.Dir, limit int64) { t.dir, t.limit = dir, limit }

// unlinked remaps entry id, for the unlinked file that /proc showed at
// name and that link (a /proc link of the process) reaches, to the file's
// ghost or link remap.
func (t *Table) unlinked(id uint32, name, link string, st *unix.Stat_t) error {
	k := inode{st.Dev, st.Ino}
	target, ok := t.targets[k]
	if !ok {
		if err := sameFS(name, st); err != nil {
			return err
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(link, &sfs); err != nil {
			return fmt.Errorf("statfs %s: %w", name, err)
		}
		if sfs.Type == unix.PROC_SUPER_MAGIC {
			// /proc/PID of a process that is gone: nothing makes it
			// again, nor links it back.
			return fmt.Errorf("%w: %s is of /proc, of a process that is gone", ErrUnsupported, name)
		}
		var err error
		if st.Nlink > 0 {
			target, err = t.linkBack(name, link, st)
		} else {
			target, err = t.takeGhost(name, link, st)
		}
		if err != nil {
			return err
		}
		t.targets[k] = target
	}
	if target.id == 0 {
		return nil // reached by its name again
	}
	t.remaps = append(t.remaps, &pb.RemapFilePathEntry{
		OrigId: id, RemapId: target.id, RemapType: target.typ.Enum(),
	})
	return nil
}

// sameFS refuses an unlinked file whose old name's nearest directory is
// on another filesystem: a file of an internal mount (shared anonymous
// hugetlb memory, an aio ring) shows a made-up name, and nothing
// recreated there would be the same object.
func sameFS(name string, st *unix.Stat_t) error {
	dir, err := nearestDir(name)
	if err != nil {
		return err
	}
	var dst unix.Stat_t
	if err := unix.Stat(dir, &dst); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if dst.Dev != st.Dev {
		return fmt.Errorf("%w: the unlinked file %s is not on the filesystem of %s", ErrUnsupported, name, dir)
	}
	return nil
}

// nearestDir is the directory of name or, if it was removed too, its
// nearest ancestor that is left.
func nearestDir(name string) (string, error) {
	dir := filepath.Dir(name)
	for {
		_, err := os.Lstat(dir)
		if err == nil || dir == "/" {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		dir = filepath.Dir(dir)
	}
}

// linkBack makes a link remap for a file unlinked from name but still
// linked elsewhere, reached at link.
func (t *Table) linkBack(name, link string, st *unix.Stat_t) (remapTarget, error) {
	var cur unix.Stat_t
	err := unix.Stat(name, &cur)
	switch {
	case err == nil && cur.Dev == st.Dev && cur.Ino == st.Ino:
		return remapTarget{}, nil
	case err == nil:
		return remapTarget{}, fmt.Errorf("%w: %s was unlinked and the name is now another file's", ErrUnsupported, name)
	case !errors.Is(err, unix.ENOENT):
		return remapTarget{}, fmt.Errorf("stat %s: %w", name, err)
	case !t.linkRemap:
		return remapTarget{}, fmt.Errorf("%w: %s was unlinked but is still linked elsewhere: dump with --link-remap to link it back for the restore",
			ErrUnsupported, name)
	}
	dir, err := nearestDir(name)
	if err != nil {
		return remapTarget{}, err
	}
	id := t.nextID()
	// A link remap of an earlier dump that was not restored may hold the
	// first name.
	base := "link_remap." + strconv.FormatUint(uint64(id), 10)
	path := filepath.Join(dir, base)
	for i := 1; ; i++ {
		err = unix.Linkat(unix.AT_FDCWD, link, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
		if !errors.Is(err, unix.EEXIST) || i == 100 {
			break
		}
		path = filepath.Join(dir, base+"."+strconv.Itoa(i))
	}
	if err != nil {
		return remapTarget{}, fmt.Errorf("link %s back at %s: %w", name, path, err)
	}
	t.links = append(t.links, path)
	t.add(&pb.FileEntry{Type: pb.FdTypes_REG, Id: id, Entry: &pb.RegFileEntry{
		Id: id, Flags: 0, Pos: 0, Fown: &pb.FownEntry{}, Name: path,
	}})
	return remapTarget{pb.RemapType_LINKED, id}, nil
}

// Abort undoes what a dump that failed did to the filesystem: it removes
// the link remaps.
func (t *Table) Abort() {
	for _, p := range t.links {
		os.Remove(p)
	}
	t.links = nil
}

// takeGhost saves the unlinked file name reached at link, of which no
// name is left, in a ghost file image. Its device is the kernel's dev_t,
// as CRIU keeps it: an inotify or fanotify mark finds its ghost by device
// and inode.
func (t *Table) takeGhost(name, link string, st *unix.Stat_t) (remapTarget, error) {
	e := &pb.GhostFileEntry{
		Uid: st.Uid, Gid: st.Gid, Mode: st.Mode,
		Dev: pb.Uint32(kernel.KernelDev(unix.Major(st.Dev), unix.Minor(st.Dev))), Ino: pb.Uint64(st.Ino),
		Atim: timeval(st.Atim), Mtim: timeval(st.Mtim),
	}
	var f *os.File
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		var err error
		if f, err = os.Open(link); err != nil {
			return remapTarget{}, err
		}
		defer f.Close()
		if t.limit > 0 && st.Size > t.limit {
			return remapTarget{}, fmt.Errorf("%w: the unlinked file %s has %d bytes, more than the ghost limit of %d (--ghost-limit)", ErrUnsupported, name, st.Size, t.limit)
		}
		e.Size = pb.Uint64(uint64(st.Size))
		e.Chunks = pb.Bool(st.Size >= ghostChunksFrom)
	case unix.S_IFLNK:
		target, err := linkTarget(link)
		if err != nil {
			return remapTarget{}, fmt.Errorf("read the removed symbolic link %s: %w", name, err)
		}
		e.SymlnkTarget = pb.String(target)
	case unix.S_IFCHR:
		if !harmlessDevice(unix.Major(st.Rdev), unix.Minor(st.Rdev)) {
			return remapTarget{}, fmt.Errorf("%w: the deleted device %s (%d:%d): only null, zero, full, random and urandom are made again", ErrUnsupported, name, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		e.Rdev = pb.Uint32(kernel.KernelDev(unix.Major(st.Rdev), unix.Minor(st.Rdev)))
	case unix.S_IFDIR, unix.S_IFIFO:
	default:
		return remapTarget{}, fmt.Errorf("%w: unlinked file of mode %#o", ErrUnsupported, st.Mode)
	}
	if t.dir == nil {
		return remapTarget{}, errors.New("save unlinked file: no image directory")
	}
	id := t.ghosts + 1
	w, err := t.dir.Create(image.GhostFile, id)
	if err != nil {
		return remapTarget{}, err
	}
	err = w.Write(e)
	switch {
	case err != nil || f == nil:
	case e.GetChunks():
		// Its data ranges, holes left out, as CRIU's ghosts hold them.
		err = forData(f, st.Size, func(off, end int64) error {
			if err := w.Write(&pb.GhostChunkEntry{Len: uint64(end - off), Off: uint64(off)}); err != nil {
				return err
			}
			return copyPayload(w, f, off, end-off)
		})
	default:
		err = copyPayload(w, f, 0, st.Size)
	}
	if err := errors.Join(err, w.Close()); err != nil {
		return remapTarget{}, fmt.Errorf("save unlinked file: %w", err)
	}
	t.ghosts = id
	return remapTarget{pb.RemapType_GHOST, id}, nil
}

// harmlessDevice reports whether a character device is one that root may
// make a node of for any process, as the restore of a deleted one does
// without an access check: /dev/null, zero, full, random and urandom, not
// the memory or the kernel log.
func harmlessDevice(major, minor uint32) bool {
	return major == memMajor && (minor == 3 || minor == 5 || minor == 7 || minor == 8 || minor == 9)
}

// linkTarget reads what the symbolic link that link (/proc/PID/fd/N)
// reaches points to.
func linkTarget(link string) (string, error) {
	fd, err := unix.Open(link, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// copyPayload copies n bytes of f from off to w, as the payload of the
// record written last, a piece at a time.
func copyPayload(w *image.Writer, f *os.File, off, n int64) error {
	buf := make([]byte, min(n, 256<<10))
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		if _, err := f.ReadAt(b, off); err != nil {
			return fmt.Errorf("read unlinked file at %d: %w", off, err)
		}
		if err := w.WritePayload(b); err != nil {
			return err
		}
		off, n = off+int64(len(b)), n-int64(len(b))
	}
	return nil
}

// timeval is a time in CRIU's ghost entries, to the microsecond.
func timeval(ts unix.Timespec) *pb.Timeval {
	return &pb.Timeval{TvSec: uint64(ts.Sec), TvUsec: uint64(ts.Nsec / 1000)}
}

// forData calls fn for each range [off, end) of f below size that holds
// data: holes are skipped.
func forData(f *os.File, size int64, fn func(off, end int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only holes left
		}
		if err != nil {
			return fmt.Errorf("seek data from %#x: %w", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole from %#x: %w", data, err)
		}
		hole = min(hole, size)
		if data >= hole {
			return nil
		}
		if err := fn(data, hole); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

func (g *ghostTable) write(dir *image.Dir) error {
	return image.WriteSome(dir, image.RemapFpath, 0, g.remaps)
}

// ghostSet is the unlinked files of a checkpoint: what each REG entry
// that stands for one is remapped to, and the ghost entries, checked.
type ghostSet struct {
	remaps map[uint32]remapTarget
	ghosts map[uint32]*pb.GhostFileEntry
}

func (s *Set) loadGhosts() error {
	remaps, err := image.ReadAll[pb.RemapFilePathEntry](s.dir, image.RemapFpath, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	s.remaps = map[uint32]remapTarget{}
	s.ghosts = map[uint32]*pb.GhostFileEntry{}
	for _, rm := range remaps {
		orig, target := rm.GetOrigId(), remapTarget{rm.GetRemapType(), rm.GetRemapId()}
		if f := s.File(orig); f == nil || f.GetReg() == nil {
			return imageErr("remap-fpath.img: file %d is not a regular file entry", orig)
		}
		if _, dup := s.remaps[orig]; dup {
			return imageErr("remap-fpath.img: file %d remapped twice", orig)
		}
		switch target.typ {
		case pb.RemapType_GHOST:
			if _, ok := s.ghosts[target.id]; !ok {
				if s.ghosts[target.id], err = checkGhost(s.dir, target.id); err != nil {
					return err
				}
			}
		case pb.RemapType_LINKED:
			if f := s.File(target.id); f == nil || f.GetReg() == nil || target.id == orig {
				return imageErr("remap-fpath.img: link remap of file %d to %d, which is not a regular file entry", orig, target.id)
			}
		default:
			return fmt.Errorf("%w: file remap of type %v", ErrUnsupported, target.typ)
		}
		s.remaps[orig] = target
	}
	return nil
}

// checkGhost reads ghost file image id through, checking that its chunks
// are in order and within its size.
func checkGhost(dir *image.Dir, id uint32) (*pb.GhostFileEntry, error) {
	var e *pb.GhostFileEntry
	err := readGhost(dir, id, func(g *pb.GhostFileEntry) error {
		e = g
		return nil
	}, func(*pb.GhostChunkEntry, io.Reader) error { return nil })
	return e, err
}

// readGhost reads ghost file image id: its entry, given to head, then each
// chunk with its data (the whole file, at offset 0, for a ghost without
// chunks), given to body.
func readGhost(dir *image.Dir, id uint32, head func(*pb.GhostFileEntry) error,
	body func(*pb.GhostChunkEntry, io.Reader) error) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: ghost file %d: %s", ErrImage, id, fmt.Sprintf(format, a...))
	}
	r, err := dir.Open(image.GhostFile, id)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	defer r.Close()
	e := &pb.GhostFileEntry{}
	if err := r.Next(e); err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	switch e.GetMode() & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR, unix.S_IFIFO:
	case unix.S_IFLNK:
		if e.GetSymlnkTarget() == "" {
			return bad("a symbolic link to nothing")
		}
	case unix.S_IFCHR:
		if e.Rdev == nil {
			return bad("a device with no number")
		}
		if major, minor := kernel.KernelDevSplit(e.GetRdev()); !harmlessDevice(major, minor) {
			return fmt.Errorf("%w: ghost file %d is the character device %d:%d, not null, zero, full, random or urandom", ErrUnsupported, id, major, minor)
		}
	default:
		return fmt.Errorf("%w: ghost file %d of mode %#o", ErrUnsupported, id, e.GetMode())
	}
	if e.GetChunks() && (e.Size == nil || e.GetMode()&unix.S_IFMT != unix.S_IFREG) {
		return bad("chunks without a size, or not of a regular file")
	}
	if err := head(e); err != nil {
		return err
	}
	if e.GetMode()&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	if !e.GetChunks() {
		if err := body(&pb.GhostChunkEntry{Len: e.GetSize(), Off: 0}, r.Payload()); err != nil {
			return fmt.Errorf("ghost file %d: %w", id, err)
		}
		return nil
	}
	var end uint64
	for {
		c := &pb.GhostChunkEntry{}
		err := r.Next(c)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrImage, err)
		}
		if c.GetOff() < end || c.GetLen() > e.GetSize() || c.GetOff() > e.GetSize()-c.GetLen() {
			return bad("chunk of %d bytes at %d, after %d, in a file of %d", c.GetLen(), c.GetOff(), end, e.GetSize())
		}
		end = c.GetOff() + c.GetLen()
		if err := body(c, r.Payload()); err != nil {
			return fmt.Errorf("ghost file %d: %w", id, err)
		}
	}
}

// ghostRestorer holds, for the restore of a tree, cryo's descriptors of
// the unlinked files it recreated or reached through link remaps, through
// which the processes open them (/proc/CRYO/fd/N): one inode per file,
// whatever name it had, whichever process has it.
type ghostRestorer struct {
	held map[remapTarget]int
	// links are the link remaps to remove once the process is restored.
	links []string
}

// remapped returns cryo's descriptor of what an entry once named name is
// remapped to, recreating or opening it the first time.
func (r *Restorer) remapped(t remapTarget, name string) (int, error) {
	g := &r.shared.ghostRestorer
	if fd, ok := g.held[t]; ok {
		return fd, nil
	}
	var fd int
	var err error
	if t.typ == pb.RemapType_GHOST {
		fd, err = recreateGhost(r.set.dir, t.id, name)
	} else {
		link := r.set.File(t.id).GetReg().GetName()
		if fd, err = unix.Open(link, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			err = fmt.Errorf("open link remap %s of %s: %w", link, name, err)
		} else {
			g.links = append(g.links, link)
			fd = underOldName(fd, name)
		}
	}
	if err != nil {
		return -1, err
	}
	if g.held == nil {
		g.held = map[remapTarget]int{}
	}
	g.held[t] = fd
	return fd, nil
}

// underOldName returns a descriptor of the file that fd holds, reached
// by the name it had before it was unlinked when that name is free: the
// process's descriptors then read "NAME (deleted)" as they did, not the
// link remap's name. Otherwise fd itself.
func underOldName(fd int, name string) int {
	src := "/proc/self/fd/" + strconv.Itoa(fd)
	if err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return fd
	}
	defer os.Remove(name)
	nfd, err := unix.Open(name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fd
	}
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstat(nfd, &b) != nil || a.Dev != b.Dev || a.Ino != b.Ino {
		unix.Close(nfd) // the name was taken meanwhile
		return fd
	}
	unix.Close(fd)
	return nfd
}

// RemoveLinks removes the link remaps the restore opened: the processes
// hold the files now.
func (s *Shared) RemoveLinks() error {
	var errs []error
	for _, l := range s.links {
		if err := os.Remove(l); err != nil {
			errs = append(errs, err)
		}
	}
	s.links = nil
	return errors.Join(errs...)
}

// Close closes cryo's descriptors of unlinked files and of TCP
// connections (closeConnections), and reaps the children pidfds of
// processes reaped were made of. Link remaps left (the restore failed)
// stay, for another restore.
func (s *Shared) Close() {
	for _, fd := range s.held {
		unix.Close(fd)
	}
	for _, fd := range s.memfds {
		unix.Close(fd)
	}
	s.held, s.memfds = nil, nil
	s.ReapStandIns()
	s.closeConnections()
	s.closeUnix()
	s.closePtys()
}

// recreateGhost recreates ghost id, once named name: at that name if it
// is free, else beside it, the name removed at once (before any data or
// set-id bit is there to see). It returns cryo's descriptor of it.
func recreateGhost(dir *image.Dir, id uint32, name string) (int, error) {
	fd := -1
	var e *pb.GhostFileEntry
	err := readGhost(dir, id, func(g *pb.GhostFileEntry) (err error) {
		e = g
		fd, err = createGhost(name, e)
		return err
	}, func(c *pb.GhostChunkEntry, data io.Reader) error {
		_, err := io.Copy(io.NewOffsetWriter(fdAt(fd), int64(c.GetOff())), data)
		return err
	})
	if err == nil {
		err = applyGhostMeta(fd, e)
	}
	if err == nil && e.GetMode()&unix.S_IFMT == unix.S_IFREG {
		// Held read-write, the file could not become an executable
		// (ETXTBSY): cryo keeps an O_PATH descriptor, as of the others.
		var p int
		p, err = unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_PATH|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		fd = p
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("recreate unlinked file %s: %w", name, err)
	}
	return fd, nil
}

// fdAt writes at offsets of a descriptor.
type fdAt int

func (fd fdAt) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pwrite(int(fd), p[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// applyGhostMeta gives a recreated ghost its size, owner, mode and times;
// a symbolic link its owner alone (its mode is always 0777).
func applyGhostMeta(fd int, e *pb.GhostFileEntry) error {
	self := "/proc/self/fd/" + strconv.Itoa(fd)
	if e.GetMode()&unix.S_IFMT == unix.S_IFLNK {
		if err := unix.Fchownat(fd, "", int(e.GetUid()), int(e.GetGid()), unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown %d:%d: %w", e.GetUid(), e.GetGid(), err)
		}
		return nil
	}
	if e.GetMode()&unix.S_IFMT == unix.S_IFREG {
		if err := unix.Ftruncate(fd, int64(e.GetSize())); err != nil {
			return fmt.Errorf("truncate to %d: %w", e.GetSize(), err)
		}
	}
	// chown clears the set-id bits: the mode comes after it.
	if err := unix.Fchownat(unix.AT_FDCWD, self, int(e.GetUid()), int(e.GetGid()), 0); err != nil {
		return fmt.Errorf("chown %d:%d: %w", e.GetUid(), e.GetGid(), err)
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, self, e.GetMode()&0o7777, 0); err != nil {
		return fmt.Errorf("chmod %#o: %w", e.GetMode()&0o7777, err)
	}
	if e.Atim != nil && e.Mtim != nil {
		ts := []unix.Timespec{
			unix.NsecToTimespec(int64(e.Atim.GetTvSec())*1e9 + int64(e.Atim.GetTvUsec())*1e3),
			unix.NsecToTimespec(int64(e.Mtim.GetTvSec())*1e9 + int64(e.Mtim.GetTvUsec())*1e3),
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, self, ts, 0); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
	}
	return nil
}

// createGhost makes an empty file of ghost e's type (private to root until
// its metadata is applied; a symbolic link to its target, a device of its
// number) at name, or beside it if the name is taken, in the
// nearest directory left, removes the name and returns a descriptor of
// the file: read-write for a regular file, to fill it, O_PATH for the
// others. The directory is reached without following any symbolic link:
// the dumped name is canonical, so a link in it was put there since, and
// root must not create files where it leads.
func createGhost(name string, e *pb.GhostFileEntry) (int, error) {
	typ := e.GetMode() & unix.S_IFMT
	dir, err := nearestDir(name)
	if err != nil {
		return -1, err
	}
	dfd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	base := filepath.Base(name)
	for i := 1; ; i++ {
		fd, err := createNode(dfd, base, e)
		if err == nil {
			unlink := 0
			if typ == unix.S_IFDIR {
				unlink = unix.AT_REMOVEDIR
			}
			if err = unix.Unlinkat(dfd, base, unlink); err != nil {
				unix.Close(fd)
				return -1, fmt.Errorf("remove %s: %w", filepath.Join(dir, base), err)
			}
			return fd, nil
		}
		if !errors.Is(err, unix.EEXIST) || i == 100 {
			return -1, fmt.Errorf("create %s: %w", filepath.Join(dir, base), err)
		}
		base = filepath.Base(name) + ".cryo-ghost." + strconv.Itoa(i)
	}
}

// createNode makes name, of ghost e's type, in directory dfd.
func createNode(dfd int, name string, e *pb.GhostFileEntry) (int, error) {
	typ := e.GetMode() & unix.S_IFMT
	flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
	var err error
	switch typ {
	case unix.S_IFREG:
		return unix.Openat(dfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	case unix.S_IFDIR:
		err = unix.Mkdirat(dfd, name, 0o700)
		flags |= unix.O_DIRECTORY
	case unix.S_IFIFO:
		err = unix.Mknodat(dfd, name, unix.S_IFIFO|0o600, 0)
	case unix.S_IFLNK:
		err = unix.Symlinkat(e.GetSymlnkTarget(), dfd, name)
	case unix.S_IFCHR:
		rdev := unix.Mkdev(kernel.KernelDevSplit(e.GetRdev()))
		err = unix.Mknodat(dfd, name, unix.S_IFCHR|0o600, int(rdev))
	}
	if err != nil {
		return -1, err
	}
	fd, err := unix.Openat(dfd, name, flags, 0)
	if err != nil {
		unlink := 0
		if typ == unix.S_IFDIR {
			unlink = unix.AT_REMOVEDIR
		}
		unix.Unlinkat(dfd, name, unlink)
		return -1, err
	}
	return fd, nil
}
