package files

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// File locks: POSIX record locks (fcntl F_SETLK), which belong to the
// process; OFD locks (F_OFD_SETLK) and flock(2) locks, which belong to an
// open file description. Each is one filelocks.img entry naming the
// descriptor it is re-taken through at restore: for POSIX locks the one
// the kernel shows it on (the one it was taken through), for the others
// any descriptor of the open file description. An flock or OFD lock that
// only a mapping holds (its descriptors closed) names, as a negative
// descriptor, the mapped file (its files.img id, the VMA's shmid), which
// the restore opens to map: it takes the lock on that open file
// description before the descriptor is closed. CRIU, which has no such
// entries, fails on the descriptor rather than lose the lock.
//
// A lease (fcntl F_SETLEASE) belongs to an open file description too, and
// is an entry of flag FL_LEASE, type F_RDLCK or F_WRLCK, on the whole
// file, as CRIU writes it. The restore takes it again from inside the
// process: the kernel counts the lease as the caller's (the pid
// /proc/locks shows), makes the caller the file's owner, who is told of
// a break, and, as it runs before the credentials are restored, lets
// root's CAP_LEASE stand in for owning the file, which the restore
// checks the process did instead. A lease being broken (a conflicting
// open has started a break: BREAKING) is refused: CRIU breaks it again
// at restore by opening the file, which restarts the break's timeout and
// signals the holder once more.
//
// Delegations and mandatory locks are refused at dump.

// The kinds of lock in an entry's flag, CRIU's FL_* values.
const (
	flPOSIX = 1
	flFlock = 2
	flOFD   = 4
	flLease = 8
)

// lockFlags maps the kernel's class of a lock to its flag.
var lockFlags = map[string]uint32{proc.LockPOSIX: flPOSIX, proc.LockFlock: flFlock, proc.LockOFD: flOFD, proc.LockLease: flLease}

// lockTypes maps the kernel's word for a lock's type to the entry's type,
// F_RDLCK or F_WRLCK (flock locks too: shared is read, exclusive write).
var lockTypes = map[string]uint32{proc.LockRead: unix.F_RDLCK, proc.LockWrite: unix.F_WRLCK}

// lockTable is the locks of a process being dumped.
type lockTable struct {
	locks []*pb.FileLockEntry
	// held are the locks recorded, as /proc/locks shows them (ID 0).
	held []proc.Lock
	// system is /proc/locks, read once for every process (ReadLocks).
	system *systemLocks
}

// systemLocks is a read of /proc/locks, done when done is closed.
type systemLocks struct {
	done  chan struct{}
	locks []proc.Lock
	err   error
}

// A read of /proc/locks write-locks the kernel's lock lists, whose first
// writer in a while waits for an RCU grace period: 10-11 ms here, even
// with no lock in the system, where the reads that follow within a grace
// period take 0.02-0.06 ms. PrimeLocks reads it just before the processes
// are frozen, and ReadLocks just after, so that the frozen time does not
// pay the wait: a --leave-running dump of 16 MiB was frozen 11-22 ms,
// now 3-6. Every process's checks share the frozen read, where each read
// /proc/locks again.

// PrimeLocks reads /proc/locks and forgets it.
func (t *Table) PrimeLocks() { proc.ReadLocks() }

// ReadLocks reads /proc/locks in the background, for the checks of every
// process's Dump: called once the processes are frozen, so that their
// locks are as they will be dumped.
func (t *Table) ReadLocks() {
	l := &systemLocks{done: make(chan struct{})}
	t.system = l
	go func() {
		defer close(l.done)
		l.locks, l.err = proc.ReadLocks()
	}()
}

// systemLocks returns what ReadLocks read, reading it now if it was not
// asked to.
func (t *Table) systemLocks() ([]proc.Lock, error) {
	if t.system == nil {
		t.ReadLocks()
	}
	<-t.system.done
	return t.system.locks, t.system.err
}

// dumpLocks records the locks that the fdinfo of descriptor fd shows: those
// of its open file description, and the POSIX locks the process took
// through it. It runs once per open file description, and reports
// whether the description holds a lease.
func (t *Table) dumpLocks(fd int, info proc.Fdinfo) (leased bool, err error) {
	locks, err := info.Locks()
	if err != nil {
		return false, fmt.Errorf("fd %d: %w", fd, err)
	}
	for _, l := range locks {
		if err := t.recordLock(l, int32(fd)); err != nil {
			return false, fmt.Errorf("%w: fd %d holds %w", ErrUnsupported, fd, err)
		}
		leased = leased || l.Class == proc.LockLease
	}
	return leased, nil
}

// recordLock records lock l, to be taken again through descriptor fd or,
// if fd is negative, through the mapping of file -fd (a mapping lock).
// It returns what is wrong with a lock a restore cannot take again.
func (t *Table) recordLock(l proc.Lock, fd int32) error {
	flag, ok := lockFlags[l.Class]
	typ, typed := lockTypes[l.Type]
	switch {
	case l.Class == proc.LockDeleg:
		return fmt.Errorf("a delegation (an NFS server's lease): %v", l)
	case !ok:
		return fmt.Errorf("a lock of class %s: %v", l.Class, l)
	case l.Class == proc.LockLease && l.Mode == "BREAKING":
		return fmt.Errorf("a lease being broken (F_SETLEASE; another process's open of the file waits or failed, and the lease is to go): %v", l)
	case l.Class == proc.LockLease && (l.Mode != "ACTIVE" || !typed || l.Waiting):
		return fmt.Errorf("a lease in state %s %s: %v", l.Mode, l.Type, l)
	case l.Mode == "MANDATORY" || l.Mode == "MSNFS":
		return fmt.Errorf("a mandatory lock: %v", l)
	case l.Class != proc.LockLease && (l.Mode != "ADVISORY" || !typed || l.Waiting):
		return fmt.Errorf("a lock in state %s %s: %v", l.Mode, l.Type, l)
	case l.Class == proc.LockPOSIX && l.Pid != t.pid:
		// The descriptor table is shared with another process
		// (CLONE_FILES), which took the lock.
		return fmt.Errorf("a POSIX lock of another process: %v", l)
	}
	length := int64(0) // to the end of the file, however long
	if !l.ToEOF() {
		length = l.End - l.Start + 1
	}
	t.locks = append(t.locks, &pb.FileLockEntry{
		Flag: flag, Type: typ, Pid: int32(t.pid), Fd: fd,
		Start: l.Start, Len: length,
	})
	l.ID = 0
	t.held = append(t.held, l)
	return nil
}

// checkUnreachedLocks records or refuses the locks the process holds that
// no descriptor shows, which a restore would lose: it refuses a POSIX
// lock of the process that no fdinfo shows, and records the lock of an
// open file description that only a mapping of the process keeps open
// when it can tell which mapping (mappingLock). vmas are the process's,
// as the dump records them.
func (t *Table) checkUnreachedLocks(vmas []*pb.VmaEntry) error {
	all, err := t.systemLocks()
	if err != nil {
		return err
	}
	var others []proc.Lock // locks of open file descriptions
	for _, l := range all {
		if l.Waiting {
			continue
		}
		if l.ID = 0; slices.Contains(t.held, l) {
			continue
		}
		if l.Class == proc.LockPOSIX && l.Pid == t.pid {
			return fmt.Errorf("%w: %v, which no descriptor of the process shows", ErrUnsupported, l)
		}
		if l.Class == proc.LockPOSIX || l.Class == proc.LockAccess {
			continue // another process's
		}
		others = append(others, l)
	}
	if len(others) == 0 {
		return nil
	}
	// The first mapping of each one's file, if the process maps it, in one
	// pass over its maps a line at a time: read whole, those of 60,000
	// mappings took 6 MB.
	first := make([]*proc.Mapping, len(others))
	if _, _, err := proc.FindMapping(t.view, func(m proc.Mapping) bool {
		for i, l := range others {
			if first[i] == nil && mapsFile(m, l) {
				first[i] = &m
			}
		}
		return false
	}); err != nil {
		return err
	}
	for i, l := range others {
		m := first[i]
		if m == nil {
			continue
		}
		// The process maps the file: the lock is its own if no descriptor
		// of any process holds it.
		if _, _, found := lockOnDescriptor(l, t.pid); found {
			continue
		}
		if err := t.mappingLock(l, *m, vmas); err != nil {
			return fmt.Errorf("%w: %v, held through the mapping of %s at %#x, not a descriptor: %w", ErrUnsupported, l, m.Path, m.Start, err)
		}
	}
	return nil
}

// mapsFile reports whether mapping m is of the file lock l is on.
func mapsFile(m proc.Mapping, l proc.Lock) bool {
	return m.Major == l.Major && m.Minor == l.Minor && m.Inode == l.Ino
}

// mappingLock records lock l, which no descriptor of any process shows,
// on a file that mapping m of the process maps: a program may open a
// file, lock it, map it and close the descriptor, leaving the lock on the
// open file description the mapping holds (the JVM does so with its
// hsperfdata file). /proc does not say which open file description holds
// a lock, nor which one a mapping holds: the lock is the mapping's when
// m is the only mapping of the file in the system, of a file the restore
// opens once for it alone (not a memfd). Else it cannot tell, and
// refuses.
func (t *Table) mappingLock(l proc.Lock, m proc.Mapping, vmas []*pb.VmaEntry) error {
	if l.Class != proc.LockFlock && l.Class != proc.LockOFD {
		return fmt.Errorf("a %s lock", l.Class)
	}
	pids, err := proc.ReadPids()
	if err != nil {
		return err
	}
	n := 0
	for _, pid := range pids {
		// A line at a time; an error is a process gone, or a kernel thread.
		proc.FindMapping(pid, func(o proc.Mapping) bool {
			if mapsFile(o, l) {
				n++
			}
			return false
		})
	}
	if n != 1 {
		return fmt.Errorf("the file has %d mappings in the system, and which holds the lock is unknown", n)
	}
	i := slices.IndexFunc(vmas, func(v *pb.VmaEntry) bool { return v.GetStart() == m.Start })
	if i < 0 || vmas[i].GetStatus()&(image.VMAFilePrivate|image.VMAFileShared) == 0 || vmas[i].GetStatus()&image.VMAAreaMemfd != 0 {
		return fmt.Errorf("a mapping of a kind whose locks a restore does not take")
	}
	id := uint32(vmas[i].GetShmid())
	// The restore opens the file as the mapping's entry says: an OFD
	// write lock needs it open for writing.
	if l.Class == proc.LockOFD && l.Type == proc.LockWrite && t.files[id-1].GetReg().GetFlags()&unix.O_ACCMODE == unix.O_RDONLY {
		return fmt.Errorf("a write lock, and the mapping does not write the file")
	}
	return t.recordLock(l, -int32(id))
}

// lockOnDescriptor finds a process other than skip whose descriptor shows
// lock l, and that descriptor.
func lockOnDescriptor(l proc.Lock, skip int) (pid, fd int, found bool) {
	pids, err := proc.ReadPids()
	if err != nil {
		return 0, 0, false
	}
	for _, pid := range pids {
		if pid == skip {
			continue
		}
		fds, err := proc.ReadFds(pid)
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			info, err := proc.ReadFdinfo(pid, fd)
			if err != nil {
				continue
			}
			locks, err := info.Locks()
			if err != nil {
				continue
			}
			for _, o := range locks {
				if o.ID = 0; o == l {
					return pid, fd, true
				}
			}
		}
	}
	return 0, 0, false
}

func (t *lockTable) write(dir *image.Dir) error {
	return image.WriteSome(dir, image.FileLocks, 0, t.locks)
}

// lockSet is the locks of a checkpoint.
type lockSet struct{ Locks []*pb.FileLockEntry }

// loadLocks reads filelocks.img, if any, and checks every lock of the
// process against its descriptor table. The other processes' locks are
// theirs to check.
func (s *Set) loadLocks() error {
	locks, err := image.ReadAll[pb.FileLockEntry](s.dir, image.FileLocks, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	for _, l := range locks {
		fd := l.GetFd()
		switch {
		case !slices.Contains([]uint32{flPOSIX, flFlock, flOFD, flLease}, l.GetFlag()):
			return imageErr("filelocks.img: lock on fd %d of kind %#x", fd, l.GetFlag())
		case l.GetType() != unix.F_RDLCK && l.GetType() != unix.F_WRLCK:
			return imageErr("filelocks.img: lock on fd %d of type %d", fd, l.GetType())
		case l.GetStart() < 0 || l.GetLen() < 0 || l.GetLen() > math.MaxInt64-l.GetStart():
			return imageErr("filelocks.img: lock on fd %d of range %d+%d", fd, l.GetStart(), l.GetLen())
		case (l.GetFlag() == flFlock || l.GetFlag() == flLease) && (l.GetStart() != 0 || l.GetLen() != 0):
			return imageErr("filelocks.img: %s of range %d+%d", describeLock(l), l.GetStart(), l.GetLen())
		case l.GetFlag() == flLease && fd < 0:
			return imageErr("filelocks.img: %s, which no descriptor holds", describeLock(l))
		case fd < 0 && (l.GetFlag() == flPOSIX || s.File(uint32(-fd)).GetReg() == nil):
			return imageErr("filelocks.img: %s, not a file whose mapping may hold it", describeLock(l))
		case fd >= 0 && int(l.GetPid()) == s.pid && !slices.ContainsFunc(s.Fds, func(e pb.FdinfoEntry) bool { return int32(e.GetFd()) == fd }):
			return imageErr("filelocks.img: lock on fd %d, which the process does not have", fd)
		}
	}
	s.Locks = locks
	return nil
}

// CheckMappingLocks checks that the file of every lock of the process
// that a mapping held is one the process maps, as mapped says of a files
// id.
func (s *Set) CheckMappingLocks(mapped func(id uint32) bool) error {
	for _, l := range s.Locks {
		if int(l.GetPid()) == s.pid && l.GetFd() < 0 && !mapped(uint32(-l.GetFd())) {
			return imageErr("filelocks.img: %s, a file the process does not map", describeLock(l))
		}
	}
	return nil
}

// checkLeases checks that the process, with credentials c, may take each
// of its leases again, as the kernel would let it (generic_setlease): it
// owns the file (its fsuid), or has CAP_LEASE. The restore takes them
// before the credentials are restored, with root's CAP_LEASE, which
// would let it take a lease on a file it no longer owns. It runs once
// Verify has opened the files the process gets by path.
func (s *Set) checkLeases(c kernel.FsCreds) error {
	for _, l := range s.Locks {
		if l.GetFlag() != flLease || int(l.GetPid()) != s.pid {
			continue
		}
		i := slices.IndexFunc(s.Fds, func(e pb.FdinfoEntry) bool { return int32(e.GetFd()) == l.GetFd() })
		id := s.Fds[i].GetId() // loadLocks checked it
		name := s.File(id).GetReg().GetName()
		fd, ok := s.opened[id]
		if !ok {
			// Recreated or linked back by the restore, which decides
			// whose it is then, or the process's own under /proc.
			return fmt.Errorf("%w: %s of %s, a file the restore makes again or opens only once the process has it", ErrUnsupported, describeLock(l), name)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", name, err)
		}
		if st.Uid != c.Fsuid && c.Effective&(1<<unix.CAP_LEASE) == 0 {
			return fmt.Errorf("%w: %s of %s: the file is uid %d's, and the process (fsuid %d) has no CAP_LEASE", ErrAccess, describeLock(l), name, st.Uid, c.Fsuid)
		}
	}
	return nil
}

// lockRestorer is what a Restorer knows of the locks held through
// mappings.
type lockRestorer struct {
	// mappingLocks are those taken (TakeMappingLocks).
	mappingLocks map[*pb.FileLockEntry]bool
}

// TakeMappingLocks takes the locks that the mapping of file id held, on
// fd, the process's descriptor of the file that the mapping is made
// from. It runs before the descriptor is closed: the lock then stays
// with the open file description the mapping holds.
func (r *Restorer) TakeMappingLocks(id uint32, fd uint64) error {
	for _, l := range r.set.Locks {
		if int(l.GetPid()) != r.pid || l.GetFd() >= 0 || uint32(-l.GetFd()) != id {
			continue
		}
		if err := r.takeLock(l, fd); err != nil {
			return fmt.Errorf("take %s: %w", describeLock(l), err)
		}
		if r.mappingLocks == nil {
			r.mappingLocks = map[*pb.FileLockEntry]bool{}
		}
		r.mappingLocks[l] = true
	}
	return nil
}

// takeLocks takes every lock of the checkpoint again, through the
// descriptor the image names, before the process runs. A lock that
// another process holds meanwhile fails the restore, naming it. It runs
// once every descriptor has its number, and nothing may open and close a
// file in the process afterwards: closing any descriptor of a file drops
// the process's POSIX locks on it. The locks of mappings were taken
// with them; one whose file the process does not map fails the restore.
func (r *Restorer) takeLocks() error {
	for _, l := range r.set.Locks {
		if int(l.GetPid()) != r.pid {
			continue // another process's, taken by its restore
		}
		if l.GetFd() < 0 {
			if !r.mappingLocks[l] {
				return fmt.Errorf("%w: %s: the process maps no such file", ErrImage, describeLock(l))
			}
			continue
		}
		if err := r.takeLock(l, uint64(l.GetFd())); err != nil {
			return fmt.Errorf("take %s: %w", describeLock(l), err)
		}
	}
	return nil
}

// takeLock takes lock l through the process's descriptor fd.
func (r *Restorer) takeLock(l *pb.FileLockEntry, fd uint64) error {
	var err error
	switch l.GetFlag() {
	case flLease:
		// EAGAIN: the file is open elsewhere in a way the lease does
		// not allow, or another holds a lease that conflicts.
		if err = r.sys(unix.SYS_FCNTL, fd, unix.F_SETLEASE, uint64(l.GetType())); errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("%w: %s", ErrLocked, leaseConflict(l, r.pid, fd))
		}
		return err
	case flFlock:
		how := uint64(unix.LOCK_SH)
		if l.GetType() == unix.F_WRLCK {
			how = unix.LOCK_EX
		}
		err = r.sys(unix.SYS_FLOCK, fd, how|unix.LOCK_NB)
	default:
		cmd := uint64(unix.F_SETLK)
		if l.GetFlag() == flOFD {
			cmd = unix.F_OFD_SETLK
		}
		scratch, serr := r.scratch()
		if serr != nil {
			return serr
		}
		flock := kernel.Flock{Type: int16(l.GetType()), Whence: unix.SEEK_SET, Start: l.GetStart(), Len: l.GetLen()}
		if err := r.tr.WriteValue(scratch, flock); err != nil {
			return err
		}
		err = r.sys(unix.SYS_FCNTL, fd, cmd, scratch)
	}
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %s", ErrLocked, r.holder(l, fd))
	}
	return err
}

// holder names who holds a lock that conflicts with l, from /proc/locks,
// or from the descriptors of every process for an OFD lock, which
// /proc/locks shows without its process.
func (r *Restorer) holder(l *pb.FileLockEntry, fd uint64) string {
	var st unix.Stat_t
	if err := unix.Stat(proc.Path(r.pid, fmt.Sprintf("fd/%d", fd)), &st); err != nil {
		return fmt.Sprintf("holder unknown (stat the file: %v)", err)
	}
	all, err := proc.ReadLocks()
	if err != nil {
		return fmt.Sprintf("holder unknown (%v)", err)
	}
	want := proc.Lock{Start: l.GetStart(), End: math.MaxInt64}
	if l.GetLen() != 0 {
		want.End = l.GetStart() + l.GetLen() - 1
	}
	for _, o := range all {
		// flock locks meet only flock locks; POSIX and OFD locks meet
		// each other.
		sameFamily := o.Class == proc.LockFlock && l.GetFlag() == flFlock ||
			(o.Class == proc.LockPOSIX || o.Class == proc.LockOFD) && l.GetFlag() != flFlock
		conflicts := o.Major == unix.Major(st.Dev) && o.Minor == unix.Minor(st.Dev) && o.Ino == st.Ino &&
			!o.Waiting && sameFamily && o.Overlaps(want) && (o.Type == proc.LockWrite || l.GetType() == unix.F_WRLCK) &&
			!(o.Class == proc.LockPOSIX && o.Pid == r.pid)
		switch {
		case !conflicts:
		case o.Pid > 0:
			return fmt.Sprintf("pid %d (%v)", o.Pid, o)
		default:
			o.ID = 0
			if pid, fd, ok := lockOnDescriptor(o, r.pid); ok {
				return fmt.Sprintf("pid %d through fd %d (%v)", pid, fd, o)
			}
			return fmt.Sprintf("an open file description no process has a descriptor of (%v)", o)
		}
	}
	return "holder gone since"
}

// leaseConflict names what keeps the process from taking lease l
// through its descriptor fd: the processes with the file open (in the
// ways that conflict), and the leases of others on it.
func leaseConflict(l *pb.FileLockEntry, pid int, fd uint64) string {
	var st unix.Stat_t
	if err := unix.Stat(proc.Path(pid, fmt.Sprintf("fd/%d", fd)), &st); err != nil {
		return fmt.Sprintf("the file is open elsewhere (stat it: %v)", err)
	}
	var who []string
	if all, err := proc.ReadLocks(); err == nil {
		for _, o := range all {
			if o.Class == proc.LockLease && o.Major == unix.Major(st.Dev) && o.Minor == unix.Minor(st.Dev) && o.Ino == st.Ino && o.Pid != pid {
				who = append(who, fmt.Sprintf("pid %d (%v)", o.Pid, o))
			}
		}
	}
	pids, _ := proc.ReadPids()
	for _, p := range pids {
		fds, err := proc.ReadFds(p)
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, n := range fds {
			var o unix.Stat_t
			if p == pid && uint64(n) == fd || unix.Stat(proc.Path(p, fmt.Sprintf("fd/%d", n)), &o) != nil || o.Dev != st.Dev || o.Ino != st.Ino {
				continue
			}
			info, err := proc.ReadFdinfo(p, n)
			// A read lease conflicts with writers, a write lease with
			// any other open but an O_PATH one, which opens nothing.
			if err == nil && info.Flags&unix.O_PATH == 0 && (l.GetType() == unix.F_WRLCK || info.Flags&unix.O_ACCMODE != unix.O_RDONLY) {
				who = append(who, fmt.Sprintf("pid %d fd %d", p, n))
			}
		}
	}
	if len(who) == 0 {
		return "the file is open elsewhere (holder gone since)"
	}
	return "the file is open by " + strings.Join(who, ", ")
}

// describeLock names a lock of the images for messages.
func describeLock(l *pb.FileLockEntry) string {
	kind := map[uint32]string{flPOSIX: "POSIX", flFlock: "flock", flOFD: "OFD"}[l.GetFlag()]
	typ := "read"
	if l.GetType() == unix.F_WRLCK {
		typ = "write"
	}
	on := fmt.Sprintf("fd %d", l.GetFd())
	if l.GetFd() < 0 {
		on = fmt.Sprintf("the mapping of file %d", -l.GetFd())
	}
	switch l.GetFlag() {
	case flLease:
		return fmt.Sprintf("%s lease on %s", typ, on)
	case flFlock:
		return fmt.Sprintf("%s %s lock on %s", typ, kind, on)
	}
	end := "EOF"
	if l.GetLen() != 0 {
		end = fmt.Sprint(l.GetStart() + l.GetLen() - 1)
	}
	return fmt.Sprintf("%s %s lock on %s bytes %d-%s", typ, kind, on, l.GetStart(), end)
}
