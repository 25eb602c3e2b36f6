package files

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// fanotifyKind is a fanotify with its marks on inodes (fsnotify.go) and
// mounts, which CRIU's images hold; filesystem marks they cannot, and
// are refused. Making one needs CAP_SYS_ADMIN: a process without it is
// refused at dump and at restore. Events not read yet are refused at
// dump.
type fanotifyKind struct{}

// fanotifyMflags are the flags of a mark that fanotify_mark takes back as
// they are; FAN_MARK_IGNORE marks need another call, which CRIU's images
// do not say.
const fanotifyMflags = unix.FAN_MARK_IGNORED_SURV_MODIFY | unix.FAN_MARK_EVICTABLE

func (fanotifyKind) typ() pb.FdTypes { return pb.FdTypes_FANOTIFY }

func (fanotifyKind) claims(d *desc) bool { return d.link == "anon_inode:[fanotify]" }

func (fanotifyKind) dump(t *Table, d *desc) (uint32, error) {
	fa, err := d.info.Fanotify()
	if err != nil {
		return 0, fmt.Errorf("read fanotify fd %d: %w", d.fd, err)
	}
	st, err := proc.ReadStatus(t.view)
	if err != nil {
		return 0, err
	}
	if st.CapEff&(1<<unix.CAP_SYS_ADMIN) == 0 {
		return 0, fmt.Errorf("%w: fd %d is a fanotify, which the process could not make again without CAP_SYS_ADMIN", ErrUnsupported, d.fd)
	}
	e := &pb.FanotifyFileEntry{
		Flags: statusFlags(d.info), Fown: &pb.FownEntry{},
		Faflags: fa.Flags, Evflags: fa.EventFlags,
	}
	for _, m := range fa.Marks {
		if m.Mflags&^fanotifyMflags != 0 {
			return 0, fmt.Errorf("%w: fanotify fd %d has a mark with flags %#x", ErrUnsupported, d.fd, m.Mflags)
		}
		me := &pb.FanotifyMarkEntry{
			Mflags: m.Mflags, Mask: m.Mask,
			IgnoredMask: m.IgnoredMask, SDev: m.Sdev,
		}
		switch m.Kind {
		case proc.FanotifyInode:
			h, err := t.markEntry(fmt.Sprintf("fanotify fd %d", d.fd), m.Sdev, m.Ino, m.Handle)
			if err != nil {
				return 0, err
			}
			me.Type = pb.MarkType_INODE
			me.Ie = &pb.FanotifyInodeMarkEntry{IIno: m.Ino, FHandle: h}
		case proc.FanotifyMount:
			mnt, err := t.mount(m.MntID)
			if err != nil {
				return 0, fmt.Errorf("fanotify fd %d: %w", d.fd, err)
			}
			// CRIU's: the mount point without its leading slash, the
			// device of the mount.
			me.Type = pb.MarkType_MOUNT
			me.SDev = kernel.KernelDev(mnt.Major, mnt.Minor)
			me.Me = &pb.FanotifyMountMarkEntry{MntId: uint32(m.MntID), Path: pb.String(mnt.Point[1:])}
		default:
			return 0, fmt.Errorf("%w: fanotify fd %d has a %s mark, which CRIU's images cannot hold", ErrUnsupported, d.fd, markKindName(m.Kind))
		}
		e.Mark = append(e.Mark, me)
	}
	if err := t.refuseLost(d, "fanotify"); err != nil {
		return 0, err
	}
	// After the marks: an unlinked inode's entry takes an id.
	id := t.nextID()
	e.Id = id
	for _, m := range e.Mark {
		m.Id = id
	}
	return t.add(&pb.FileEntry{Type: pb.FdTypes_FANOTIFY, Id: id, Entry: e}), nil
}

// atFDCWD is AT_FDCWD as a system call argument.
const atFDCWD = 1<<64 - 100

func markKindName(k string) string {
	if k == proc.FanotifyFilesystem {
		return "filesystem"
	}
	return k
}

// mount returns the process's mount of ID id.
func (t *Table) mount(id int) (proc.Mount, error) {
	mounts, err := t.processMounts()
	if err != nil {
		return proc.Mount{}, err
	}
	for _, m := range mounts {
		if m.ID == id && len(m.Point) > 0 && m.Point[0] == '/' {
			return m, nil
		}
	}
	return proc.Mount{}, fmt.Errorf("no mount %d in the process's mountinfo", id)
}

func (fanotifyKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetFfy() == nil {
		return imageErr("file %d: FANOTIFY without an ffy entry", f.GetId())
	}
	for _, m := range f.GetFfy().GetMark() {
		if m.GetMflags()&^fanotifyMflags != 0 {
			return fmt.Errorf("%w: fanotify file %d has a mark with flags %#x", ErrUnsupported, f.GetId(), m.GetMflags())
		}
		switch {
		case m.GetType() == pb.MarkType_INODE && m.Ie != nil:
			if err := checkHandle(f.GetId(), m.Ie.GetFHandle()); err != nil {
				return err
			}
		case m.GetType() == pb.MarkType_MOUNT && m.Me != nil:
		default:
			return imageErr("fanotify file %d: a mark of type %v without its entry", f.GetId(), m.GetType())
		}
	}
	return nil
}

// open makes a fanotify in the process with its flags and marks, the
// group being charged to it, and takes it.
func (fanotifyKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetFfy()
	// FAN_CLOEXEC as it was: the group keeps its flags, fdinfo shows
	// them; the descriptor's own flag is set once it has its number.
	n, err := r.tr.Syscall(r.pid, unix.SYS_FANOTIFY_INIT, uint64(e.GetFaflags()), uint64(e.GetEvflags()))
	if err != nil {
		return -1, fmt.Errorf("make fanotify (flags %#x, event flags %#o): %w", e.GetFaflags(), e.GetEvflags(), err)
	}
	// FAN_NONBLOCK made it O_NONBLOCK; fcntl may have changed that since.
	if nonblock := e.GetFlags()&unix.O_NONBLOCK != 0; nonblock != (e.GetFaflags()&unix.FAN_NONBLOCK != 0) {
		if err := r.sys(unix.SYS_FCNTL, n, unix.F_SETFL, uint64(e.GetFlags()&unix.O_NONBLOCK)); err != nil {
			return -1, fmt.Errorf("set fanotify flags %#o: %w", e.GetFlags()&unix.O_NONBLOCK, err)
		}
	}
	for i, m := range marks(f) {
		path, err := r.markPath(f, i, m)
		if err != nil {
			return -1, err
		}
		fm := e.GetMark()[i]
		flags := uint64(unix.FAN_MARK_ADD | fm.GetMflags())
		if m.mount != "" {
			flags |= unix.FAN_MARK_MOUNT
		}
		for _, add := range []struct {
			flags uint64
			mask  uint32
		}{{flags, fm.GetMask()}, {flags | unix.FAN_MARK_IGNORED_MASK, fm.GetIgnoredMask()}} {
			if add.mask == 0 {
				continue
			}
			addr, err := r.tr.WriteString(r.pid, path)
			if err != nil {
				return -1, err
			}
			if err := r.sys(unix.SYS_FANOTIFY_MARK, n, add.flags, uint64(add.mask), atFDCWD, addr); err != nil {
				return -1, fmt.Errorf("fanotify mark on %v (flags %#x, mask %#x): %w", m, add.flags, add.mask, err)
			}
		}
	}
	return r.made(n)
}
