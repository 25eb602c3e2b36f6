package restore

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// openFiles recreates the descriptor table (see files.Restorer.OpenAll),
// unless it is the parent's, which the parent made, and gives a shell job
// back the foreground of its terminal. The table must fit under the
// dumped RLIMIT_NOFILE as far as this one's hard limit allows; it is made
// under the hard limit (the stub has cryo's soft limit, which the table
// may not fit in, and the socket the descriptors travel through needs a
// number besides the table's), and the task step sets the dumped limits
// afterwards; without dumped limits, the table must fit the stub's.
func (r *restorer) openFiles() error {
	if r.sharesFiles() {
		return nil
	}
	var cur unix.Rlimit
	if err := unix.Prlimit(r.pid, unix.RLIMIT_NOFILE, nil, &cur); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE of pid %d: %w", r.pid, err)
	}
	limit, dumped := cur.Cur, false
	if rl := r.c.cores[uint32(r.pid)].GetTc().GetRlimits().GetRlimits(); len(rl) > unix.RLIMIT_NOFILE {
		limit, dumped = min(rl[unix.RLIMIT_NOFILE].GetMax(), cur.Max), true
	}
	for _, fd := range r.c.files.Fds {
		if uint64(fd.GetFd()) >= limit {
			return fmt.Errorf("%w: fd %d, at or above the RLIMIT_NOFILE of %d that the process's hard limit and cryo's allow", ErrUnsupported, fd.GetFd(), limit)
		}
	}
	if dumped && cur.Cur < cur.Max {
		cur.Cur = cur.Max
		if err := unix.Prlimit(r.pid, unix.RLIMIT_NOFILE, &cur, nil); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE of pid %d to %d: %w", r.pid, cur.Cur, err)
		}
	}
	if err := r.files.OpenAll(); err != nil {
		return err
	}
	notes, err := r.files.Foreground(int(r.c.task.GetPgid()))
	for _, n := range notes {
		r.log.Warn(n)
	}
	return err
}

// restoreFS sets the working directory, root and umask.
func (r *restorer) restoreFS() error {
	root := r.c.files.File(r.c.fs.GetRootId()).GetReg().GetName()
	if root != "/" {
		return fmt.Errorf("%w: root directory %s", ErrUnsupported, root)
	}
	cwd, err := r.files.Path(r.c.fs.GetCwdId())
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	scratch, err := r.tr.WriteString(r.pid, cwd)
	if err != nil {
		return err
	}
	if err := r.sys(unix.SYS_CHDIR, scratch); err != nil {
		return fmt.Errorf("chdir %s: %w", r.c.files.File(r.c.fs.GetCwdId()).GetReg().GetName(), err)
	}
	if err := r.sys(unix.SYS_UMASK, uint64(r.c.fs.GetUmask())); err != nil {
		return fmt.Errorf("umask: %w", err)
	}
	return nil
}

// restoreOwners gives the process's files the owners of their signals
// (F_SETOWN), once every thread of the tree exists: an owner may be any.
func (r *restorer) restoreOwners() error {
	if r.sharesFiles() {
		return nil
	}
	return r.files.SetOwners(r.ownerInTree)
}

// ownerInTree says whether o is a thread, process or process group of
// the tree restored.
func (r *restorer) ownerInTree(o kernel.Owner) bool {
	for _, p := range r.procs {
		switch o.Type {
		case kernel.FOwnerPGRP:
			if int(p.c.task.GetPgid()) == o.Pid {
				return true
			}
		case kernel.FOwnerTID:
			if slices.Contains(p.c.threads, uint32(o.Pid)) {
				return true
			}
		default:
			if p.pid == o.Pid {
				return true
			}
		}
	}
	return false
}
