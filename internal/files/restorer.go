package files

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/clog"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
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
	// pidfd is cryo's pidfd of the process while the table is made, for
	// outside.
	pidfd int
	// scratchAt is where the tracer's scratch buffer is, once asked.
	scratchAt uint64
	// creds are the process's, which the unix sockets are made with.
	creds *kernel.Creds
	// ioUringAt are the rings made in the process, by entry, at the
	// numbers they wait at until placed (iouring.go).
	ioUringAt map[uint32]uint64
	// log says what takes time (a ring's counters brought back).
	log *clog.Logger
	placement
	channel
	lockRestorer
	memfdRestorer
	inetRestorer
	pipeRestorer
	timerfdRestorer
	ttyRestorer
}

// NewRestorer prepares to reopen set in process pid, traced by tr, one of
// the processes of a tree whose restores share shared. With shellJob, a
// terminal the process had outside the checkpoint is cryo's own.
func NewRestorer(tr *ptrace.Tracer, pid int, set *Set, shared *Shared, shellJob bool) *Restorer {
	return &Restorer{tr: tr, pid: pid, set: set, shared: shared, shellJob: shellJob, taken: map[uint32]bool{}, pidfd: -1, channel: channel{fd: -1}}
}

// SetLog gives the restorer a logger.
func (r *Restorer) SetLog(l *clog.Logger) { r.log = l }

// OpenAll recreates the descriptor table: every descriptor at its number
// with its flags and position, descriptors that shared an open file
// description (dup) sharing one again. The memfds the mappings were made
// from stay open; every other descriptor of the process is closed first.
//
// Every entry is opened in cryo, and the descriptors travel to the
// process over a unix socket, deliverMax at a time (deliver.go): a
// descriptor costs no stop of the process of its own.
//
// The table may fill the process's RLIMIT_NOFILE, so nothing is opened
// above it: the entries are sent in the order of their lowest number,
// and a batch lands at the lowest free numbers, where they go unless the
// table has a hole below; the first descriptor to land in a hole stays
// there, plugging it, until the table is made.
func (r *Restorer) OpenAll() error {
	if err := r.closeAllBut(r.memfdDescriptors()); err != nil {
		return fmt.Errorf("close the stub's descriptors: %w", err)
	}
	pidfd, err := unix.PidfdOpen(r.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", r.pid, err)
	}
	r.pidfd = pidfd
	defer func() {
		r.closeChannel()
		unix.Close(r.pidfd)
		r.pidfd = -1
	}()
	r.placement = newPlacement()
	if err := r.makeMemfds(); err != nil {
		return err
	}
	if len(r.set.Fds) > 0 {
		if err := r.openChannel(); err != nil {
			return err
		}
	}
	// The process's own /proc/PID/fd/N and fdinfo/N exist only once
	// descriptor N has its number: they are opened last.
	gs := r.groups()
	for _, late := range []bool{false, true} {
		for i := range gs.ends {
			// A regular file, the group's only entry.
			if g := gs.group(i); r.ownFdFile(g.entries()[0]) == late {
				if err := r.openGroup(g); err != nil {
					return err
				}
			}
		}
		if err := r.deliver(true); err != nil {
			return err
		}
	}
	if err := r.closePlugs(); err != nil {
		return err
	}
	for _, k := range kinds {
		if o, ok := k.(opener); ok {
			if err := o.opened(r); err != nil {
				return err
			}
		}
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

// ownFdFile reports whether f is the process's own /proc/PID/fd/N or
// /proc/PID/fdinfo/N.
func (r *Restorer) ownFdFile(f *pb.FileEntry) bool {
	if f.GetReg() == nil || !r.set.ownProc[f.GetId()] {
		return false
	}
	rest, _ := strings.CutPrefix(f.GetReg().GetName(), fmt.Sprintf("/proc/%d/", r.pid))
	return strings.HasPrefix(rest, "fd/") || strings.HasPrefix(rest, "fdinfo/")
}

// opener is a kind with work to do once every entry is open.
type opener interface{ opened(r *Restorer) error }

// placer is a kind with work to do once every descriptor has its number.
type placer interface{ placed(r *Restorer) error }

// grouper is a kind whose entries are made together, as a pipe makes both
// its ends: every entry of a group is opened, then groupOpened runs,
// before any is placed. group returns the group of entry f, or false for
// an entry that is a group of its own.
type grouper interface {
	group(r *Restorer, f *pb.FileEntry) (uint32, bool)
	groupOpened(r *Restorer) error
}

// placement is where the descriptors of the table go and what holds which
// number while it is made. Every number the process holds is one of
// these, so that a number to move a descriptor to is known free without
// asking the kernel.
type placement struct {
	// placed are the numbers that hold their descriptor.
	placed numberSet
	// kept are the numbers of descriptors kept for the whole making of
	// the table (memfds), out of the table's numbers.
	kept map[uint64]bool
	// plugs are holes of the table that a descriptor landed in, left
	// open so that the next lands elsewhere.
	plugs map[uint64]bool
	// temps are the descriptors of the batch being placed, by number, as
	// indexes into the batch.
	temps map[uint64]int
}

func newPlacement() placement {
	return placement{kept: map[uint64]bool{}, plugs: map[uint64]bool{}}
}

// isTarget reports whether n is a number of the table.
func (r *Restorer) isTarget(n uint64) bool {
	return n <= math.MaxUint32 && r.set.fd(uint32(n)) != nil
}

// numberSet is a set of descriptor numbers, a bit each.
type numberSet []uint64

func (s numberSet) has(n uint64) bool { return n/64 < uint64(len(s)) && s[n/64]&(1<<(n%64)) != 0 }

func (s *numberSet) add(n uint64) {
	for uint64(len(*s)) <= n/64 {
		*s = append(*s, 0)
	}
	(*s)[n/64] |= 1 << (n % 64)
}

// groups are the table's entries sorted into groups of entries made
// together, in the order of their lowest numbers, each entry with its
// numbers; held flat: a restore of 10,000 descriptors has thousands of
// groups of one entry, which took 600 KB as slices of their own.
type groups struct {
	entries []*pb.FileEntry   // group after group
	ends    []int32           // the end of each group in entries
	fdEnds  []int32           // the end of each entry's numbers in fds
	fds     []*pb.FdinfoEntry // entry after entry, each's lowest first
}

// group is the i-th group.
func (gs *groups) group(i int) group {
	g := group{gs: gs, to: gs.ends[i]}
	if i > 0 {
		g.from = gs.ends[i-1]
	}
	return g
}

// group is entries made together, each with its numbers.
type group struct {
	gs       *groups
	from, to int32
}

func (g group) entries() []*pb.FileEntry { return g.gs.entries[g.from:g.to] }

// fds are the numbers of the group's i-th entry, lowest first.
func (g group) fds(i int) []*pb.FdinfoEntry {
	e, start := g.from+int32(i), int32(0)
	if e > 0 {
		start = g.gs.fdEnds[e-1]
	}
	return g.gs.fds[start:g.gs.fdEnds[e]]
}

// groups sorts the table's entries into groups.
func (r *Restorer) groups() *groups {
	type key struct {
		typ     pb.FdTypes
		id      uint32
		grouped bool // id is a grouper's, not a file's
	}
	// The entries and groups in the order of their lowest numbers.
	groupOf := map[key]int32{}
	entryOf := map[uint32]int32{} // file id -> entry
	var entries []*pb.FileEntry
	var entryGroup, groupSize []int32
	fdEntry := make([]int32, len(r.set.Fds))
	for n, fd := range r.set.Fds {
		f := r.set.File(fd.GetId())
		e, ok := entryOf[f.GetId()]
		if !ok {
			k := key{typ: f.GetType(), id: f.GetId()}
			if gk, ok := kindOfEntry(f).(grouper); ok {
				if id, ok := gk.group(r, f); ok {
					k.id, k.grouped = id, true
				}
			}
			g, ok := groupOf[k]
			if !ok {
				g = int32(len(groupSize))
				groupOf[k] = g
				groupSize = append(groupSize, 0)
			}
			e = int32(len(entries))
			entryOf[f.GetId()] = e
			entries = append(entries, f)
			entryGroup = append(entryGroup, g)
			groupSize[g]++
		}
		fdEntry[n] = e
	}
	// Then each group's entries together, and each entry's numbers.
	gs := &groups{entries: make([]*pb.FileEntry, len(entries)), ends: cumulative(slices.Clone(groupSize)),
		fdEnds: make([]int32, len(entries)), fds: make([]*pb.FdinfoEntry, len(r.set.Fds))}
	next := make([]int32, len(groupSize)) // the next slot of each group
	for g := range next {
		next[g] = gs.ends[g] - groupSize[g]
	}
	at := make([]int32, len(entries)) // each entry's slot
	for e, g := range entryGroup {
		at[e], gs.entries[next[g]] = next[g], entries[e]
		next[g]++
	}
	for _, e := range fdEntry {
		gs.fdEnds[at[e]]++
	}
	cumulative(gs.fdEnds)
	filled := make([]int32, len(entries)) // numbers placed of each slot
	for n, e := range fdEntry {
		slot, start := at[e], int32(0)
		if slot > 0 {
			start = gs.fdEnds[slot-1]
		}
		gs.fds[start+filled[slot]] = &r.set.Fds[n]
		filled[slot]++
	}
	return gs
}

// cumulative turns sizes, in place, into the end of each in a sequence
// of them.
func cumulative(sizes []int32) []int32 {
	var sum int32
	for i, n := range sizes {
		sum += n
		sizes[i] = sum
	}
	return sizes
}

// kindOfEntry is the kind of an entry Load checked.
func kindOfEntry(f *pb.FileEntry) kind {
	k, _ := kindOf(f.GetType())
	return k
}

// openGroup opens the entries of a group in cryo and queues them for the
// process, sending the batches that are full.
func (r *Restorer) openGroup(g group) error {
	for i, f := range g.entries() {
		fd, taken, err := r.takeShared(f.GetId())
		if err == nil && !taken {
			fd, err = kindOfEntry(f).open(r, f)
		}
		if err != nil {
			return fmt.Errorf("fd %d (%v): %w", g.fds(i)[0].GetFd(), f.GetType(), err)
		}
		if taken {
			r.taken[f.GetId()] = true
		}
		r.pending = append(r.pending, sending{id: f.GetId(), fds: g.fds(i), fd: fd})
	}
	if gk, ok := kindOfEntry(g.entries()[0]).(grouper); ok {
		if err := gk.groupOpened(r); err != nil {
			return err
		}
	}
	return r.deliver(false)
}

// beyond reports whether number n is above every number of the table.
func (r *Restorer) beyond(n uint64) bool {
	fds := r.set.Fds
	return len(fds) == 0 || n > uint64(fds[len(fds)-1].GetFd())
}

// free returns the lowest number from (else from 0) that nothing holds
// and that avoid does not refuse. There is one below the table's
// highest number plus as many more as the process holds besides the
// table: the process's RLIMIT_NOFILE may be too low for it, and then the
// call that uses it fails.
func (r *Restorer) free(from uint64, avoid func(uint64) bool) uint64 {
	end := uint64(len(r.kept)+len(r.plugs)+len(r.temps)) + 1
	if len(r.set.Fds) > 0 {
		end += uint64(r.set.Fds[len(r.set.Fds)-1].GetFd()) + 1
	}
	for _, start := range []uint64{from, 0} {
		for m := start; m < end; m++ {
			_, temp := r.temps[m]
			if !temp && !r.placed.has(m) && !r.kept[m] && !r.plugs[m] && !avoid(m) {
				return m
			}
		}
	}
	return end
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

// outside runs f on cryo's own duplicate of descriptor n of the process:
// what is done to its open file description (position, status flags, a
// pipe's size and data, a file's contents) needs no injected call.
func (r *Restorer) outside(n uint64, f func(fd int) error) error {
	dup, err := r.getfd(n)
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	return f(dup)
}

// getfd returns cryo's own duplicate of descriptor n of the process, for
// the caller to close.
func (r *Restorer) getfd(n uint64) (int, error) {
	if r.pidfd < 0 {
		return kernel.Getfd(r.pid, int(n))
	}
	dup, err := unix.PidfdGetfd(r.pidfd, int(n), 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd %d of pid %d: %w", n, r.pid, err)
	}
	return dup, nil
}

// scratch returns the address of the tracer's scratch buffer in the
// process, which stays where it is: asked once, not at each call, each
// asking being a trip to the tracer's thread.
func (r *Restorer) scratch() (uint64, error) {
	if r.scratchAt == 0 {
		at, err := r.tr.Scratch(r.pid)
		if err != nil {
			return 0, err
		}
		r.scratchAt = at
	}
	return r.scratchAt, nil
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

// reopen opens path in cryo with an entry's flags (reopenFlags), at
// position pos, close-on-exec in cryo whatever the entry's flags say (the
// descriptor's own flags are set in the process).
func (r *Restorer) reopen(path string, flags uint32, pos uint64) (int, error) {
	fd, err := unix.Open(path, int(reopenFlags(flags))|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	return seekTo(fd, path, pos)
}

// reopenHere is reopen done by the process, for a file whose opening may
// wait (specialFile), and returns cryo's descriptor of it.
func (r *Restorer) reopenHere(path string, flags uint32, pos uint64) (int, error) {
	n, err := r.open(path, reopenFlags(flags)|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	fd, err := r.made(n)
	if err != nil {
		return -1, err
	}
	return seekTo(fd, path, pos)
}

// reopenFlags are the flags that reopen an entry's file with the entry's
// flags. O_NOFOLLOW acted on the dumped path; the path here is a magic
// link to the checked file (Set.Path), which it would refuse. O_TMPFILE
// (tmpfile(3)) made the file, which is reopened as the unlinked file it
// is now.
func reopenFlags(flags uint32) uint64 {
	if flags&unix.O_TMPFILE == unix.O_TMPFILE {
		flags &^= unix.O_TMPFILE
	}
	return uint64(flags) &^ (unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC)
}

// seekTo moves cryo's descriptor fd of path to pos, closing it if it
// cannot.
func seekTo(fd int, path string, pos uint64) (int, error) {
	if pos == 0 {
		return fd, nil
	}
	if _, err := unix.Seek(fd, int64(pos), io.SeekStart); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seek %s to %d: %w", path, pos, err)
	}
	return fd, nil
}

// made takes descriptor n, which the process made because only it can
// (in its namespaces, or with its controlling terminal), into cryo, and
// closes it there: it goes back as every descriptor does.
func (r *Restorer) made(n uint64) (int, error) {
	fd, err := r.getfd(n)
	if cerr := r.sys(unix.SYS_CLOSE, n); err == nil && cerr != nil {
		unix.Close(fd)
		err = fmt.Errorf("close fd %d: %w", n, cerr)
	}
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// setStatusFlags sets the status flags (O_NONBLOCK...) of cryo's
// descriptor fd.
func setStatusFlags(fd int, flags uint32) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, int(flags))
	return err
}
