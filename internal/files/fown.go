package files

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// An open file's owner (F_SETOWN, F_SETSIG) is who its signal-driven I/O
// (O_ASYNC) signals, and a socket's SIGURG, go to: kept in the fown entry
// of the file's kind, with the real and effective uid it was set with,
// which decide whether the signal may be sent (F_GETOWNER_UIDS), and set
// again by a thread with those uids.

// entryFown returns the fown field of the entry of f's kind, or nil if
// that kind has none.
func entryFown(f *pb.FileEntry) **pb.FownEntry {
	switch {
	case f.GetReg() != nil:
		return &f.GetReg().Fown
	case f.GetIsk() != nil:
		return &f.GetIsk().Fown
	case f.GetPsk() != nil:
		return &f.GetPsk().Fown
	case f.GetNlsk() != nil:
		return &f.GetNlsk().Fown
	case f.GetEfd() != nil:
		return &f.GetEfd().Fown
	case f.GetEpfd() != nil:
		return &f.GetEpfd().Fown
	case f.GetSgfd() != nil:
		return &f.GetSgfd().Fown
	case f.GetTfd() != nil:
		return &f.GetTfd().Fown
	case f.GetIfy() != nil:
		return &f.GetIfy().Fown
	case f.GetFfy() != nil:
		return &f.GetFfy().Fown
	case f.GetExt() != nil:
		return &f.GetExt().Fown
	case f.GetUsk() != nil:
		return &f.GetUsk().Fown
	case f.GetPipe() != nil:
		return &f.GetPipe().Fown
	case f.GetTty() != nil:
		return &f.GetTty().Fown
	case f.GetMemfd() != nil:
		return &f.GetMemfd().Fown
	case f.GetBpf() != nil:
		return &f.GetBpf().Fown
	case f.GetPidfd() != nil:
		return &f.GetPidfd().Fown
	}
	return nil
}

// noOwner is the fown entry of every loaded file that has no owner,
// shared: nearly none has one, and a restore of 10,000 descriptors held
// 185 KB of copies. A restore only reads them.
var noOwner pb.FownEntry

// shareNoOwner points the fown entries of files without an owner at
// noOwner.
func shareNoOwner(files []*pb.FileEntry) {
	for _, f := range files {
		if own := entryFown(f); own != nil && *own != nil && **own == noOwner {
			*own = &noOwner
		}
	}
}

// owner reads the owner of the process's descriptor fd, through a copy.
func (t *Table) owner(fd int) (kernel.Owner, error) {
	dup, err := kernel.Getfd(t.view, fd)
	if err != nil {
		return kernel.Owner{}, err
	}
	defer closeAll([]int{dup})
	return kernel.GetOwner(dup)
}

// dumpOwner records the owner of descriptor fd, entry f, if it has one.
func (t *Table) dumpOwner(fd int, f *pb.FileEntry) error {
	o, err := t.owner(fd)
	if err != nil || o.Pid == 0 && o.Sig == 0 {
		return err
	}
	if o.Pid != 0 && !t.ownerInTree(o) {
		return fmt.Errorf("%w: fd %d: the owner of its signals (F_SETOWN) is %s %d, not one of the checkpoint's", ErrUnsupported, fd, o.Kind(), o.Pid)
	}
	own := entryFown(f)
	if own == nil {
		return fmt.Errorf("%w: fd %d (%v) has an owner for its signals (F_SETOWN), which its kind's entry cannot hold", ErrUnsupported, fd, f.GetType())
	}
	*own = &pb.FownEntry{Uid: o.UID, Euid: o.EUID, Signum: uint32(o.Sig),
		PidType: uint32(o.Type), Pid: uint32(o.Pid)}
	return nil
}

// refuseDnotify refuses descriptor fd, entry f, if it is a directory with
// an owner: F_NOTIFY makes the caller a directory's owner, and what it
// registers no interface reads, so a restore could not bring it back.
func (t *Table) refuseDnotify(fd int, f *pb.FileEntry) error {
	if f.GetReg().GetMode()&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	o, err := t.owner(fd)
	if err != nil || o.Pid == 0 {
		return err
	}
	return fmt.Errorf("%w: fd %d is a directory with an owner for its signals (F_SETOWN), as a dnotify registration (F_NOTIFY) makes it, which cryo cannot keep", ErrUnsupported, fd)
}

// ownerInTree says whether o is a thread, process or process group of
// the processes dumped. (The kernel says 0 for an owner that has exited.)
func (t *Table) ownerInTree(o kernel.Owner) bool {
	switch o.Type {
	case kernel.FOwnerPGRP:
		for pid := range t.processes {
			if st, err := proc.ReadStat(pid); err == nil && st.Pgrp == o.Pid {
				return true
			}
		}
		return false
	case kernel.FOwnerTID:
		st, err := proc.ReadStatus(o.Pid)
		return err == nil && t.processes[st.Tgid]
	}
	return t.processes[o.Pid]
}

// SetOwners gives the files the process made their owners, once every
// thread of the tree exists (an owner may be any of them): through the
// process's descriptor, from a thread with the uids the owner was set
// with. inTree says whether an owner is a thread, process or group of the
// tree; one that is not is refused, so that a restore never lets a process
// signal one outside the tree it could not.
func (r *Restorer) SetOwners(inTree func(kernel.Owner) bool) error {
	done := map[uint32]bool{}
	for _, d := range r.set.Fds {
		id := d.GetId()
		if done[id] || r.taken[id] {
			continue
		}
		done[id] = true
		f := r.set.File(id)
		own := entryFown(f)
		if own == nil || *own == nil {
			continue
		}
		e := *own
		if e.GetPid() == 0 && e.GetSignum() == 0 {
			continue
		}
		o := kernel.Owner{Type: int(e.GetPidType()), Pid: int(e.GetPid()), Sig: int(e.GetSignum()), UID: e.GetUid(), EUID: e.GetEuid()}
		if err := r.setOwner(int(d.GetFd()), o, inTree); err != nil {
			return fmt.Errorf("fd %d: owner of its signals: %w", d.GetFd(), err)
		}
	}
	return nil
}

// setOwner makes o the owner of the file at descriptor fd of the process.
func (r *Restorer) setOwner(fd int, o kernel.Owner, inTree func(kernel.Owner) bool) error {
	if o.Pid != 0 && !inTree(o) {
		return fmt.Errorf("%w: %s %d, not one of the checkpoint's", ErrImage, o.Kind(), o.Pid)
	}
	// The owner's uids decide which processes it may signal. A thread or
	// process of the tree is the tree's, whatever they are; but a group
	// may hold processes outside it (cryo's, which a shell job joins, or
	// one living on in cryo's session), which only the process's own uids
	// may signal.
	if c := r.creds; c != nil && o.Type == kernel.FOwnerPGRP {
		for _, u := range []uint32{o.UID, o.EUID} {
			if u != c.UID && u != c.EUID && u != c.SUID {
				return fmt.Errorf("%w: process group %d, set with uid %d, which the process (uids %d/%d/%d) does not have", ErrImage, o.Pid, u, c.UID, c.EUID, c.SUID)
			}
		}
	}
	dup, err := kernel.Getfd(r.pid, fd)
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	c := kernel.Creds{UID: o.UID, EUID: o.EUID, SUID: o.EUID}
	return onThreadAs(&c, func() error { return kernel.SetOwner(dup, o) })
}
