package files

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// inotifyKind is an inotify with its watches, each under its watch
// descriptor number (wd), on the inode it watches (fsnotify.go). Events
// not read yet are refused at dump. A restore adds the watches in the
// order of their numbers, each after setting the number the next watch
// gets; the number the watch after the last restored one gets may be one
// the process had removed before the dump (the kernel does not say where
// its count stood).
type inotifyKind struct{}

// inotifyMask is what an inotify's fdinfo shows of a watch and
// inotify_add_watch takes back: the events, IN_ONESHOT and
// IN_EXCL_UNLINK.
const inotifyMask = unix.IN_ALL_EVENTS | unix.IN_ONESHOT | unix.IN_EXCL_UNLINK

func (inotifyKind) typ() pb.FdTypes { return pb.FdTypes_INOTIFY }

func (inotifyKind) claims(d *desc) bool { return d.link == "anon_inode:inotify" }

func (inotifyKind) dump(t *Table, d *desc) (uint32, error) {
	watches, err := d.info.InotifyWatches()
	if err != nil {
		return 0, fmt.Errorf("read inotify fd %d: %w", d.fd, err)
	}
	slices.SortFunc(watches, func(a, b proc.InotifyWatch) int { return int(a.Wd) - int(b.Wd) })
	e := &pb.InotifyFileEntry{Flags: statusFlags(d.info), Fown: &pb.FownEntry{}}
	for _, w := range watches {
		if w.Mask&^inotifyMask != 0 {
			return 0, fmt.Errorf("%w: inotify fd %d watch %d has mask %#x", ErrUnsupported, d.fd, w.Wd, w.Mask)
		}
		h, err := t.markEntry(fmt.Sprintf("inotify fd %d watch %d", d.fd, w.Wd), w.Sdev, w.Ino, w.Handle)
		if err != nil {
			return 0, err
		}
		e.Wd = append(e.Wd, &pb.InotifyWdEntry{
			IIno: w.Ino, Mask: w.Mask, IgnoredMask: w.IgnoredMask,
			SDev: w.Sdev, Wd: uint32(w.Wd), FHandle: h,
		})
	}
	if err := t.refuseLost(d, "inotify"); err != nil {
		return 0, err
	}
	// After the marks: an unlinked inode's entry takes an id.
	id := t.nextID()
	e.Id = id
	for _, w := range e.Wd {
		w.Id = id
	}
	return t.add(&pb.FileEntry{Type: pb.FdTypes_INOTIFY, Id: id, Entry: e}), nil
}

func (inotifyKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetIfy() == nil {
		return imageErr("file %d: INOTIFY without an ify entry", f.GetId())
	}
	seen := map[uint32]bool{}
	for _, w := range f.GetIfy().GetWd() {
		switch {
		case w.GetWd() == 0 || w.GetWd() > math.MaxInt32 || seen[w.GetWd()]:
			return imageErr("inotify file %d: watch number %d is zero, too large or repeated", f.GetId(), w.GetWd())
		case w.GetMask()&^inotifyMask != 0:
			return fmt.Errorf("%w: inotify file %d watch %d has mask %#x", ErrUnsupported, f.GetId(), w.GetWd(), w.GetMask())
		}
		seen[w.GetWd()] = true
		if err := checkHandle(f.GetId(), w.GetFHandle()); err != nil {
			return err
		}
	}
	return nil
}

// open makes an inotify in cryo and adds its watches, each with its
// number.
func (inotifyKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	flags := unix.IN_CLOEXEC
	if f.GetIfy().GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.IN_NONBLOCK
	}
	fd, err := unix.InotifyInit1(flags)
	if err != nil {
		return -1, fmt.Errorf("make inotify: %w", err)
	}
	ms := marks(f)
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	wds := f.GetIfy().GetWd()
	slices.SortFunc(order, func(a, b int) int { return int(wds[a].GetWd()) - int(wds[b].GetWd()) })
	for _, i := range order {
		w := wds[i]
		path, err := r.markPath(f, i, ms[i])
		if err == nil {
			err = addWatch(fd, path, w.GetMask(), w.GetWd())
		}
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("inotify watch %d on %v: %w", w.GetWd(), ms[i], err)
		}
	}
	return fd, nil
}

// addWatch adds a watch of inotify fd on path that gets number wd, the
// numbers below it being taken or free: the kernel numbers watches from
// where its count stands, which INOTIFY_IOC_SETNEXTWD sets. A kernel
// without it (built without CONFIG_CHECKPOINT_RESTORE) numbers them from
// 1: the numbers come back only if they were 1, 2, 3...
func addWatch(fd int, path string, mask, wd uint32) error {
	err := unix.IoctlSetInt(fd, kernel.InotifySetNextWd, int(wd))
	if err != nil && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("set the next watch number: %w", err)
	}
	got, err := unix.InotifyAddWatch(fd, path, mask)
	switch {
	case err != nil:
		return fmt.Errorf("add watch (mask %#x): %w", mask, err)
	case got != int(wd):
		return fmt.Errorf("%w: the watch got number %d: this kernel cannot set the number of a watch (INOTIFY_IOC_SETNEXTWD)", ErrUnsupported, got)
	}
	return nil
}
