package files

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/cryo-cr/cryo/internal/image"
	"github.com/cryo-cr/cryo/internal/kernel"
	"github.com/cryo-cr/cryo/internal/proc"
)

// Table is the open files of a process being dumped: files.img entries,
// the descriptor table, and what each kind stores beside them.
type Table struct {
	pid      int
	shellJob bool
	files    []*fdinfo.FileEntry
	fds      []*fdinfo.FdinfoEntry
	byKey    map[string]uint32 // entries made for a path or object, not a descriptor
	pipeTable
	ghostTable
	memfdTable
	lockTable
	identityTable
}

// NewTable starts the file table of process pid. With shellJob, the
// caller's terminal may be among its descriptors; with linkRemap, an
// unlinked file still linked elsewhere is linked back for the restore.
func NewTable(pid int, shellJob, linkRemap bool) *Table {
	return &Table{pid: pid, shellJob: shellJob, byKey: map[string]uint32{},
		pipeTable: pipeTable{seen: map[uint64]bool{}}, memfdTable: memfdTable{memfds: map[uint64]*memfdObject{}},
		ghostTable: ghostTable{linkRemap: linkRemap, targets: map[inode]remapTarget{}}}
}

// nextID numbers file objects from 1.
func (t *Table) nextID() uint32 { return uint32(len(t.files) + 1) }

// add appends an entry whose id is nextID.
func (t *Table) add(f *fdinfo.FileEntry) uint32 {
	t.files = append(t.files, f)
	return f.GetId()
}

// keyed returns the id of the entry made for key, making it with mk the
// first time.
func (t *Table) keyed(key string, mk func(id uint32) *fdinfo.FileEntry) uint32 {
	if id, ok := t.byKey[key]; ok {
		return id
	}
	id := t.add(mk(t.nextID()))
	t.byKey[key] = id
	return id
}

func zeroFown() *fown.FownEntry {
	z := proto.Uint32(0)
	return &fown.FownEntry{Uid: z, Euid: z, Signum: z, PidType: z, Pid: z}
}

// statusFlags are the open flags a restore reopens a file with.
func statusFlags(info proc.Fdinfo) uint32 { return info.Flags &^ unix.O_CLOEXEC }

// Dump records every descriptor of the process. Descriptors sharing an
// open file description (dup) share one file entry.
func (t *Table) Dump() error {
	fds, err := proc.ReadFds(t.pid)
	if err != nil {
		return err
	}
	descs := descriptions{pid: t.pid, byInode: map[inodeKey][]described{}}
	for _, fd := range fds {
		info, err := proc.ReadFdinfo(t.pid, fd)
		if err != nil {
			return err
		}
		fdFlags := uint32(0)
		if info.Flags&unix.O_CLOEXEC != 0 {
			fdFlags = unix.FD_CLOEXEC
		}
		id, at, err := descs.find(fd, info)
		if err != nil {
			return err
		}
		if id == 0 {
			if id, err = t.dumpFd(fd, info); err != nil {
				return fmt.Errorf("dump fd %d: %w", fd, err)
			}
			if err := t.dumpLocks(fd, info); err != nil {
				return err
			}
			descs.add(fd, info, at, id)
		}
		t.fds = append(t.fds, &fdinfo.FdinfoEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(fdFlags), Type: t.files[id-1].GetType().Enum(), Fd: proto.Uint32(uint32(fd)),
		})
	}
	return t.checkUnreachedLocks()
}

// descriptions are the open file descriptions recorded so far, each
// through its first descriptor, to find the one a descriptor shares. One
// description has one mount and inode, so only those of its inode are
// searched, in kcmp's order: a process of many descriptors is dumped in
// n log n comparisons, not n².
type descriptions struct {
	pid     int
	byInode map[inodeKey][]described // sorted by kcmp's order of the descriptions
}

// inodeKey is what fdinfo says of a description's file: 0 for the inode
// on kernels that do not print it, which searches the whole mount.
type inodeKey struct {
	mnt int
	ino uint64
}

// described is a recorded description: its first descriptor and entry.
type described struct {
	fd int
	id uint32
}

// find returns the entry of fd's description, 0 if it is new, and where
// it is or goes among those of its inode.
func (d *descriptions) find(fd int, info proc.Fdinfo) (uint32, int, error) {
	list := d.byInode[inodeKey{info.MntID, info.Ino}]
	var err error
	i, found := slices.BinarySearchFunc(list, fd, func(e described, fd int) int {
		c, cerr := kernel.CompareFiles(d.pid, e.fd, fd)
		if cerr != nil && err == nil {
			err = fmt.Errorf("compare fd %d with fd %d: %w", fd, e.fd, cerr)
		}
		return c
	})
	if err != nil || !found {
		return 0, i, err
	}
	return list[i].id, i, nil
}

// add records fd's description, new, as entry id, at i (from find).
func (d *descriptions) add(fd int, info proc.Fdinfo, i int, id uint32) {
	k := inodeKey{info.MntID, info.Ino}
	d.byInode[k] = slices.Insert(d.byInode[k], i, described{fd, id})
}

// dumpFd offers a descriptor to the kinds.
func (t *Table) dumpFd(fd int, info proc.Fdinfo) (uint32, error) {
	d := &desc{fd: fd, info: info, path: proc.Path(t.pid, "fd/"+strconv.Itoa(fd))}
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
	if strings.HasPrefix(d.link, "/") {
		return 0, fmt.Errorf("%w: fd %d is %s (mode %#o)", ErrUnsupported, fd, d.link, d.st.Mode)
	}
	return 0, fmt.Errorf("%w: fd %d is %s", ErrUnsupported, fd, d.link)
}

// WriteImages writes files.img, the descriptor table as fdinfo-ID.img,
// and each kind's images.
func (t *Table) WriteImages(dir *image.Dir, filesID uint32) error {
	if err := dir.WriteImage(image.Files, 0, messages(t.files)...); err != nil {
		return err
	}
	if err := dir.WriteImage(image.Fdinfo, filesID, messages(t.fds)...); err != nil {
		return err
	}
	for _, write := range []func(*image.Dir) error{t.pipeTable.write, t.ghostTable.write, t.memfdTable.write, t.lockTable.write, t.identityTable.write} {
		if err := write(dir); err != nil {
			return err
		}
	}
	return nil
}

func messages[M proto.Message](ms []M) []proto.Message {
	out := make([]proto.Message, 0, len(ms))
	for _, m := range ms {
		out = append(out, m)
	}
	return out
}

// writeWithPayloads writes an image of records, each followed by raw
// bytes.
func writeWithPayloads(dir *image.Dir, k image.Kind, id uint32, n int, rec func(int) (proto.Message, []byte)) error {
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
