package restore

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
)

// efdSemaphoreFlag marks an EFD_SEMAPHORE eventfd in the entry's flags, as
// the dump writes it: bit 0 (O_WRONLY), which an eventfd never has.
const efdSemaphoreFlag = unix.EFD_SEMAPHORE

// efdMaxCount is the largest value an eventfd counter holds.
const efdMaxCount = math.MaxUint64 - 1

// openEventfd makes an eventfd in the process with its counter and mode.
func (r *restorer) openEventfd(f *fdinfo.FileEntry) (uint64, error) {
	e := f.Efd
	flags := uint64(unix.EFD_CLOEXEC)
	if e.GetFlags()&unix.O_NONBLOCK != 0 {
		flags |= unix.EFD_NONBLOCK
	}
	if e.GetFlags()&efdSemaphoreFlag != 0 {
		flags |= unix.EFD_SEMAPHORE
	}
	// eventfd2 takes the initial count as an unsigned int: a larger one is
	// written in afterwards.
	count := e.GetCounter()
	initial := count
	if count > math.MaxUint32 {
		initial = 0
	}
	n, err := r.tr.Syscall(r.pid, unix.SYS_EVENTFD2, initial, flags)
	if err != nil {
		return 0, fmt.Errorf("make eventfd: %w", err)
	}
	if initial != count {
		scratch, err := r.scratch()
		if err != nil {
			return 0, err
		}
		if err := r.writeWords(scratch, count); err != nil {
			return 0, err
		}
		if err := r.sys(unix.SYS_WRITE, n, scratch, 8); err != nil {
			return 0, fmt.Errorf("set eventfd %d counter to %#x: %w", n, count, err)
		}
	}
	return r.lift(n)
}

// openEventpoll makes an empty epoll in the process; its registrations
// refer to descriptor numbers, so addEpollTargets makes them once every
// descriptor has its number.
func (r *restorer) openEventpoll(f *fdinfo.FileEntry) (uint64, error) {
	n, err := r.tr.Syscall(r.pid, unix.SYS_EPOLL_CREATE1, unix.EPOLL_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("make epoll: %w", err)
	}
	// O_NONBLOCK, say, set with fcntl.
	if fl := uint64(f.Epfd.GetFlags()) &^ (unix.O_ACCMODE | unix.O_CLOEXEC); fl != 0 {
		if err := r.sys(unix.SYS_FCNTL, n, unix.F_SETFL, fl); err != nil {
			return 0, fmt.Errorf("set epoll flags %#o: %w", fl, err)
		}
	}
	return r.lift(n)
}

// epollEventSize is sizeof(struct epoll_event) on x86_64, where it is
// packed: u32 events, then u64 data at offset 4.
const epollEventSize = 12

// addEpollTargets registers the targets of every epoll, through the
// final descriptor numbers of the epoll and of its targets.
func (r *restorer) addEpollTargets() error {
	done := map[uint32]bool{}
	for _, fd := range r.c.fds {
		f := r.c.files[fd.GetId()]
		if f.GetType() != fdinfo.FdTypes_EVENTPOLL || done[f.GetId()] {
			continue
		}
		done[f.GetId()] = true
		ep := uint64(fd.GetFd()) // any of its numbers will do
		for _, tg := range f.Epfd.GetTfd() {
			scratch, err := r.scratch()
			if err != nil {
				return err
			}
			var ev [epollEventSize]byte
			binary.LittleEndian.PutUint32(ev[0:], tg.GetEvents())
			binary.LittleEndian.PutUint64(ev[4:], tg.GetData())
			if err := r.tr.WriteMem(scratch, ev[:]); err != nil {
				return err
			}
			if err := r.sys(unix.SYS_EPOLL_CTL, ep, unix.EPOLL_CTL_ADD, uint64(tg.GetTfd()), scratch); err != nil {
				return fmt.Errorf("add fd %d to epoll fd %d (events %#x): %w", tg.GetTfd(), ep, tg.GetEvents(), err)
			}
		}
	}
	return nil
}

// checkEventpoll checks that every target of an epoll is a descriptor the
// restore makes: a registration can only be made through one.
func (c *checkpoint) checkEventpoll(f *fdinfo.FileEntry) error {
	for _, tg := range f.Epfd.GetTfd() {
		found := false
		for _, fd := range c.fds {
			if fd.GetFd() == tg.GetTfd() {
				found = true
				break
			}
		}
		if !found {
			return imageErr("epoll file %d watches fd %d, which the process does not have", f.GetId(), tg.GetTfd())
		}
	}
	return nil
}
