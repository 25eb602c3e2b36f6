package files

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/kernel"
)

// Shared is what the restores of the processes of one tree share: the
// open file descriptions already made, which the next process that has
// one takes from there (pidfd_getfd) instead of making another, and the
// pipes and FIFOs already made and filled. The processes are restored
// one after the other, parents first, and each keeps its descriptors at
// their numbers until every process has its own.
type Shared struct {
	// opened is where each file entry is open: a process and one of its
	// descriptor numbers.
	opened map[uint32]fdRef
	// pipes is where each pipe is open, by pipe id.
	pipes map[uint32]fdRef
	// livePipes are the descriptors of processes outside the tree that
	// hold a pipe of the checkpoint, by pipe id (openLivePipe).
	livePipes map[uint32][]fdRef
	// filled are the FIFOs whose data is written back, by pipe id.
	filled map[uint32]bool
	// ptys are the pseudo-terminals made, by dumped index.
	ptys map[uint32]*ptyMade
	// memfds are cryo's descriptors of the memfds made, by inode id: the
	// other processes that have one open it through them.
	memfds map[uint32]int
	// memfdGiven are the memfds whose description memfd_create made is
	// a process's (memfdKind.open), by inode id.
	memfdGiven map[uint32]bool
	// reaped are the exited children of cryo's that pidfds of processes
	// reaped are made of, by the pidfs inode of those at the dump.
	reaped map[uint32]int
	ghostRestorer
	tcpShared
	unixShared
}

// NewShared starts the registry of a tree's restore.
func NewShared() *Shared {
	return &Shared{opened: map[uint32]fdRef{}, pipes: map[uint32]fdRef{}, filled: map[uint32]bool{}, memfds: map[uint32]int{}, memfdGiven: map[uint32]bool{}, reaped: map[uint32]int{}, ptys: map[uint32]*ptyMade{}}
}

// note records the descriptors of process pid, at their numbers, for the
// processes restored after it.
func (s *Shared) note(r *Restorer) {
	for _, fd := range r.set.Fds {
		id := fd.GetId()
		if _, ok := s.opened[id]; !ok {
			s.opened[id] = fdRef{pid: r.pid, fd: int(fd.GetFd()), id: id}
		}
		if p := r.set.File(id).GetPipe(); p != nil {
			if _, ok := s.pipes[p.GetPipeId()]; !ok {
				s.pipes[p.GetPipeId()] = fdRef{pid: r.pid, fd: int(fd.GetFd())}
			}
		}
	}
}

// takeShared returns cryo's descriptor of entry id if another process of
// the tree has it open already: the same open file description, taken
// with pidfd_getfd.
func (r *Restorer) takeShared(id uint32) (int, bool, error) {
	ref, ok := r.shared.opened[id]
	if !ok || ref.pid == r.pid {
		return -1, false, nil
	}
	if ref.pid == os.Getpid() {
		fd, err := unix.FcntlInt(uintptr(ref.fd), unix.F_DUPFD_CLOEXEC, 0)
		return fd, err == nil, err
	}
	fd, err := kernel.Getfd(ref.pid, ref.fd)
	return fd, err == nil, err
}

// sharedPipe is a path to the pipe pipeID in another process of the tree
// that has it, "" if none.
func (r *Restorer) sharedPipe(pipeID uint32) string {
	ref, ok := r.shared.pipes[pipeID]
	if !ok || ref.pid == r.pid {
		return ""
	}
	return "/proc/" + strconv.Itoa(ref.pid) + "/fd/" + strconv.Itoa(ref.fd)
}
