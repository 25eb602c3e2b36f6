package files

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
)

// pidfdKind is a pidfd (pidfd_open, CLONE_PIDFD) of a process of the
// checkpoint, which the restore makes again with its pid, or of a process
// reaped, which any reaped process stands for (CRIU's image gives it pid
// -1). A pidfd of another process is refused: that process is not
// brought back.
type pidfdKind struct{}

// pidfdFlags are the status flags a pidfd can have: its access mode,
// PIDFD_NONBLOCK (O_NONBLOCK) and PIDFD_THREAD (O_EXCL).
const pidfdFlags = unix.O_RDWR | unix.PIDFD_NONBLOCK | unix.PIDFD_THREAD

// SetProcesses tells the table the pids of the processes of the
// checkpoint, live and zombie, in the order they are dumped: the
// processes a pidfd may refer to.
func (t *Table) SetProcesses(pids []int) {
	t.order = pids
	t.processes = map[int]bool{}
	for _, pid := range pids {
		t.processes[pid] = true
	}
}

func (pidfdKind) typ() pb.FdTypes { return pb.FdTypes_PIDFD }

func (pidfdKind) claims(d *desc) bool { return d.link == "anon_inode:[pidfd]" }

func (pidfdKind) dump(t *Table, d *desc) (uint32, error) {
	p, err := d.info.Pidfd()
	if err != nil {
		return 0, fmt.Errorf("read pidfd fd %d: %w", d.fd, err)
	}
	flags := statusFlags(d.info)
	switch {
	case p.Pid == -1:
	case p.Pid == 0:
		return 0, fmt.Errorf("%w: fd %d is a pidfd of a process outside cryo's pid namespace", ErrUnsupported, d.fd)
	case !t.processes[p.Pid]:
		return 0, fmt.Errorf("%w: fd %d is a pidfd of pid %d, which is not a process of the checkpoint", ErrUnsupported, d.fd, p.Pid)
	case len(p.NSpid) > 1:
		return 0, fmt.Errorf("%w: fd %d is a pidfd of pid %d, which is pid %d in a nested pid namespace", ErrUnsupported, d.fd, p.Pid, p.NSpid[len(p.NSpid)-1])
	case flags&^pidfdFlags != 0:
		return 0, fmt.Errorf("%w: fd %d is a pidfd of pid %d with flags %#o", ErrUnsupported, d.fd, p.Pid, flags)
	}
	id := t.nextID()
	return t.add(&pb.FileEntry{
		Type: pb.FdTypes_PIDFD, Id: id,
		Entry: &pb.PidfdEntry{
			// The image's inode number is 32 bits; a restore makes the
			// pidfd by its pid and does not use it.
			Id: id, Ino: uint32(d.st.Ino), Flags: flags,
			Nspid: int32(p.Pid), Fown: &pb.FownEntry{},
		},
	}), nil
}

func (pidfdKind) check(s *Set, f *pb.FileEntry) error {
	e := f.GetPidfd()
	switch {
	case e == nil:
		return imageErr("file %d: PIDFD without a pidfd entry", f.GetId())
	case e.GetNspid() == 0 || e.GetNspid() < -1:
		return imageErr("file %d: a pidfd of pid %d", f.GetId(), e.GetNspid())
	case e.GetFlags()&^pidfdFlags != 0:
		return imageErr("file %d: pidfd flags %#o", f.GetId(), e.GetFlags())
	}
	return nil
}

// open makes a pidfd of the process of the tree with the dumped pid, in
// the process, whose pid namespace the pid is of: every process of the
// tree, zombies too, exists by the time files are opened. The tree's
// restore checks that the pid is one of its processes. A pidfd of a
// process reaped is made of a child of cryo's that has exited, which is
// reaped before the processes run (Shared.ReapStandIns): the pidfds of one
// process reaped, the same pidfs inode at the dump, are of one such
// child, those of two are of two.
func (pidfdKind) open(r *Restorer, f *pb.FileEntry) (int, error) {
	e := f.GetPidfd()
	pid := int(e.GetNspid())
	if pid == -1 {
		var err error
		if pid, err = r.shared.reapedStandIn(e.GetIno()); err != nil {
			return -1, err
		}
	}
	flags := uint64(e.GetFlags() & (unix.PIDFD_NONBLOCK | unix.PIDFD_THREAD))
	n, err := r.tr.Syscall(r.pid, unix.SYS_PIDFD_OPEN, uint64(pid), flags)
	if err != nil {
		return -1, fmt.Errorf("make pidfd of pid %d: %w", e.GetNspid(), err)
	}
	return r.made(n)
}

// reapedStandIn returns the child of cryo's, exited and not reaped yet,
// that stands for the process reaped whose pidfds had inode ino at the
// dump, making it the first time.
func (s *Shared) reapedStandIn(ino uint32) (int, error) {
	if child, ok := s.reaped[ino]; ok {
		return child, nil
	}
	child, err := kernel.Clone3Exit(nil)
	if err != nil {
		return 0, fmt.Errorf("make a process to reap for a pidfd: %w", err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, child, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		unix.Wait4(child, nil, 0, nil)
		return 0, fmt.Errorf("wait for pid %d to exit: %w", child, err)
	}
	s.reaped[ino] = child
	return child, nil
}

// ReapStandIns reaps the children reapedStandIn made, before the
// processes run: their pidfds are of processes reaped then.
func (s *Shared) ReapStandIns() {
	for _, child := range s.reaped {
		unix.Wait4(child, nil, 0, nil)
	}
	clear(s.reaped)
}
