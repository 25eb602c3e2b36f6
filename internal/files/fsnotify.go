package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// inotify and fanotify marks are on inodes (and, for fanotify, on
// mounts), which fdinfo shows by device, inode number and file handle.
// The dump opens the handle (open_by_handle_at, through a mount of the
// device) to learn a path that reaches the inode, and keeps it in the
// handle entry, as CRIU does. A restore opens that path as the process
// itself, without following symbolic links (Set.Verify), and refuses an
// inode other than the one marked, or one the process may not read
// (inotify_add_watch and fanotify_mark ask for read permission) unless
// its handle proves it the very inode it marked. An unlinked inode gets
// a ghost or link remap as a descriptor of it would (ghost.go), shared
// with those: a restore finds it again by device and inode (a ghost) or
// by the link remap's path, as CRIU does.

// fhWords is how many 64-bit words a handle entry holds, as CRIU's do:
// MAX_HANDLE_SZ, 128 bytes.
const fhWords = 16

// markEntry returns the handle entry of the inode that a mark of what
// (an inotify or fanotify descriptor, for messages) is on: device sdev
// (the kernel's dev_t), inode ino, handle h. Its path is a path that
// reaches the inode, none for a ghost.
func (t *Table) markEntry(what string, sdev uint32, ino uint64, h *proc.FileHandle) (*pb.FhEntry, error) {
	major, minor := kernel.KernelDevSplit(sdev)
	if h == nil || len(h.Bytes) > fhWords*8 {
		return nil, fmt.Errorf("%w: %s marks inode %#x on device %d:%d, which has no file handle", ErrUnsupported, what, ino, major, minor)
	}
	e := &pb.FhEntry{Bytes: uint32(len(h.Bytes)), Type: uint32(h.Type), Handle: make([]uint64, fhWords)}
	buf := make([]byte, fhWords*8)
	copy(buf, h.Bytes)
	for i := range e.Handle {
		e.Handle[i] = binary.LittleEndian.Uint64(buf[i*8:])
	}
	mounts, err := t.processMounts()
	if err != nil {
		return nil, err
	}
	for _, m := range mounts {
		if m.Major != major || m.Minor != minor {
			continue
		}
		path, found, err := t.inodeVia(m, h, sdev, ino)
		if err != nil {
			return nil, fmt.Errorf("%s: inode %#x on device %d:%d: %w", what, ino, major, minor, err)
		}
		if found {
			if path != "" {
				e.Path = pb.String(path)
			}
			return e, nil
		}
	}
	return nil, fmt.Errorf("%w: %s marks inode %#x on device %d:%d, which no path reaches", ErrUnsupported, what, ino, major, minor)
}

// processMounts are the mounts of the process being recorded, read once.
func (t *Table) processMounts() ([]proc.Mount, error) {
	if t.mounts == nil || t.mountsOf != t.view {
		var err error
		if t.mounts, err = proc.ReadMountinfo(t.view); err != nil {
			return nil, err
		}
		t.mountsOf = t.view
	}
	return t.mounts, nil
}

// inodeVia opens handle h through mount m and returns a path that reaches
// the inode, making the ghost or link remap of an unlinked one (no path
// for a ghost); found is false if the mount does not reach it.
func (t *Table) inodeVia(m proc.Mount, h *proc.FileHandle, sdev uint32, ino uint64) (path string, found bool, err error) {
	// Not O_PATH: open_by_handle_at takes no such descriptor.
	mfd, err := unix.Open(proc.Path(t.view, "root")+m.Point, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false, nil // covered, gone, or a file mounted on a file
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(h.Type, h.Bytes), unix.O_PATH|unix.O_CLOEXEC)
	if errors.Is(err, unix.EPERM) {
		return "", false, fmt.Errorf("open its file handle (needs CAP_DAC_READ_SEARCH): %w", err)
	}
	if err != nil {
		return "", false, nil // another file system, or a handle it cannot open
	}
	defer unix.Close(fd)
	link := "/proc/self/fd/" + strconv.Itoa(fd)
	name, err := os.Readlink(link)
	if err != nil {
		return "", false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", false, err
	}
	if st.Ino != ino || kernel.KernelDev(unix.Major(st.Dev), unix.Minor(st.Dev)) != sdev {
		return "", false, nil
	}
	if strings.HasSuffix(name, " (deleted)") {
		// O_PATH: the entry only names the inode, the process never
		// opens it.
		if _, err := t.RegFile(name, link, unix.O_PATH); err != nil {
			return "", false, err
		}
		target := t.targets[inode{st.Dev, st.Ino}]
		switch {
		case target.id == 0: // its name is back
			return strings.TrimSuffix(name, " (deleted)"), true, nil
		case target.typ == pb.RemapType_LINKED:
			return t.files[target.id-1].GetReg().GetName(), true, nil
		}
		return "", true, nil
	}
	var now unix.Stat_t
	if err := unix.Lstat(name, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return "", false, nil // a path of another mount namespace, or a disconnected one
	}
	return name, true, nil
}

// refuseLost refuses what a restore could not bring back of a
// notification descriptor: events not read yet, and signal-driven I/O
// (O_ASYNC), whose owner cryo does not keep.
func (t *Table) refuseLost(d *desc, what string) error {
	if d.info.Flags&unix.O_ASYNC != 0 {
		return fmt.Errorf("%w: %s fd %d has O_ASYNC (signal-driven I/O)", ErrUnsupported, what, d.fd)
	}
	fd, err := kernel.Getfd(t.view, d.fd)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD, as x/sys names it
	if err != nil {
		return fmt.Errorf("count the events queued in %s fd %d: %w", what, d.fd, err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %s fd %d has %d bytes of events not read yet", ErrUnsupported, what, d.fd, n)
	}
	return nil
}

// handleBytes are the bytes of a handle entry, checked.
func handleBytes(e *pb.FhEntry) ([]byte, error) {
	if e == nil || e.GetBytes() > uint32(8*len(e.GetHandle())) || e.GetBytes() > fhWords*8 {
		return nil, fmt.Errorf("no file handle, or one of more bytes than it holds")
	}
	b := make([]byte, 0, 8*len(e.GetHandle()))
	for _, w := range e.GetHandle() {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b[:e.GetBytes()], nil
}

// A mark is what a restore needs of one mark of an inotify or fanotify
// entry.
type mark struct {
	// sdev, ino and handle identify the inode of an inode mark; mount
	// is the mount point of a mount mark.
	sdev   uint32
	ino    uint64
	handle *pb.FhEntry
	mount  string
}

// marks lists the marks of an inotify or fanotify entry, in its order.
func marks(f *pb.FileEntry) []mark {
	var out []mark
	for _, w := range f.GetIfy().GetWd() {
		out = append(out, mark{sdev: w.GetSDev(), ino: w.GetIIno(), handle: w.GetFHandle()})
	}
	for _, m := range f.GetFfy().GetMark() {
		if m.GetType() == pb.MarkType_MOUNT {
			out = append(out, mark{mount: "/" + m.GetMe().GetPath()})
		} else {
			out = append(out, mark{sdev: m.GetSDev(), ino: m.GetIe().GetIIno(), handle: m.GetIe().GetFHandle()})
		}
	}
	return out
}

func (m mark) String() string {
	if m.mount != "" {
		return "the mount at " + m.mount
	}
	major, minor := kernel.KernelDevSplit(m.sdev)
	if p := m.handle.GetPath(); p != "" {
		return fmt.Sprintf("%s (inode %#x on device %d:%d)", p, m.ino, major, minor)
	}
	return fmt.Sprintf("inode %#x on device %d:%d", m.ino, major, minor)
}

// markKey is a mark of an entry: the entry's id and the mark's index.
type markKey struct {
	file uint32
	i    int
}

// markSet holds cryo's O_PATH descriptors of what Verify checked of the
// marks of a checkpoint's notification descriptors.
type markSet struct {
	markFds map[markKey]int
}

// remappedMark returns the REG entry of the unlinked inode an inode mark
// is on, if it is one: the entry of a ghost of that device and inode, or
// of the link remap at the mark's path.
func (s *Set) remappedMark(m mark) (uint32, bool) {
	for orig, t := range s.remaps {
		switch t.typ {
		case pb.RemapType_GHOST:
			if g := s.ghosts[t.id]; g.GetDev() == m.sdev && g.GetIno() == m.ino {
				return orig, true
			}
		case pb.RemapType_LINKED:
			if p := m.handle.GetPath(); p != "" && s.File(t.id).GetReg().GetName() == p {
				return orig, true
			}
		}
	}
	return 0, false
}

// verifyMarks opens, as the process (openAs), what the marks of its
// notification descriptors are on, and checks it is what they were on.
func (s *Set) verifyMarks(o VerifyOptions) error {
	s.markFds = map[markKey]int{}
	done := map[uint32]bool{}
	for _, fd := range s.Fds {
		f := s.File(fd.GetId())
		if done[f.GetId()] || (f.GetIfy() == nil && f.GetFfy() == nil) {
			continue
		}
		done[f.GetId()] = true
		if f.GetFfy() != nil && o.Creds.Effective&(1<<unix.CAP_SYS_ADMIN) == 0 {
			return fmt.Errorf("fd %d: %w: a fanotify needs CAP_SYS_ADMIN, which the process did not have", fd.GetFd(), ErrAccess)
		}
		for i, m := range marks(f) {
			if _, ok := s.remappedMark(m); ok && m.mount == "" {
				continue // unlinked: recreated or linked back
			}
			mfd, err := s.verifyMark(m, o)
			if err != nil {
				return fmt.Errorf("fd %d: mark on %v: %w", fd.GetFd(), m, err)
			}
			s.markFds[markKey{f.GetId(), i}] = mfd
		}
	}
	return nil
}

func (s *Set) verifyMark(m mark, o VerifyOptions) (int, error) {
	if m.mount != "" {
		fd, _, err := openAs(o.Creds, m.mount, 0, 0)
		if err != nil {
			return -1, err
		}
		st, err := statx(fd, "", unix.AT_EMPTY_PATH)
		if err == nil && st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
			err = fmt.Errorf("%w: not a mount point now", ErrChanged)
		}
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	path := m.handle.GetPath()
	if path == "" {
		return -1, fmt.Errorf("%w: the images name no path of it", ErrUnsupported)
	}
	want, err := handleBytes(m.handle)
	if err != nil {
		return -1, fmt.Errorf("%w: %v", ErrImage, err)
	}
	fd, allowed, err := openAs(o.Creds, path, unix.R_OK, 0)
	if err != nil {
		return -1, err
	}
	st, err := statx(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	dev := kernel.KernelDev(st.Dev_major, st.Dev_minor)
	same := dev == m.sdev && st.Ino == m.ino
	if !same && allowed && slices.Contains(o.AllowChanged, path) {
		o.Log.Warn("marked file changed since the dump, marked as asked", "file", path)
		return fd, nil
	}
	if !same {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: inode %#x on device %d:%d now (--allow-changed %s marks it anyway)", ErrChanged, st.Ino, st.Dev_major, st.Dev_minor, path)
	}
	if !allowed {
		// The process marked this inode: its handle (inode and
		// generation) proves it is the very one.
		h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
		if err != nil || uint32(h.Type()) != m.handle.GetType() || string(h.Bytes()) != string(want) {
			unix.Close(fd)
			return -1, fmt.Errorf("%w: fsuid %d may not read it, and its file handle is not the one marked", ErrAccess, o.Creds.Fsuid)
		}
	}
	return fd, nil
}

// closeMarks closes the descriptors verifyMarks opened.
func (s *Set) closeMarks() {
	for _, fd := range s.markFds {
		unix.Close(fd)
	}
	s.markFds = nil
}

// markPath is the path through which the process being restored marks
// mark i of entry f: cryo's descriptor of what Verify checked, or of the
// unlinked file recreated or linked back.
func (r *Restorer) markPath(f *pb.FileEntry, i int, m mark) (string, error) {
	if m.mount == "" {
		if orig, ok := r.set.remappedMark(m); ok {
			return r.Path(orig)
		}
	}
	fd, ok := r.set.markFds[markKey{f.GetId(), i}]
	if !ok {
		return "", fmt.Errorf("mark on %v was not verified", m)
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd), nil
}

// checkHandle checks the handle entry of an inode mark of entry id.
func checkHandle(id uint32, e *pb.FhEntry) error {
	if _, err := handleBytes(e); err != nil {
		return imageErr("file %d: mark: %v", id, err)
	}
	return nil
}
