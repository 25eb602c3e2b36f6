package files

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
	"github.com/cryo-cr/cryo/internal/ptrace"
)

// eventpollKind is an epoll with its registrations. A restore adds each
// registration again through a descriptor of the watched file, once every
// descriptor has its number. In CRIU's images that descriptor is the
// entry's tfd: the number the registration was added under while that
// number still refers to the watched file, else another descriptor of the
// file, found by kcmp. The registration then comes back under that
// number, as with CRIU: the images have no room for the number it was
// added under.
type eventpollKind struct{}

func (eventpollKind) typ() pb.FdTypes { return pb.FdTypes_EVENTPOLL }

func (eventpollKind) claims(d *desc) bool { return d.link == "anon_inode:[eventpoll]" }

// dump records an epoll and its registrations, found among the
// descriptors of the process dumped, even when the epoll itself is in
// flight, held by cryo (d.holder).
func (eventpollKind) dump(t *Table, d *desc) (uint32, error) {
	epPid := t.view
	if d.holder != 0 {
		epPid = d.holder
	}
	targets, err := d.info.EpollTargets()
	if err != nil {
		return 0, fmt.Errorf("read epoll fd %d: %w", d.fd, err)
	}
	id := t.nextID()
	e := &pb.EventpollFileEntry{Id: id, Flags: statusFlags(d.info), Fown: &pb.FownEntry{}}
	tfds := make([]int, len(targets))
	used := map[int]bool{} // descriptors registrations are added through
	var moved []int        // registrations whose number no longer refers to their file
	toffs := make([]uint32, len(targets))
	seen := map[int]uint32{}
	for i, tg := range targets {
		// Several registrations share a number when the number was
		// closed and reused; the kernel tells them apart by their rank.
		toffs[i] = seen[tg.Fd]
		seen[tg.Fd]++
		same, err := kernel.EpollTargetIs(t.view, tg.Fd, epPid, d.fd, tg.Fd, toffs[i])
		switch {
		case err != nil && !errors.Is(err, unix.EBADF):
			return 0, fmt.Errorf("compare epoll fd %d target %d: %w", d.fd, tg.Fd, err)
		case same:
			tfds[i], used[tg.Fd] = tg.Fd, true
		default: // closed, or reused for another file
			moved = append(moved, i)
		}
	}
	if len(moved) > 0 {
		fds, err := proc.ReadFds(t.view)
		if err != nil {
			return 0, err
		}
		for _, i := range moved {
			if tfds[i], err = t.epollHolder(epPid, d.fd, targets[i].Fd, toffs[i], fds, used); err != nil {
				return 0, err
			}
			used[tfds[i]] = true
		}
	}
	for i, tg := range targets {
		e.Tfd = append(e.Tfd, &pb.EventpollTfdEntry{
			Id: id, Tfd: uint32(tfds[i]), Events: tg.Events, Data: tg.Data,
			Dev: pb.Uint32(tg.Sdev), Inode: pb.Uint64(tg.Ino), Pos: pb.Uint64(uint64(tg.Pos)),
		})
	}
	return t.add(&pb.FileEntry{Type: pb.FdTypes_EVENTPOLL, Id: id, Entry: e}), nil
}

// epollHolder returns a descriptor, among fds and not in used, of the
// file that the toff-th registration under number tfd of epoll epfd (of
// process epPid) watches, that number no longer referring to it. A
// descriptor in used already has a registration of that file added
// through it: adding a second would collide.
func (t *Table) epollHolder(epPid, epfd, tfd int, toff uint32, fds []int, used map[int]bool) (int, error) {
	taken := -1
	for _, fd := range fds {
		same, err := kernel.EpollTargetIs(t.view, fd, epPid, epfd, tfd, toff)
		if err != nil && !errors.Is(err, unix.EBADF) { // EBADF: closed meanwhile
			return 0, fmt.Errorf("compare epoll fd %d target %d with fd %d: %w", epfd, tfd, fd, err)
		}
		switch {
		case same && !used[fd]:
			return fd, nil
		case same:
			taken = fd
		}
	}
	if taken >= 0 {
		return 0, fmt.Errorf("%w: epoll fd %d watches the file of fd %d twice, under fd %d (closed or reused since) and fd %d", ErrUnsupported, epfd, taken, tfd, taken)
	}
	return 0, fmt.Errorf("%w: epoll fd %d watches a file that fd %d referred to and that no descriptor holds now", ErrUnsupported, epfd, tfd)
}

// check checks that an epoll has its entry; placed checks the descriptors
// its registrations are added through.
func (eventpollKind) check(s *Set, f *pb.FileEntry) error {
	if f.GetEpfd() == nil {
		return imageErr("file %d: EVENTPOLL without an epfd entry", f.GetId())
	}
	return nil
}

// open makes an empty epoll in the process; placed registers its targets.
func (eventpollKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("make epoll: %w", err)
	}
	// O_NONBLOCK, say, set with fcntl.
	if fl := f.GetEpfd().GetFlags() &^ (unix.O_ACCMODE | unix.O_CLOEXEC); fl != 0 {
		if err := setStatusFlags(fd, fl); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set epoll flags %#o: %w", fl, err)
		}
	}
	return fd, nil
}

// placed registers the targets of every epoll, through the final
// descriptor numbers of the epoll and of its targets; an epoll taken from
// another process of the tree has them from there.
func (eventpollKind) placed(r *Restorer) error {
	done := map[uint32]bool{}
	for _, fd := range r.set.Fds {
		f := r.set.File(fd.GetId())
		if f.GetType() != pb.FdTypes_EVENTPOLL || done[f.GetId()] || r.taken[f.GetId()] {
			continue
		}
		done[f.GetId()] = true
		ep := uint64(fd.GetFd()) // any of its numbers will do
		tfds := f.GetEpfd().GetTfd()
		// A registration is added through a descriptor of the process
		// that opens the epoll, the first of the tree to hold it, as the
		// dump found it: another may have closed the watched files (a
		// child that saves redis's data closes its sockets).
		for _, tg := range tfds {
			if r.set.fd(tg.GetTfd()) == nil {
				return imageErr("fd %d: epoll file %d watches fd %d, which pid %d, the first to hold the epoll, does not have", fd.GetFd(), f.GetId(), tg.GetTfd(), r.pid)
			}
		}
		for len(tfds) > 0 {
			n := min(len(tfds), epollEventsPerPage)
			if err := r.addTargets(ep, tfds[:n]); err != nil {
				return err
			}
			tfds = tfds[n:]
		}
	}
	return nil
}

// epollEventsPerPage is how many struct epoll_event (packed on x86-64:
// 12 bytes) the scratch page holds.
var epollEventsPerPage = pageSize / binary.Size(unix.EpollEvent{})

// addTargets registers targets with the process's epoll ep: their events
// written in the scratch page, then one batch of epoll_ctl calls.
func (r *Restorer) addTargets(ep uint64, targets []*pb.EventpollTfdEntry) error {
	scratch, err := r.scratch()
	if err != nil {
		return err
	}
	size := uint64(binary.Size(unix.EpollEvent{}))
	var evs []byte
	calls := make([]ptrace.Sys, len(targets))
	for i, tg := range targets {
		// x/sys splits the packed u64 data in two.
		evs = append(evs, kernel.Encode(unix.EpollEvent{Events: tg.GetEvents(), Fd: int32(tg.GetData()), Pad: int32(tg.GetData() >> 32)})...)
		calls[i] = ptrace.Sys{Nr: unix.SYS_EPOLL_CTL, Args: [6]uint64{ep, unix.EPOLL_CTL_ADD, uint64(tg.GetTfd()), scratch + uint64(i)*size}}
	}
	if err := r.tr.WriteMem(scratch, evs); err != nil {
		return err
	}
	if err := r.tr.Syscalls(r.pid, calls); err != nil {
		var se *ptrace.SyscallError
		if errors.As(err, &se) {
			tg := targets[se.Index]
			return fmt.Errorf("add fd %d to epoll fd %d (events %#x): %w", tg.GetTfd(), ep, tg.GetEvents(), se.Err)
		}
		return err
	}
	return nil
}
