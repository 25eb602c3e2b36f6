package files

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"golang.org/x/sys/unix"
)

// regKind is a file reached by its path: a regular file (an unlinked one
// too: ghost.go), a directory, or a memory device such as /dev/null
// (terminals are tty.go's).
type regKind struct{}

func (regKind) typ() pb.FdTypes { return pb.FdTypes_REG }

func (regKind) claims(d *desc) bool {
	if !strings.HasPrefix(d.link, "/") {
		return false
	}
	switch d.mode() {
	case unix.S_IFREG, unix.S_IFDIR, unix.S_IFCHR:
		return true
	case unix.S_IFLNK:
		// A symbolic link itself, opened O_PATH|O_NOFOLLOW.
		return d.info.Flags&unix.O_PATH != 0
	}
	return false
}

func (regKind) dump(t *Table, d *desc) (uint32, error) {
	path, deleted := strings.CutSuffix(d.link, " (deleted)")
	if d.mode() == unix.S_IFCHR {
		// A deleted one is made again with mknod (ghost.go).
		if err := statelessDevice(d, path); err != nil {
			return 0, err
		}
	}
	if err := atItsPath(d, path, deleted); err != nil {
		return 0, err
	}
	reg := regEntry(t.nextID(), path, d)
	if d.mode() == unix.S_IFREG || d.mode() == unix.S_IFLNK {
		reg.Size = pb.Uint64(uint64(d.st.Size))
	}
	id := t.add(&pb.FileEntry{Type: pb.FdTypes_REG, Id: reg.Id, Entry: reg})
	if deleted {
		if err := t.unlinked(id, path, d.path, &d.st); err != nil {
			return 0, err
		}
	} else if err := t.noteStat(id, d.path); err != nil {
		return 0, err
	}
	return id, nil
}

// The memory devices (Documentation/admin-guide/devices.txt): /dev/mem,
// /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/kmsg...
const (
	memMajor  = 1
	kmsgMinor = 11
)

// statelessDevice refuses a character device a new open would not make
// again: one holds state of its own per open (a FUSE connection, a tun
// interface, a virtual machine, an armed watchdog, a sound stream), so
// the memory devices alone are kept (terminals are tty.go's), and
// /dev/kmsg written, not read: a reader's place in the kernel log cannot
// be set again.
func statelessDevice(d *desc, path string) error {
	major, minor := unix.Major(d.st.Rdev), unix.Minor(d.st.Rdev)
	switch {
	case major == memMajor && minor == kmsgMinor && statusFlags(d.info)&unix.O_ACCMODE != unix.O_WRONLY:
		return fmt.Errorf("%w: fd %d reads the kernel log (%s): its place in it cannot be set again", ErrUnsupported, d.fd, path)
	case major != memMajor:
		return fmt.Errorf("%w: fd %d is the character device %s (%d:%d), whose state of each open a new one would not have (cryo keeps /dev/null, /dev/zero, /dev/random and the other memory devices, and terminals)", ErrUnsupported, d.fd, path, major, minor)
	}
	return nil
}

// atItsPath checks that path, where /proc shows descriptor d's file, is
// that file for cryo too, unless it was deleted: a restore opens it
// there. It may not be: a POSIX message queue shows its path in the
// mqueue filesystem, mounted or not, and a file can be hidden by a mount
// made over it since it was opened.
func atItsPath(d *desc, path string, deleted bool) error {
	var err error
	if !deleted {
		var st unix.Stat_t
		stat := unix.Stat
		if d.mode() == unix.S_IFLNK {
			stat = unix.Lstat
		}
		if err = stat(path, &st); err == nil && st.Dev == d.st.Dev && st.Ino == d.st.Ino {
			return nil
		}
	}
	var sfs unix.Statfs_t
	if unix.Statfs(d.path, &sfs) == nil && sfs.Type == kernel.MqueueMagic {
		return fmt.Errorf("%w: fd %d is the POSIX message queue %s, which cryo cannot keep", ErrUnsupported, d.fd, path)
	}
	if deleted {
		return nil // a ghost file or a link back (unlinked)
	}
	what := "another file is there"
	if err != nil {
		what = err.Error()
	}
	return fmt.Errorf("%w: fd %d: %s is not the file the process holds at that path (%s: a mount hides it, or it is of a filesystem not mounted there)", ErrUnsupported, d.fd, path, what)
}

// regEntry is the reg entry of a descriptor d reached at path.
func regEntry(id uint32, path string, d *desc) *pb.RegFileEntry {
	return &pb.RegFileEntry{
		Id: id, Flags: statusFlags(d.info), Pos: uint64(d.info.Pos),
		Fown: &pb.FownEntry{}, Name: path, Mode: pb.Uint32(d.st.Mode),
	}
}

// RegPath returns the id of a REG entry for a path opened with flags,
// making one if needed: mappings, the executable, cwd and root refer to
// files by such entries. via is a /proc path that reaches the file the
// process uses (map_files/..., exe, cwd, root), whose identity the entry
// records.
func (t *Table) RegPath(path, via string, flags uint32) (uint32, error) {
	var err error
	id := t.keyed(path+"\x00"+strconv.FormatUint(uint64(flags), 8), func(id uint32) *pb.FileEntry {
		reg := &pb.RegFileEntry{
			Id: id, Flags: flags, Pos: 0,
			Fown: &pb.FownEntry{}, Name: path,
		}
		err = t.identify(reg, via)
		return &pb.FileEntry{Type: pb.FdTypes_REG, Id: id, Entry: reg}
	})
	if err != nil {
		return 0, fmt.Errorf("record %s: %w", path, err)
	}
	return id, nil
}

// RegFile returns the id of a REG entry for the file that /proc shows as
// path, reached at link (a /proc link of the process), opened with flags:
// one entry per path and flags, or, for an unlinked file, per inode and
// flags, remapped to what a restore reaches it through (ghost.go).
// Mappings and the working directory refer to files by such entries.
func (t *Table) RegFile(path, link string, flags uint32) (uint32, error) {
	name, deleted := strings.CutSuffix(path, " (deleted)")
	if !deleted {
		return t.RegPath(path, link, flags)
	}
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		return 0, err
	}
	key := fmt.Sprintf("unlinked:%d:%d:%o", st.Dev, st.Ino, flags)
	if id, ok := t.byKey[key]; ok {
		return id, nil
	}
	id := t.nextID()
	t.byKey[key] = t.add(&pb.FileEntry{
		Type: pb.FdTypes_REG,
		Id:   id,
		Entry: &pb.RegFileEntry{
			Id: id, Flags: flags, Pos: 0,
			Fown: &pb.FownEntry{}, Name: name, Mode: pb.Uint32(st.Mode),
		},
	})
	if err := t.unlinked(id, name, link, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

func (regKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetReg() == nil {
		return imageErr("file %d: REG without a reg entry", f.GetId())
	}
	return nil
}

func (regKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	// A FIFO's entry, which only a FIFO entry refers to: opened for
	// reading or writing alone, it would wait for its other side.
	if f.GetReg().GetMode()&unix.S_IFMT == unix.S_IFIFO {
		return -1, imageErr("file %d: a descriptor of the FIFO %s as a REG entry", f.GetId(), f.GetReg().GetName())
	}
	if f.GetReg().GetMode()&unix.S_IFMT == unix.S_IFLNK {
		// Reopened through its magic link, a symbolic link would lose
		// O_NOFOLLOW: the process gets the description Verify opened,
		// or the one of the removed link made again.
		fd, ok := r.set.opened[f.GetId()]
		if t, remapped := r.set.remaps[f.GetId()]; remapped {
			var err error
			if fd, err = r.remapped(t, f.GetReg().GetName()); err != nil {
				return -1, err
			}
		} else if !ok {
			return -1, fmt.Errorf("file %d was not verified", f.GetId())
		}
		return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}
	path, err := r.Path(f.GetId())
	if err != nil {
		return -1, err
	}
	reopen := r.reopen
	if r.set.special[f.GetId()] || specialFile(f.GetReg().GetMode()) {
		reopen = r.reopenHere
	}
	fd, err := reopen(path, f.GetReg().GetFlags(), f.GetReg().GetPos())
	if err != nil {
		return -1, fmt.Errorf("%s: %w", f.GetReg().GetName(), err)
	}
	return fd, nil
}

// Path returns the path at which the process being restored opens REG
// entry id: cryo's descriptor of the file Set.Verify checked (Set.Path),
// or, for an unlinked file, cryo's descriptor of the file recreated or
// linked back (/proc/CRYO/fd/N).
func (r *Restorer) Path(id uint32) (string, error) {
	f, err := r.set.Reg(id)
	if err != nil {
		return "", err
	}
	name := f.GetReg().GetName()
	if t, ok := r.set.remaps[id]; ok {
		fd, err := r.remapped(t, name)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd), nil
	}
	return r.set.Path(id)
}
