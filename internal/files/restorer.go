package files

import (
	"fmt"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/ptrace"
)

// Restorer reopens a Set's files in a process being restored. Its methods
// inject system calls, so they run on the tracer's thread through tr.
type Restorer struct {
	tr       *ptrace.Tracer
	pid      int
	set      *Set
	shared   *Shared
	shellJob bool
	// taken are the entries whose descriptor came from another process
	// of the tree, made there.
	taken map[uint32]bool
	// tempBase is above every target descriptor number: a file is
	// opened there first, so that making one never takes the number
	// another must have.
	tempBase uint64
	memfdRestorer
	pipeRestorer
	timerfdRestorer
	ttyRestorer
}

// NewRestorer prepares to reopen set in process pid, traced by tr, one of
// the processes of a tree whose restores share shared. With shellJob, a
// terminal the process had outside the checkpoint is cryo's own.
func NewRestorer(tr *ptrace.Tracer, pid int, set *Set, shared *Shared, shellJob bool) *Restorer {
	return &Restorer{tr: tr, pid: pid, set: set, shared: shared, shellJob: shellJob, taken: map[uint32]bool{}}
}

// OpenAll recreates the descriptor table: every descriptor at its number
// with its flags and position, descriptors that shared an open file
// description (dup) sharing one again. The memfds the mappings were made
// from stay open; every other descriptor of the process is closed first.
func (r *Restorer) OpenAll() error {
	for _, fd := range r.set.Fds {
		r.tempBase = max(r.tempBase, uint64(fd.GetFd())+1)
	}
	if err := r.closeAllBut(r.memfdDescriptors()); err != nil {
		return fmt.Errorf("close the stub's descriptors: %w", err)
	}
	if err := r.liftMemfds(); err != nil {
		return err
	}
	// The process's own /proc/PID/fd/N and fdinfo/N exist only once
	// descriptor N has its number: they are opened last.
	var early, late []*fdinfo.FdinfoEntry
	for _, fd := range r.set.Fds {
		if r.ownFdFile(r.set.Files[fd.GetId()]) {
			late = append(late, fd)
		} else {
			early = append(early, fd)
		}
	}
	if err := r.openAt(early, func() error {
		for _, k := range kinds {
			if o, ok := k.(opener); ok {
				if err := o.opened(r); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := r.openAt(late, func() error { return nil }); err != nil {
		return err
	}
	if err := r.closeMemfds(); err != nil {
		return err
	}
	r.shared.note(r)
	for _, k := range kinds {
		if p, ok := k.(placer); ok {
			if err := p.placed(r); err != nil {
				return err
			}
		}
	}
	return r.takeLocks()
}

// openAt opens the entries of descriptors fds, each once, above the
// targets (or takes them from the process of the tree that made them),
// runs opened, and moves them to their numbers.
func (r *Restorer) openAt(fds []*fdinfo.FdinfoEntry, opened func() error) error {
	temps := map[uint32]uint64{} // file id -> its descriptor above the targets
	for _, fd := range fds {
		id := fd.GetId()
		if _, ok := temps[id]; ok {
			continue
		}
		f := r.set.Files[id]
		n, taken, err := r.takeShared(id)
		if err != nil {
			return fmt.Errorf("fd %d (%v): %w", fd.GetFd(), f.GetType(), err)
		}
		if taken {
			r.taken[id] = true
			temps[id] = n
			continue
		}
		k, _ := kindOf(f.GetType()) // Load checked it
		n, err = k.open(r, f)
		if err != nil {
			return fmt.Errorf("fd %d (%v): %w", fd.GetFd(), f.GetType(), err)
		}
		temps[id] = n
	}
	if err := opened(); err != nil {
		return err
	}
	for _, fd := range fds {
		if err := r.dupTo(temps[fd.GetId()], uint64(fd.GetFd()), fd.GetFlags()); err != nil {
			return fmt.Errorf("fd %d: %w", fd.GetFd(), err)
		}
	}
	for _, n := range temps {
		if err := r.sys(unix.SYS_CLOSE, n); err != nil {
			return err
		}
	}
	return nil
}

// ownFdFile reports whether f is the process's own /proc/PID/fd/N or
// /proc/PID/fdinfo/N.
func (r *Restorer) ownFdFile(f *fdinfo.FileEntry) bool {
	if f.Reg == nil || !r.set.ownProc[f.GetId()] {
		return false
	}
	rest, _ := strings.CutPrefix(f.Reg.GetName(), fmt.Sprintf("/proc/%d/", r.pid))
	return strings.HasPrefix(rest, "fd/") || strings.HasPrefix(rest, "fdinfo/")
}

// opener is a kind with work to do once every entry is open, before the
// descriptors move to their numbers.
type opener interface{ opened(r *Restorer) error }

// placer is a kind with work to do once every descriptor has its number.
type placer interface{ placed(r *Restorer) error }

// lift moves a descriptor of the process above every target number.
func (r *Restorer) lift(n uint64) (uint64, error) {
	m, err := r.tr.Syscall(r.pid, unix.SYS_FCNTL, n, unix.F_DUPFD_CLOEXEC, r.tempBase)
	if err != nil {
		return 0, fmt.Errorf("move descriptor %d above %d: %w", n, r.tempBase, err)
	}
	return m, r.sys(unix.SYS_CLOSE, n)
}

// dupTo makes descriptor to a duplicate of from, close-on-exec if the
// image says so.
func (r *Restorer) dupTo(from, to uint64, fdFlags uint32) error {
	flags := uint64(0)
	if fdFlags&unix.FD_CLOEXEC != 0 {
		flags = unix.O_CLOEXEC
	}
	if err := r.sys(unix.SYS_DUP3, from, to, flags); err != nil {
		return fmt.Errorf("dup %d to %d: %w", from, to, err)
	}
	return nil
}

// closeAllBut closes every descriptor of the process but keep.
func (r *Restorer) closeAllBut(keep []uint64) error {
	slices.Sort(keep)
	from := uint64(0)
	for _, k := range keep {
		if k > from {
			if err := r.sys(unix.SYS_CLOSE_RANGE, from, k-1, 0); err != nil {
				return err
			}
		}
		from = k + 1
	}
	return r.sys(unix.SYS_CLOSE_RANGE, from, ^uint64(0)>>32, 0)
}

// getfd returns cryo's own duplicate of descriptor fd of the process, to
// fill it from outside.
func (r *Restorer) getfd(fd uint64) (int, error) { return Getfd(r.pid, int(fd)) }

// Getfd returns a duplicate, in cryo, of descriptor fd of process pid.
func Getfd(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd %d of pid %d: %w", fd, pid, err)
	}
	return dup, nil
}

// sys injects a system call when only its success matters.
func (r *Restorer) sys(nr int, args ...uint64) error {
	_, err := r.tr.Syscall(r.pid, nr, args...)
	return err
}

// open opens path in the process.
func (r *Restorer) open(path string, flags, mode uint64) (uint64, error) {
	return r.tr.OpenAt(r.pid, path, flags, mode)
}

// reopen opens path in the process with an entry's flags and moves it
// above the targets, at position pos. O_NOFOLLOW acted on the dumped
// path; the path here is a magic link to the checked file (Set.Path),
// which it would refuse. O_TMPFILE (tmpfile(3)) made the file, which is
// reopened as the unlinked file it is now.
func (r *Restorer) reopen(path string, flags uint32, pos uint64) (uint64, error) {
	if flags&unix.O_TMPFILE == unix.O_TMPFILE {
		flags &^= unix.O_TMPFILE
	}
	n, err := r.open(path, uint64(flags)&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC|unix.O_NOFOLLOW), 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	if n, err = r.lift(n); err != nil {
		return 0, err
	}
	if pos != 0 {
		if _, err := r.tr.Syscall(r.pid, unix.SYS_LSEEK, n, pos, unix.SEEK_SET); err != nil {
			return 0, fmt.Errorf("seek %s to %d: %w", path, pos, err)
		}
	}
	return n, nil
}
