package files

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/image/pb"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// Table is the open files of the processes being dumped: files.img
// entries, each process's descriptor table, and what each kind stores
// beside them. An open file description that several descriptors share,
// in one process or several, is one entry.
type Table struct {
	pid int // the process whose descriptors Dump is recording
	// view is the thread through which /proc shows them (proc.View): pid,
	// or another thread when the leader has exited.
	view     int
	shellJob bool
	files    []*pb.FileEntry
	fds      map[uint32][]fdEntry // descriptor tables by files id
	tables   []uint32             // files ids in the order dumped
	byKey    map[string]uint32    // entries made for a path or object, not a descriptor
	// described are the descriptors that made an entry, by inode: a
	// descriptor can share an open file description only with one of
	// the same inode, so kcmp compares so few; sorted by kcmp's order of
	// their descriptions (sharedWith).
	described map[inode][]fdRef
	// clocksRead is when the dump read the processes' clocks.
	clocksRead time.Time
	// mounts are the mounts of process mountsOf, read for the first
	// mark of a notification descriptor.
	mounts   []proc.Mount
	mountsOf int
	// processes are the pids of the processes dumped, live and zombie
	// (SetProcesses): a pidfd of another is refused. order lists them
	// in the order dumped, which the restore's is.
	processes map[int]bool
	order     []int
	pipeTable
	ghostTable
	memfdTable
	lockTable
	identityTable
	sockExtraTable
	ttyTable
	inetTable
	unixTable
	packetTable
	ioUringTable
}

// fdEntry is a descriptor of a table: the fdinfo entry WriteImages makes
// of it, but for the type, its file's: under half the size of one and
// its pointer, for tables of many descriptors held until the images step.
type fdEntry struct{ fd, id, flags uint32 }

// fdRef is a descriptor of a dumped process and the entry it refers to.
type fdRef struct {
	pid, fd int
	id      uint32
}

// NewTable starts the file table of the processes to dump, pid first
// (Dump of another process changes it). With shellJob, the caller's
// terminal may be among their descriptors; with linkRemap, an unlinked
// file still linked elsewhere is linked back for the restore.
func NewTable(pid int, shellJob, linkRemap bool) *Table {
	return &Table{pid: pid, shellJob: shellJob, byKey: map[string]uint32{}, ttyTable: ttyTable{root: pid},
		fds: map[uint32][]fdEntry{}, described: map[inode][]fdRef{},
		pipeTable: pipeTable{seen: map[uint64]bool{}}, memfdTable: memfdTable{memfds: map[uint64]*memfdObject{}},
		ghostTable: ghostTable{linkRemap: linkRemap, targets: map[inode]remapTarget{}}}
}

// nextID numbers file objects from 1.
func (t *Table) nextID() uint32 { return uint32(len(t.files) + 1) }

// add appends an entry whose id is nextID.
func (t *Table) add(f *pb.FileEntry) uint32 {
	t.files = append(t.files, f)
	return f.GetId()
}

// keyed returns the id of the entry made for key, making it with mk the
// first time.
func (t *Table) keyed(key string, mk func(id uint32) *pb.FileEntry) uint32 {
	if id, ok := t.byKey[key]; ok {
		return id
	}
	id := t.add(mk(t.nextID()))
	t.byKey[key] = id
	return id
}

// statusFlags are the open flags a restore reopens a file with.
func statusFlags(info proc.Fdinfo) uint32 { return info.Flags &^ unix.O_CLOEXEC }

// Dump records every descriptor of process pid as descriptor table
// filesID. Descriptors sharing an open file description (dup, or
// inherited across fork by processes dumped together) share one file
// entry. vmas are the process's mappings of files (at least), whose
// files hold locks too.
func (t *Table) Dump(pid int, filesID uint32, vmas []*pb.VmaEntry) error {
	view, err := proc.View(pid)
	if err != nil {
		return err
	}
	t.pid, t.view = pid, view
	t.ttyTable.process()
	if _, dup := t.fds[filesID]; dup {
		return fmt.Errorf("descriptor table %d dumped twice", filesID)
	}
	t.tables = append(t.tables, filesID)
	t.processFiles(pid, filesID)
	t.fds[filesID] = nil
	fds, err := proc.ReadFds(view)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		info, err := proc.ReadFdinfo(view, fd)
		if err != nil {
			return err
		}
		fdFlags := uint32(0)
		if info.Flags&unix.O_CLOEXEC != 0 {
			fdFlags = unix.FD_CLOEXEC
		}
		var st unix.Stat_t
		if err := unix.Stat(proc.Path(view, "fd/"+strconv.Itoa(fd)), &st); err != nil {
			return fmt.Errorf("stat fd %d: %w", fd, err)
		}
		ino := inode{dev: st.Dev, ino: st.Ino}
		id, at, err := t.sharedWith(view, fd, ino)
		if err != nil {
			return err
		}
		if id == 0 {
			if id, err = t.dumpFd(fd, info); err != nil {
				return fmt.Errorf("dump fd %d: %w", fd, err)
			}
			leased, err := t.dumpLocks(fd, info)
			if err != nil {
				return err
			}
			// Signal-driven I/O, and a socket's SIGURG, go to the
			// file's owner, set before or after O_ASYNC. The restores
			// of pipes and sockets set the flag again; those of other
			// kinds do not. A lease sets O_ASYNC, and makes its taker
			// the owner, told of a break by the owner's signal
			// (F_SETSIG): the restore's F_SETLEASE sets the flag again,
			// and the owner kept here after it.
			switch typ := t.files[id-1].GetType(); {
			case leased:
				if err := t.dumpOwner(fd, t.files[id-1]); err != nil {
					return fmt.Errorf("dump fd %d: %w", fd, err)
				}
			case typ != pb.FdTypes_PIPE && typ != pb.FdTypes_UNIXSK && typ != pb.FdTypes_INETSK:
				if info.Flags&unix.O_ASYNC != 0 {
					return fmt.Errorf("%w: fd %d has O_ASYNC (signal-driven I/O), which the restore of a %v does not keep", ErrUnsupported, fd, typ)
				}
				if err := t.refuseDnotify(fd, t.files[id-1]); err != nil {
					return fmt.Errorf("dump fd %d: %w", fd, err)
				}
			default:
				if err := t.dumpOwner(fd, t.files[id-1]); err != nil {
					return fmt.Errorf("dump fd %d: %w", fd, err)
				}
			}
			t.described[ino] = slices.Insert(t.described[ino], at, fdRef{pid: view, fd: fd, id: id})
		}
		t.fds[filesID] = append(t.fds[filesID], fdEntry{fd: uint32(fd), id: id, flags: fdFlags})
	}
	if err := t.checkControllingTerminal(); err != nil {
		return err
	}
	return t.checkUnreachedLocks(vmas)
}

// sharedWith returns the entry of the open file description that
// descriptor fd of process pid, of inode ino, shares with a descriptor
// already described, 0 if none, and where fd goes among those of its
// inode if it is new. They are kept in kcmp's order of their
// descriptions, searched in log n comparisons: a process of many
// descriptors of one inode (eventfds share one) is dumped in n log n.
func (t *Table) sharedWith(pid, fd int, ino inode) (uint32, int, error) {
	var err error
	i, found := slices.BinarySearchFunc(t.described[ino], fd, func(o fdRef, fd int) int {
		r, kerr := kernel.Kcmp(o.pid, pid, kernel.KcmpFile, o.fd, fd)
		switch {
		case kerr != nil:
			if err == nil {
				err = fmt.Errorf("compare fd %d of pid %d with fd %d of pid %d: %w", fd, pid, o.fd, o.pid, kerr)
			}
			return 0
		case r == 1: // o's is less
			return -1
		case r == 2:
			return 1
		}
		return 0
	})
	if err != nil || !found {
		return 0, i, err
	}
	return t.described[ino][i].id, i, nil
}

// dumpFd offers a descriptor to the kinds.
func (t *Table) dumpFd(fd int, info proc.Fdinfo) (uint32, error) {
	d := &desc{fd: fd, info: info, path: proc.Path(t.view, "fd/"+strconv.Itoa(fd))}
	var err error
	if d.link, err = os.Readlink(d.path); err != nil {
		return 0, err
	}
	if err := unix.Stat(d.path, &d.st); err != nil {
		return 0, err
	}
	for _, k := range kinds {
		if k.claims(d) {
			return k.dump(t, d)
		}
	}
	if d.mode() == unix.S_IFSOCK {
		// Raw and packet sockets, among others, are refused by the name
		// of their protocol.
		return 0, fmt.Errorf("%w: fd %d is a %s socket (%s)", ErrUnsupported, fd, sockProtoName(d), d.link)
	}
	if strings.HasPrefix(d.link, "/") {
		return 0, fmt.Errorf("%w: fd %d is %s (mode %#o)", ErrUnsupported, fd, d.link, d.st.Mode)
	}
	return 0, fmt.Errorf("%w: fd %d is %s", ErrUnsupported, fd, d.link)
}

// WriteImages writes files.img, each descriptor table as fdinfo-ID.img,
// and each kind's images.
func (t *Table) WriteImages(dir *image.Dir) error {
	if err := t.finishUnix(); err != nil {
		return err
	}
	if err := image.WriteAll(dir, image.Files, 0, t.files); err != nil {
		return err
	}
	var e pb.FdinfoEntry // one for all: Write encodes each at once
	for _, id := range t.tables {
		fds := t.fds[id]
		if err := writeWithPayloads(dir, image.Fdinfo, id, len(fds), func(i int) (pb.Message, []byte) {
			fd := fds[i]
			e = pb.FdinfoEntry{Id: fd.id, Flags: fd.flags, Type: t.files[fd.id-1].GetType(), Fd: fd.fd}
			return &e, nil
		}); err != nil {
			return err
		}
	}
	for _, write := range []func(*image.Dir) error{t.pipeTable.write, t.ghostTable.write, t.memfdTable.write, t.lockTable.write, t.identityTable.write, t.ttyTable.write, t.tcpTable.writeStreams, t.unixTable.write, t.sockExtraTable.write, t.ioUringTable.write} {
		if err := write(dir); err != nil {
			return err
		}
	}
	return nil
}

// writeWithPayloads writes an image of records, each followed by raw
// bytes, if any.
func writeWithPayloads(dir *image.Dir, k image.Kind, id uint32, n int, rec func(int) (pb.Message, []byte)) error {
	w, err := dir.Create(k, id)
	if err != nil {
		return err
	}
	for i := range n {
		m, data := rec(i)
		if err := w.Write(m); err != nil {
			w.Close()
			return err
		}
		if err := w.WritePayload(data); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
