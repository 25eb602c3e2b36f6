package files

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
)

// A file reached by its path may have changed between dump and restore:
// rebuilt, truncated, replaced by another file or a symbolic link. The
// dump records what identifies it: its type, mode and size (and the
// build-id of a mapped ELF file) in CRIU's reg entry, its owner,
// modification time and inode in cryo-file-stat.img; a restore compares
// them before anything is built (Set.Verify).

// identityTable is what a dump records of files reached by their path
// beyond their reg entries.
type identityTable struct {
	stats []image.FileStat
}

// statx returns what cryo compares of the file at path (dirfd and flags
// as statx(2) takes them).
func statx(dirfd int, path string, flags int) (*unix.Statx_t, error) {
	var st unix.Statx_t
	if err := unix.Statx(dirfd, path, flags, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st); err != nil {
		return nil, fmt.Errorf("statx: %w", err)
	}
	return &st, nil
}

// noteStat records the owner, mtime and inode of the file of REG entry
// id, which path reaches.
func (t *Table) noteStat(id uint32, path string) error {
	st, err := statx(unix.AT_FDCWD, path, 0)
	if err != nil {
		return err
	}
	t.stats = append(t.stats, fileStat(id, st))
	return nil
}

func fileStat(id uint32, st *unix.Statx_t) image.FileStat {
	s := image.FileStat{
		ID: id, UID: st.Uid, GID: st.Gid, MtimeSec: st.Mtime.Sec, MtimeNsec: st.Mtime.Nsec,
		Dev: unix.Mkdev(st.Dev_major, st.Dev_minor), Inode: st.Ino,
	}
	if st.Mask&unix.STATX_BTIME != 0 {
		s.BtimeSec, s.BtimeNsec = st.Btime.Sec, st.Btime.Nsec
	}
	return s
}

func (t *identityTable) write(dir *image.Dir) error { return dir.WriteFileStats(t.stats) }

// identify fills a reg entry for a file mapped or run by the process,
// which via (a /proc path: map_files, exe, cwd) reaches, and records its
// identity.
func (t *Table) identify(reg *pb.RegFileEntry, via string) error {
	st, err := statx(unix.AT_FDCWD, via, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", via, err)
	}
	reg.Mode = pb.Uint32(uint32(st.Mode))
	// Only a regular file is read: opening a device may do anything.
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		reg.Size = pb.Uint64(st.Size)
		f, err := os.Open(via)
		if err != nil {
			return err
		}
		reg.BuildId, err = buildID(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", reg.GetName(), err)
		}
	}
	t.stats = append(t.stats, fileStat(reg.GetId(), st))
	return nil
}

// identitySet is the recorded identities of a checkpoint's files, by the
// id of their REG entry; checkpoints CRIU made have none.
type identitySet struct {
	// stats are the identities until Verify has checked them (those of
	// 10,000 descriptors took 320 KB for the rest of a restore).
	stats map[uint32]image.FileStat
	// opened are cryo's O_PATH descriptors of the files Verify checked,
	// by entry id: the process opens exactly those (Path).
	opened map[uint32]int
	// ownProc are the entries of the /proc files of the process or of
	// another process of the checkpoint.
	ownProc map[uint32]bool
	// special are the entries whose file Verify found neither a regular
	// file nor a directory (specialFile).
	special map[uint32]bool
}

// specialFile reports whether a file of mode is neither a regular file
// nor a directory: opening one may wait, a FIFO for its other side, a
// terminal for its carrier. The process opens those (Restorer.reopenHere),
// where a cancelled restore, which kills it, interrupts the wait; cryo
// opens the others. A mode of 0 is one the image does not record.
func specialFile(mode uint32) bool {
	t := mode & unix.S_IFMT
	return t != 0 && t != unix.S_IFREG && t != unix.S_IFDIR
}

func (s *Set) loadStats() error {
	stats, err := s.dir.ReadFileStats()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	s.stats = map[uint32]image.FileStat{}
	for _, st := range stats {
		if f := s.File(st.ID); f == nil || f.GetReg() == nil {
			return imageErr("cryo-file-stat.img: file %d is not a regular file entry", st.ID)
		}
		if _, dup := s.stats[st.ID]; dup {
			return imageErr("cryo-file-stat.img: file %d twice", st.ID)
		}
		s.stats[st.ID] = st
	}
	return nil
}

// A change is one way a file differs from the one dumped.
type change struct {
	text string
	// content: its size or mtime, which an append-only file may grow.
	content bool
}

// changes lists how the file cryo holds at fd, with status st, differs
// from what the dump recorded of entry id.
func (s *Set) changes(id uint32, fd int, st *unix.Statx_t) []change {
	reg := s.File(id).GetReg()
	var out []change
	add := func(content bool, format string, a ...any) {
		out = append(out, change{fmt.Sprintf(format, a...), content})
	}
	typ := uint32(st.Mode) & unix.S_IFMT
	if reg.Mode != nil {
		if was := reg.GetMode() & unix.S_IFMT; was != typ {
			add(false, "%s at dump, %s now", typeName(was), typeName(typ))
			return out // nothing else compares
		}
		if was, now := reg.GetMode()&0o7777, uint32(st.Mode)&0o7777; was != now {
			add(false, "mode %#o at dump, %#o now", was, now)
		}
	}
	rec, ok := s.stats[id]
	if ok && (rec.UID != st.Uid || rec.GID != st.Gid) {
		add(false, "owner %d:%d at dump, %d:%d now", rec.UID, rec.GID, st.Uid, st.Gid)
	}
	// Directories, devices and FIFOs change their times and sizes as
	// they are used: only a regular file's are its contents', and a
	// symbolic link's, its target's.
	if typ != unix.S_IFREG && typ != unix.S_IFLNK {
		return out
	}
	if reg.Size != nil && reg.GetSize() != st.Size {
		add(true, "size %d at dump, %d now", reg.GetSize(), st.Size)
	}
	sameProgram := false
	if len(reg.BuildId) > 0 {
		now, err := buildIDAt(fd)
		switch {
		case err != nil:
			add(false, "build-id %s at dump, unreadable now: %v", hexID(reg.BuildId), err)
		case !slices.Equal(now, reg.BuildId):
			add(false, "build-id %s at dump, %s now", hexID(reg.BuildId), hexID(now))
		default:
			sameProgram = reg.Size == nil || reg.GetSize() == st.Size
		}
	}
	// An ELF file of the same build-id and size is the same program,
	// deployed anew or copied to another host: its mtime may differ.
	if ok && !sameProgram && (rec.MtimeSec != st.Mtime.Sec || rec.MtimeNsec != st.Mtime.Nsec) {
		add(true, "mtime %s at dump, %s now", stamp(rec.MtimeSec, rec.MtimeNsec), stamp(st.Mtime.Sec, st.Mtime.Nsec))
	}
	return out
}

// buildIDAt reads the build-id of the file cryo holds with an O_PATH
// descriptor.
func buildIDAt(fd int) ([]uint32, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return buildID(f)
}

// hexID spells a build-id as readelf and file do: its bytes in hex.
func hexID(words []uint32) string {
	var b []byte
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return hex.EncodeToString(b)
}

func stamp(sec int64, nsec uint32) string {
	return time.Unix(sec, int64(nsec)).UTC().Format(time.RFC3339Nano)
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("file type %#o", t)
}
